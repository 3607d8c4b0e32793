"""Fine-tuning controls: a frozen backbone takes no step (nor decay, nor optimizer state), its BN stats hold."""

import pytest
import torch
import torch.distributed as dist
from torch import nn

from cnnray.config import Config
from cnnray.errors import NonFiniteLossError
from cnnray.loop.engine import Engine
from cnnray.loop.freeze import backbone_norms, backbone_parameters, is_head
from cnnray.models import create_model

STEPS = 4  # batches per epoch


def cfg_of(optim=None, **train):
    train = {"epochs": 3, "precision": "fp32", "ema": False, "label_smoothing": 0.0, **train}
    return Config.model_validate({"optim": {"lr": 0.01, **(optim or {})},
                                  "schedule": {"name": "constant", "warmup_epochs": 0}, "train": train})


def engine(cfg, seed=0, **kw):
    torch.manual_seed(seed)
    model = create_model("resnet18", num_classes=3, in_chans=1, width=0.125, stem="cifar")
    return Engine(model, cfg, steps_per_epoch=STEPS, num_classes=3, device="cpu", **kw)


def data(seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(STEPS)]


def snapshot(module, head):
    """Parameters and buffers (BN running stats, num_batches_tracked) of the head or of the backbone."""
    items = [*module.named_parameters(), *module.named_buffers()]
    return {n: t.detach().clone() for n, t in items if is_head(n) == head}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def moved(a, b):
    return all(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


@pytest.mark.parametrize("optim", [{"name": "adamw", "weight_decay": 0.5},
                                   {"name": "sgd", "momentum": 0.9, "weight_decay": 0.5}], ids=["adamw", "sgd"])
def test_first_epoch_trains_the_head_only_then_every_layer(optim):
    e = engine(cfg_of(optim={**optim, "no_decay_norm_bias": False}, freeze_backbone_epochs=1))
    backbone0, head0 = snapshot(e.module, head=False), snapshot(e.module, head=True)
    assert e.backbone_frozen
    out = e.train_epoch(data())
    assert out["backbone_frozen"] == 1.0 and not e.backbone_frozen
    # Bit-identical despite weight decay 0.5: a parameter without .grad gets no decay either.
    assert same(snapshot(e.module, head=False), backbone0)
    assert moved(head0, snapshot(e.module, head=True))
    backbone = {id(p) for p in backbone_parameters(e.module)}
    assert backbone and not any(id(p) in backbone for p in e.optimizer.state)  # no momentum/Adam state created
    assert not any(m.training for m in backbone_norms(e.module)) and e.module.fc.training

    backbone1 = snapshot(e.module, head=False)
    out = e.train_epoch(data(seed=2))
    assert out["backbone_frozen"] == 0.0 and all(m.training for m in e.module.modules())
    assert moved(backbone1, snapshot(e.module, head=False))  # weights and running stats alike
    fc = e.optimizer.state[e.module.fc.weight]
    if optim["name"] == "adamw":  # one optimizer throughout: the head's Adam state continued
        assert int(fc["step"]) == 2 * STEPS
        assert int(e.optimizer.state[e.module.conv1.weight]["step"]) == STEPS
    else:
        assert "momentum_buffer" in fc and "momentum_buffer" in e.optimizer.state[e.module.conv1.weight]


def test_without_freeze_bn_the_running_stats_move():
    e = engine(cfg_of(freeze_backbone_epochs=1, freeze_bn=False))
    before = snapshot(e.module, head=False)
    e.train_epoch(data())
    after = snapshot(e.module, head=False)
    params = {n for n, _ in e.module.named_parameters()}
    assert all(torch.equal(before[n], after[n]) for n in before if n in params)
    stats = [n for n in before if n.endswith(("running_mean", "running_var"))]
    assert stats and all(not torch.equal(before[n], after[n]) for n in stats)


def test_grad_clip_sees_the_head_only(monkeypatch):
    seen = []
    real = nn.utils.clip_grad_norm_

    def spy(parameters, max_norm, *a, **kw):
        with_grad = [p for p in parameters if p.grad is not None]
        seen.append(({id(p) for p in with_grad}, torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(p.grad) for p in with_grad]))))
        return real(with_grad, max_norm, *a, **kw)

    monkeypatch.setattr(nn.utils, "clip_grad_norm_", spy)
    e = engine(cfg_of(freeze_backbone_epochs=1, grad_clip=1e-3))
    head = {id(p) for n, p in e.module.named_parameters() if is_head(n)}
    e.train_epoch(data())
    assert len(seen) == STEPS and all(ids == head for ids, _ in seen)
    assert all(norm > 1e-3 for _, norm in seen)  # the clip binds, on head gradients alone
    e.train_epoch(data())
    assert all(len(ids) == len(list(e.module.parameters())) for ids, _ in seen[STEPS:])


def test_zero_freeze_epochs_trains_exactly_as_without_the_key():
    plain = cfg_of()
    zero = cfg_of(freeze_backbone_epochs=0)
    assert "freeze_backbone_epochs" not in plain.model_dump(exclude_unset=True)["train"]
    runs = []
    for cfg in (plain, zero):
        e = engine(cfg)
        outs = [e.train_epoch(data(seed=s)) for s in (1, 2)]
        runs.append((e.module.state_dict(), outs))
    (sd_a, outs_a), (sd_b, outs_b) = runs
    assert same(sd_a, sd_b)
    assert all("backbone_frozen" not in o for o in outs_a + outs_b)
    assert [o["train_loss"] for o in outs_a] == [o["train_loss"] for o in outs_b]


def test_resume_mid_freeze_is_still_frozen_and_exact(tmp_path):
    cfg = cfg_of(freeze_backbone_epochs=2, ema=True)
    full = engine(cfg)
    backbone0 = snapshot(full.module, head=False)
    for s in (1, 2, 3):
        full.train_epoch(data(seed=s))

    first = engine(cfg)
    first.train_epoch(data(seed=1))
    torch.save(first.state_dict(), tmp_path / "ckpt.pt")
    resumed = engine(cfg, seed=7)
    resumed.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))
    assert resumed.backbone_frozen
    assert resumed.train_epoch(data(seed=2))["backbone_frozen"] == 1.0
    assert same(snapshot(resumed.module, head=False), backbone0)
    assert same(snapshot(resumed.ema.module, head=False), backbone0)  # the EMA of an unchanged backbone
    assert resumed.train_epoch(data(seed=3))["backbone_frozen"] == 0.0
    assert same(resumed.module.state_dict(), full.module.state_dict())
    assert same(resumed.ema.module.state_dict(), full.ema.module.state_dict())


def test_accumulation_with_a_frozen_backbone():
    e = engine(cfg_of(freeze_backbone_epochs=1, accum_steps=3))  # groups of 3 and a short last one of 1
    before = snapshot(e.module, head=False)
    e.train_epoch(data())
    assert e.global_step == 2 and same(snapshot(e.module, head=False), before)
    assert int(e.optimizer.state[e.module.fc.weight]["step"]) == 2


def test_ddp_without_find_unused_parameters(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        e = engine(cfg_of(freeze_backbone_epochs=1), wrap=nn.parallel.DistributedDataParallel)
        before = snapshot(e.module, head=False)
        e.train_epoch(data())
        assert same(snapshot(e.module, head=False), before)
        e.train_epoch(data(seed=2))
        assert moved(before, snapshot(e.module, head=False))
    finally:
        dist.destroy_process_group()


def test_head_means_what_the_optimizer_means():
    e = engine(cfg_of(freeze_backbone_epochs=1))
    by_group = {id(p) for g in e.optimizer.param_groups if g["name"].startswith("backbone") for p in g["params"]}
    assert by_group == {id(p) for p in backbone_parameters(e.module)}
    norms = backbone_norms(e.module)
    assert norms and all(isinstance(m, nn.BatchNorm2d) for m in norms)
    assert len(norms) == sum(isinstance(m, nn.BatchNorm2d) for m in e.module.modules())


def test_a_model_without_a_head_is_refused():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 3))
    with pytest.raises(ValueError, match="classifier head"):
        Engine(net, cfg_of(freeze_backbone_epochs=1), steps_per_epoch=1, num_classes=3, device="cpu")


def test_running_stats_of_any_norm_layer_are_held():
    net = nn.Sequential()
    net.add_module("norm", nn.InstanceNorm2d(2, track_running_stats=True))
    net.add_module("plain", nn.InstanceNorm2d(2))
    net.add_module("gn", nn.GroupNorm(1, 2))
    net.add_module("fc", nn.Sequential(nn.Flatten(), nn.BatchNorm1d(8), nn.Linear(8, 3)))
    assert backbone_norms(net) == [net.norm]  # the head's BatchNorm1d is never affected


@pytest.mark.parametrize("fused", [False, True], ids=["host-check", "device-skip"])
def test_nan_guard_with_a_frozen_backbone(fused):
    e = engine(cfg_of(freeze_backbone_epochs=1, grad_clip=1.0), nan_at_step=2, check_every=1, fused=fused)
    before = snapshot(e.module, head=False)
    with pytest.raises(NonFiniteLossError):
        e.train_epoch(data())
    assert e.global_step == 2 and same(snapshot(e.module, head=False), before)
    assert all(torch.isfinite(p).all() for p in e.module.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 with a GradScaler needs CUDA")
def test_fp16_grad_scaler_with_a_frozen_backbone():
    cfg = cfg_of(freeze_backbone_epochs=1, grad_clip=1.0, precision="fp16")
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=3, in_chans=1, width=0.125, stem="cifar")
    e = Engine(model, cfg, steps_per_epoch=STEPS, num_classes=3, device="cuda")
    assert e.scaler.is_enabled()
    backbone0, head0 = snapshot(e.module, head=False), snapshot(e.module, head=True)
    e.train_epoch(data())
    assert same(snapshot(e.module, head=False), backbone0)
    assert moved(head0, snapshot(e.module, head=True))
    backbone = {id(p) for p in backbone_parameters(e.module)}
    assert not any(id(p) in backbone for p in e.optimizer.state)
    e.train_epoch(data(seed=2))
    assert moved(backbone0, snapshot(e.module, head=False))
    # GradScaler may skip an overflowing step; still the head's Adam state counts both epochs' steps.
    head_steps = int(e.optimizer.state[e.module.fc.weight]["step"])
    assert head_steps > int(e.optimizer.state[e.module.conv1.weight]["step"]) >= 1


def test_layerwise_lr_mults_hold_through_warmup_and_cosine():
    """The tutorial's recipe: head 1e-3, backbone 1e-4 at every step of a warmup-cosine schedule, frozen or not."""
    cfg = Config.model_validate({"optim": {"lr": 1e-3, "head_lr_mult": 1.0, "backbone_lr_mult": 0.1},
                                 "schedule": {"name": "cosine", "warmup_epochs": 1, "min_lr": 1e-6},
                                 "train": {"epochs": 3, "precision": "fp32", "ema": False,
                                           "freeze_backbone_epochs": 1}})
    e = engine(cfg)
    head_ids = {id(p) for n, p in e.module.named_parameters() if is_head(n)}
    seen = []
    for epoch in range(3):
        for x, y in data(seed=epoch):
            e.train_epoch([(x, y)])
            groups = [(all(id(p) in head_ids for p in g["params"]), g["lr"]) for g in e.optimizer.param_groups]
            head = {lr for h, lr in groups if h}
            backbone = {lr for h, lr in groups if not h}
            assert len(head) == 1 and len(backbone) == 1, groups
            (h,), (b,) = head, backbone
            assert b == pytest.approx(0.1 * h, rel=1e-9)
            seen.append(h)
    assert max(seen) <= 1e-3 * (1 + 1e-9) and seen[0] < seen[STEPS - 1]  # warmup rose, never above the head lr
