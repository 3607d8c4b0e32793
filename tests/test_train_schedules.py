"""Each schedule's lr_at against its closed form (and torch's schedulers where torch has one)."""

import math

import pytest
import torch

from cnnray.config.schema import ScheduleSection
from cnnray.loop.schedules import build_scheduler

BASE = 0.1


def _opt(mults=(1.0,)):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": BASE * m, "lr_mult": m} for m in mults]
    return torch.optim.SGD(groups, lr=BASE)


def _sched(spe=10, epochs=5, mults=(1.0,), mode="max", **kw):
    return build_scheduler(_opt(mults), ScheduleSection(**kw), base_lr=BASE, steps_per_epoch=spe, epochs=epochs,
                           mode=mode)


def test_cosine_with_warmup():
    s = _sched(name="cosine", warmup_epochs=1, warmup_start_factor=0.01, min_lr=1e-4)
    assert s.lr_at(0) == pytest.approx(BASE * 0.01)
    assert s.lr_at(5) == pytest.approx(BASE * (0.01 + 0.99 * 0.5))
    assert s.lr_at(10) == pytest.approx(BASE)
    assert s.lr_at(30) == pytest.approx(1e-4 + (BASE - 1e-4) * 0.5 * (1 + math.cos(math.pi * 20 / 40)))
    assert s.lr_at(50) == pytest.approx(1e-4)
    assert s.lr_at(80) == pytest.approx(1e-4)


def test_step_multistep_exponential_constant():
    s = _sched(name="step", warmup_epochs=0, step_epochs=2, gamma=0.5)
    assert [s.lr_at(i) for i in (0, 19, 20, 45)] == pytest.approx([BASE, BASE, BASE * 0.5, BASE * 0.25])
    m = _sched(name="multistep", warmup_epochs=0, milestones=[0.5, 0.75], gamma=0.1, epochs=4)  # 40 steps
    assert [m.lr_at(i) for i in (0, 19, 20, 29, 30, 39)] == pytest.approx(
        [BASE, BASE, BASE * 0.1, BASE * 0.1, BASE * 0.01, BASE * 0.01])
    e = _sched(name="exponential", warmup_epochs=0, gamma=0.8)
    assert [e.lr_at(i) for i in (0, 10, 15)] == pytest.approx([BASE, BASE * 0.8, BASE * 0.8**1.5])
    c = _sched(name="constant", warmup_epochs=2, warmup_start_factor=0.1)
    assert [c.lr_at(i) for i in (0, 10, 20, 49)] == pytest.approx([BASE * 0.1, BASE * 0.55, BASE, BASE])


def test_warmup_multiplies_exponential():
    e = _sched(name="exponential", warmup_epochs=1, warmup_start_factor=0.2, gamma=0.5)
    assert e.lr_at(5) == pytest.approx(BASE * 0.5**0.5 * (0.2 + 0.8 * 0.5))


def test_onecycle_matches_torch():
    total, max_lr = 50, 0.4
    opt = _opt()
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total, pct_start=0.3,
                                              anneal_strategy="cos", cycle_momentum=False)
    expected = []
    for _ in range(total):
        expected.append(ref.get_last_lr()[0])
        opt.step()
        ref.step()
    s = _sched(name="onecycle", max_lr=max_lr, pct_start=0.3, warmup_epochs=3, epochs=5)  # warmup ignored
    assert [s.lr_at(i) for i in range(total)] == pytest.approx(expected, rel=1e-9)
    d = _sched(name="onecycle", pct_start=0.3)  # max_lr defaults to the optimizer lr
    assert d.lr_at(0) == pytest.approx(BASE / 25)


def test_plateau_matches_torch_reduce_on_plateau():
    metrics = [0.5, 0.6, 0.6, 0.55, 0.58, 0.7, 0.7, 0.69, 0.69, 0.69]
    opt = _opt()
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=1, threshold=0.0)
    s = _sched(name="plateau", warmup_epochs=0, patience=1, factor=0.5, min_lr=0.0)
    for m in metrics:
        ref.step(m)
        s.step_epoch(m)
        assert s.lr_at(s.step_count) == pytest.approx(opt.param_groups[0]["lr"])
    assert s.lr_at(0) < BASE  # it did reduce at least once


def test_step_sets_group_lrs_with_multipliers():
    s = _sched(name="cosine", warmup_epochs=1, mults=(1.0, 10.0))
    for _ in range(7):
        s.step()
    lrs = [g["lr"] for g in s.optimizer.param_groups]
    assert lrs == pytest.approx([s.lr_at(7), 10 * s.lr_at(7)])


@pytest.mark.parametrize("name", ["cosine", "plateau", "onecycle"])
def test_state_dict_round_trip_resumes_exactly(name):
    a = _sched(name=name, warmup_epochs=1, patience=0, min_lr=0.0)
    for i in range(17):
        a.step()
        if i % 5 == 4:
            a.step_epoch(1.0)  # no improvement after the first: plateau reduces
    b = _sched(name=name, warmup_epochs=1, patience=0, min_lr=0.0)
    b.load_state_dict(a.state_dict())
    assert all(isinstance(v, (int, float, type(None))) for v in a.state_dict().values())
    for _ in range(10):
        a.step()
        b.step()
        assert b.optimizer.param_groups[0]["lr"] == a.optimizer.param_groups[0]["lr"]
