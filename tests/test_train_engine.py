"""Engine: learning, gradient accumulation (plain and DDP), NaN guard, selection, exact resume, bf16."""


import pytest
import torch
import torch.distributed as dist
from torch import nn

from cnnray.config.schema import Config, OptimSection, ScheduleSection, TrainSection
from cnnray.loop.engine import Engine
from cnnray.errors import NonFiniteLossError


class TinyNet(nn.Module):
    def __init__(self, dropout=0.0):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(4 * 8 * 8, 2)

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.conv(x))).flatten(1))


def blobs(n=64, seed=0):
    """Two classes of 1x8x8 images: a bright or dark upper half plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 1, 8, 8, generator=g) * 0.5
    x[:, :, :4] += (2 * y - 1).float()[:, None, None, None]
    return x, y


def batches(x, y, bs):
    return [(x[i : i + bs], y[i : i + bs]) for i in range(0, len(y), bs)]


def cfg_of(optim=None, schedule=None, **train):
    base = dict(epochs=3, precision="fp32", ema=False, label_smoothing=0.0)
    return Config(optim=OptimSection(**(optim or {})), schedule=ScheduleSection(**(schedule or {})),
                  train=TrainSection(**{**base, **train}))


def engine(cfg, steps, seed=0, dropout=0.0, **kw):
    torch.manual_seed(seed)
    return Engine(TinyNet(dropout), cfg, steps_per_epoch=steps, num_classes=2, device="cpu", **kw)


def params(e):
    return [p.detach().clone() for p in e.module.parameters()]


def test_one_epoch_lowers_loss():
    x, y = blobs(128)
    e = engine(cfg_of(optim={"lr": 0.01}, schedule={"name": "constant", "warmup_epochs": 0}), 8)
    before = e.evaluate(batches(x, y, 32))["val_loss"]
    out = e.train_epoch(batches(x, y, 16))
    after = e.evaluate(batches(x, y, 32))["val_loss"]
    assert after < 0.7 * before
    assert (e.epoch, e.global_step, out["lr"]) == (1, 8, pytest.approx(0.01))
    assert out["train_loss"] > 0 and out["images_per_s"] > 0


SGD_ACCUM = dict(optim={"name": "sgd", "lr": 0.1, "momentum": 0.9}, schedule={"name": "constant", "warmup_epochs": 0},
                 label_smoothing=0.1, grad_clip=1e3)  # clip path runs, never binds


def test_accumulation_equals_big_batch():
    x, y = blobs(16)
    big = engine(cfg_of(**SGD_ACCUM), 1)
    big.train_epoch([(x, y)])
    acc = engine(cfg_of(accum_steps=2, **SGD_ACCUM), 2)
    acc.train_epoch(batches(x, y, 8))
    assert acc.global_step == big.global_step == 1
    for a, b in zip(params(acc), params(big)):
        assert torch.allclose(a, b, atol=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(params(acc), params(engine(cfg_of(**SGD_ACCUM), 1))))


def test_grad_clip_bounds_the_step():
    x, y = blobs(16)
    sgd = dict(optim={"name": "sgd", "lr": 1.0, "momentum": 0.0, "weight_decay": 0.0},
               schedule={"name": "constant", "warmup_epochs": 0})
    e = engine(cfg_of(grad_clip=0.01, **sgd), 1)
    before = params(e)
    e.train_epoch([(x, y)])
    step = torch.cat([(a - b).flatten() for a, b in zip(params(e), before)])
    assert step.norm().item() == pytest.approx(0.01, rel=1e-4)  # lr 1: the update is the clipped gradient


def test_short_last_group_is_a_mean():
    x, y = blobs(24)
    ref = engine(cfg_of(**SGD_ACCUM), 2)
    ref.train_epoch([(x[:16], y[:16]), (x[16:], y[16:])])
    acc = engine(cfg_of(accum_steps=2, **SGD_ACCUM), 3)
    acc.train_epoch(batches(x, y, 8))  # groups of 2 + 1 micro-batches
    assert acc.global_step == 2
    for a, b in zip(params(acc), params(ref)):
        assert torch.allclose(a, b, atol=1e-5)


def test_ddp_accumulation_uses_no_sync(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        calls = []

        def wrap(m):
            ddp = nn.parallel.DistributedDataParallel(m)
            orig = ddp.no_sync
            ddp.no_sync = lambda: (calls.append(1), orig())[1]
            return ddp

        x, y = blobs(32)
        e = engine(cfg_of(accum_steps=2, ema=True, **SGD_ACCUM), 4, wrap=wrap)
        e.train_epoch(batches(x, y, 8))
        ref = engine(cfg_of(**SGD_ACCUM), 2)
        ref.train_epoch(batches(x, y, 16))
        assert len(calls) == 2  # the first micro-batch of each of the 2 groups
        for a, b in zip(params(e), params(ref)):
            assert torch.allclose(a, b, atol=1e-5)
        assert e.validate_and_select(lambda: batches(x, y, 8))["val_acc"] >= 0  # all_reduce path
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("fused", [False, True], ids=["host-check", "device-skip"])
@pytest.mark.parametrize("check_every", [1, 3, 50])
def test_nan_guard_takes_no_step_on_a_nan(fused, check_every):
    """Whether the check comes at the step (1), a few steps later (3) or only at epoch end (50), no
    optimizer step is taken from the NaN on, and the error names the step it happened at."""
    x, y = blobs(64)
    data = batches(x, y, 16)
    cfg = dict(optim={"lr": 0.01}, schedule={"name": "constant", "warmup_epochs": 0})
    e = engine(cfg_of(**cfg), 4, nan_at_step=6, check_every=check_every, fused=fused)
    e.train_epoch(data)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at epoch 1, step 6"):
        e.train_epoch(data)
    ref = engine(cfg_of(**cfg), 4, fused=fused)
    ref.train_epoch(data)
    ref.train_epoch(data[:2])
    assert e.global_step == 6
    for a, b in zip(params(e), params(ref)):
        assert torch.isfinite(a).all() and torch.equal(a, b)
    if fused:  # the skipped steps did not advance AdamW's step count either
        steps = {int(st["step"]) for st in e.optimizer.state.values()}
        assert steps == {6}


def test_fused_and_foreach_optimizers_agree():
    x, y = blobs(64)
    data = batches(x, y, 16)
    a, b = engine(cfg_of(), 4, fused=True), engine(cfg_of(), 4, fused=False)
    a.train_epoch(data)
    b.train_epoch(data)
    for p, q in zip(params(a), params(b)):
        assert torch.allclose(p, q, atol=1e-5)


def test_no_host_sync_per_step(monkeypatch):
    """The old loop read loss.item() every micro-batch; now only the periodic check and the epoch end read."""
    x, y = blobs(256)
    data = batches(x, y, 8)  # 32 steps
    e = engine(cfg_of(), 32, check_every=10, fused=True)
    reads = []
    orig = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda t: (reads.append(1), orig(t))[1])
    e.train_epoch(data)
    assert len(reads) <= 32 // 10 + 2  # 3 periodic checks + the epoch-end check + the loss total


def test_validate_selects_and_stops_early():
    x, y = blobs(64)
    e = engine(cfg_of(ema=True, ema_decay=0.9, monitor="val_loss", early_stop_patience=1,
                      optim={"lr": 0.01}), 4)
    e.train_epoch(batches(x, y, 16))
    r = e.validate_and_select(lambda: batches(x, y, 16))
    assert r["weights"] in ("raw", "ema") and r["is_best"] and e.best_epoch == 1
    src = r["weights"]
    assert r["val_loss"] == r[f"val_loss_{src}"] == min(r["val_loss_raw"], r["val_loss_ema"])
    assert e.best_source == src and e.best_metric == r["val_loss"]
    assert not r["should_stop"]
    again = e.validate_and_select(lambda: batches(x, y, 16))  # same weights: no improvement
    assert not again["is_best"] and again["should_stop"] and e.should_stop
    w = e.weights_state(src)
    assert set(w) == set(e.module.state_dict()) and all(t.device.type == "cpu" for t in w.values())


def _resume_cfg():
    return cfg_of(ema=True, ema_decay=0.9, early_stop_patience=3, epochs=3,
                  schedule={"name": "cosine", "warmup_epochs": 1})


def test_state_dict_resume_is_exact(tmp_path):
    x, y = blobs(64)
    data = batches(x, y, 16)
    val = lambda: batches(x, y, 32)  # noqa: E731
    full = engine(_resume_cfg(), 4, dropout=0.3)
    for _ in range(2):
        full.train_epoch(data)
        full.validate_and_select(val)

    first = engine(_resume_cfg(), 4, dropout=0.3)
    first.train_epoch(data)
    first.validate_and_select(val)
    torch.save(first.state_dict(), tmp_path / "ckpt.pt")
    sd = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    torch.manual_seed(123)  # a different RNG stream and a different init: load must override both
    resumed = engine(_resume_cfg(), 4, seed=7, dropout=0.3)
    resumed.load_state_dict(sd)
    resumed.train_epoch(data)
    resumed.validate_and_select(val)

    assert (resumed.epoch, resumed.global_step) == (full.epoch, full.global_step) == (2, 8)
    for a, b in zip(params(resumed), params(full)):
        assert torch.equal(a, b)
    for a, b in zip(resumed.ema.module.parameters(), full.ema.module.parameters()):
        assert torch.equal(a, b)
    assert resumed.optimizer.param_groups[0]["lr"] == full.optimizer.param_groups[0]["lr"]
    assert (resumed.best_metric, resumed.best_epoch, resumed.best_source) == (
        full.best_metric, full.best_epoch, full.best_source)
    assert resumed.early_stopping.state_dict() == full.early_stopping.state_dict()


def test_bf16_channels_last_runs():
    x, y = blobs(32)
    e = engine(cfg_of(precision="bf16", channels_last=True, ema=True, label_smoothing=0.1), 2)
    assert e.precision.autocast_dtype == torch.bfloat16 and e.channels_last
    assert e.module.conv.weight.is_contiguous(memory_format=torch.channels_last)
    out = e.train_epoch(batches(x, y, 16))
    r = e.validate_and_select(lambda: batches(x, y, 16))
    assert torch.isfinite(torch.tensor(out["train_loss"])) and 0 <= r["val_acc"] <= 1


def test_mixup_soft_targets():
    x, y = blobs(32)

    def mixup(xb, yb):
        soft = torch.nn.functional.one_hot(yb, 2).float()
        return 0.5 * (xb + xb.flip(0)), 0.5 * (soft + soft.flip(0))

    e = engine(cfg_of(label_smoothing=0.1), 2, mixup=mixup)
    assert torch.isfinite(torch.tensor(e.train_epoch(batches(x, y, 16))["train_loss"]))


def test_test_hooks_read_from_the_environment():
    from cnnray.run.test_hooks import FAIL_AT_EPOCH, NAN_AT_STEP, read_test_hooks

    assert read_test_hooks({}) == {}
    assert read_test_hooks({NAN_AT_STEP: "5", FAIL_AT_EPOCH: " 1 "}) == {NAN_AT_STEP: 5, FAIL_AT_EPOCH: 1}
    with pytest.raises(ValueError, match=NAN_AT_STEP):
        read_test_hooks({NAN_AT_STEP: "-1"})


def _compiled_engine(compile_: bool) -> Engine:
    """train.compile=true: the Engine trains through torch.compile on CPU and saves plain (unprefixed) weights."""
    return engine(cfg_of(optim={"lr": 0.01}, schedule={"name": "constant", "warmup_epochs": 0}, epochs=2,
                         ema=True, compile=compile_), 8)


@pytest.mark.slow
def test_compiled_engine_learns_and_saves_unprefixed_weights():
    x, y = blobs(128)
    e = _compiled_engine(True)
    assert isinstance(e.model, torch._dynamo.eval_frame.OptimizedModule)  # the flag really compiled the model
    # What the compiled module itself would save carries the wrapper's prefix: the Engine must strip it.
    assert all(k.startswith("_orig_mod.") for k in e.model.state_dict())
    before = e.evaluate(batches(x, y, 32))["val_loss"]
    for _ in range(2):
        e.train_epoch(batches(x, y, 16))
    after = e.evaluate(batches(x, y, 32))["val_loss"]
    assert after < 0.7 * before, (before, after)

    plain_keys = set(TinyNet().state_dict())
    sd = e.state_dict()
    assert set(sd["model"]) == plain_keys
    assert set(e.weights_state("raw")) == plain_keys and set(e.weights_state("ema")) == plain_keys
    assert set(sd["ema"]["module"]) == plain_keys

    # The saved state loads into a plain (uncompiled) engine and predicts the same.
    plain = _compiled_engine(False)
    plain.load_state_dict(sd)
    with torch.no_grad():
        assert torch.allclose(plain.module(x), e.module(x), atol=1e-6)
    assert plain.evaluate(batches(x, y, 32))["val_loss"] == pytest.approx(after, rel=1e-5)
