"""The tutorial's recipe shipped as `--config tutorial`: its values, and one step of it on digits without Ray."""

import pytest
import torch

from cnnray.config import load_config
from cnnray.data import build_transforms, describe_dataset, load_arrays
from cnnray.models.from_config import build_model
from cnnray.loop.engine import Engine


@pytest.fixture(scope="module")
def cfg():
    return load_config("tutorial")


def test_recipe_values(cfg):
    o, s, t, a, d = cfg.optim, cfg.schedule, cfg.train, cfg.data.augment, cfg.data
    assert (o.name, o.lr, o.weight_decay, o.betas) == ("adamw", 1e-3, 1e-4, (0.9, 0.999))
    assert o.lr * o.backbone_lr_mult == pytest.approx(1e-4) and o.lr * o.head_lr_mult == pytest.approx(1e-3)
    assert o.no_decay_norm_bias is False
    assert (s.name, s.warmup_epochs, s.min_lr) == ("cosine", 5, 1e-6)
    assert t.label_smoothing == 0.1 and t.grad_clip == 1.0
    assert (t.monitor, t.early_stop_patience) == ("val_acc", 10)
    assert t.precision == "auto" and t.ema is False
    assert cfg.model.drop_rate == 0.5
    assert a.hflip is True and a.crop_padding == 0 and a.rotation == 15
    assert (a.brightness, a.contrast, a.saturation, a.hue) == (0.2, 0.2, 0.2, 0.1)
    assert (a.translate, a.scale_min, a.scale_max) == (0.1, 0.9, 1.1)
    assert (a.erasing_prob, a.erasing_scale, a.erasing_ratio) == (0.2, (0.02, 0.33), (0.3, 3.3))
    assert (a.mixup_alpha, a.cutmix_alpha) == (0, 0)
    assert a.normalize is True and d.normalize_stats == "imagenet"
    assert d.source == "digits"  # runs on the default data


def test_overrides_apply_on_top(cfg):
    assert load_config("tutorial", ["train.epochs=2"]).train.epochs == 2


def test_one_step_on_digits(cfg):
    """Transforms, model, AdamW groups, clipping and loss of the recipe run a train step and an evaluation."""
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"precision": "fp32", "epochs": 1})})
    info = describe_dataset(cfg.data)
    tx, ty, vx, vy = load_arrays(cfg.data)
    train_tf, eval_tf = build_transforms(cfg.data, info)
    assert train_tf.mean.flatten().tolist() == pytest.approx([0.449]) and train_tf.augment.hue == 0.1
    g = torch.Generator().manual_seed(0)
    xb = train_tf(tx[:32], g)
    assert xb.shape == (32, 1, 32, 32) and torch.isfinite(xb).all()
    torch.manual_seed(0)
    model = build_model(cfg, info.num_classes, info.channels)
    e = Engine(model, cfg, steps_per_epoch=2, num_classes=info.num_classes, device="cpu")
    lrs = sorted({round(grp["initial_lr"], 12) for grp in e.optimizer.param_groups})
    assert lrs == [1e-4, 1e-3]
    assert all(grp["weight_decay"] == 1e-4 for grp in e.optimizer.param_groups)
    assert e.optimizer.param_groups[0]["betas"] == (0.9, 0.999)
    before = [p.detach().clone() for p in model.parameters()]
    out = e.train_epoch([(xb[:16], ty[:16]), (train_tf(tx[32:48], g), ty[32:48])])
    assert torch.isfinite(torch.tensor(out["train_loss"]))
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    val = e.evaluate([(eval_tf(vx[:64]), vy[:64])])
    assert 0 <= val["val_acc"] <= 1 and "val_f1_macro" in val


def test_plain_loop_schedule_is_the_recipe(cfg):
    """cnnray.bench.plain_loop's LambdaLR factor equals cnnray's Schedule under the tutorial config."""
    from cnnray.bench.plain_loop import LR_HEAD, lr_factor
    from cnnray.loop.schedules import Schedule

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    opt.param_groups[0]["lr_mult"] = 1.0
    sched = Schedule(opt, cfg.schedule, base_lr=cfg.optim.lr, steps_per_epoch=10, epochs=20)
    assert LR_HEAD == cfg.optim.lr
    for step in range(0, 201, 7):
        assert LR_HEAD * lr_factor(step, 50, 200) == pytest.approx(sched.lr_at(step), rel=1e-9, abs=1e-15)
    assert LR_HEAD * lr_factor(200, 50, 200) == pytest.approx(1e-6)


def test_plain_loop_transforms_run_on_digits():
    from cnnray.bench.plain_loop import transforms

    train_tf, eval_tf = transforms(1)
    x = torch.randint(0, 256, (1, 32, 32), dtype=torch.uint8)
    torch.manual_seed(0)
    out = train_tf(x)
    assert out.shape == (1, 32, 32) and out.dtype == torch.float32
    torch.testing.assert_close(eval_tf(x), (x.float() / 255 - 0.449) / 0.226)


def test_registered_card_normalizes_like_training(cfg):
    """Serving reads mean/std from the model card: with normalize_stats=imagenet they must be ImageNet's, as in
    training, not the data set's own statistics."""
    from cnnray.data.transforms import normalization_stats
    from cnnray.classifier.card import card_for_training

    info = describe_dataset(cfg.data)
    card = card_for_training(cfg, info, lineage={}, training={})
    mean, std = normalization_stats(cfg.data, info)
    assert card.input.mean == pytest.approx(mean) and card.input.std == pytest.approx(std)
    assert card.input.mean != pytest.approx(tuple(info.mean))
    default = load_config()
    assert card_for_training(default, info, lineage={}, training={}).input.mean == pytest.approx(tuple(info.mean))


def test_submit_accepts_a_builtin_config_name(tmp_path):
    from cnnray.jobs.validate import _config_paths
    from cnnray.errors import UserInputError

    assert _config_paths(["tutorial"])[0].name == "tutorial.yaml"
    with pytest.raises(UserInputError, match="unknown config 'nosuch'.*tutorial"):
        _config_paths(["nosuch"])
