"""Every class the tutorial teaches, under its tutorial name in `cnnray.tutorial`, built and run on tiny inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import cnnray.tutorial as tut
from cnnray.layers import POOLS

NAMES = (
    "ConvolutionDemo", "simulate_simple_cell", "ResidualBlock", "ModernCNN", "ChannelAttention", "SpatialAttention",
    "CBAM", "AttentionConvBlock", "AdvancedPooling", "ModernActivations", "AdaptiveActivation", "ActivationComparison",
    "AdvancedNormalization", "DropBlock2D", "StochasticDepth", "RegularizedConvBlock", "WarmupCosineAnnealingLR",
    "AdaptiveTrainer", "ImageClassificationPipeline", "ModelOptimizer",
)


def _tiny_resnet(seed: int = 0, width: float = 0.125) -> nn.Module:
    from cnnray.models import create_model

    torch.manual_seed(seed)
    model = create_model("resnet18", num_classes=10, in_chans=1, stem="cifar", width=width)
    with torch.no_grad():  # non-trivial BN statistics, so folding and quantizing have something to get wrong
        model.train()(torch.randn(16, 1, 16, 16) * 2 + 0.5)
    return model.eval()


def _batches(n: int = 2, size: int = 8, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 1, 16, 16, generator=g), torch.randint(0, 10, (size,), generator=g)) for _ in range(n)]


def test_all_names_exported():
    assert set(NAMES) <= set(tut.__all__)
    assert all(getattr(tut, name).__doc__ for name in NAMES)


def test_convolution_demo_matches_conv2d():
    demo = tut.ConvolutionDemo()
    image, kernel = torch.randn(9, 11), torch.randn(3, 3)
    out = demo.manual_convolution(image, kernel, stride=2, padding=1)
    expected = torch.nn.functional.conv2d(image[None, None], kernel[None, None], stride=2, padding=1)[0, 0]
    assert out.shape == (5, 6)
    torch.testing.assert_close(out, expected)
    maps = demo.demonstrate_feature_maps(torch.arange(64.0).view(8, 8) % 8)  # a horizontal ramp
    assert maps["identity"].shape == (8, 8) and torch.equal(maps["identity"], torch.arange(64.0).view(8, 8) % 8)
    # A ramp along x: sobel_x responds inside the image, sobel_y does not.
    assert maps["sobel_x"][2:-2, 2:-2].abs().min() > 0 and maps["sobel_y"][2:-2, 2:-2].abs().max() == 0


def test_simple_cell_prefers_its_orientation():
    cols = torch.arange(32.0)
    vertical = torch.cos(2 * math.pi * cols / 4).expand(32, 32)  # stripes varying along x
    at_0, at_90 = tut.simulate_simple_cell(vertical, 0.0), tut.simulate_simple_cell(vertical, math.pi / 2)
    assert at_0.shape == (32, 32) and at_0.min() >= 0
    assert at_0.mean() > 5 * at_90.mean()
    assert tut.simulate_simple_cell(torch.ones(16, 16), 0.0)[4:-4, 4:-4].abs().max() < 1e-5  # no DC response


@pytest.mark.parametrize("in_ch,out_ch,stride", [(8, 8, 1), (8, 16, 2)])
def test_residual_block_shapes_and_shortcut(in_ch, out_ch, stride):
    block = tut.ResidualBlock(in_ch, out_ch, stride).eval()
    out = block(torch.randn(2, in_ch, 16, 16))
    assert out.shape == (2, out_ch, 16 // stride, 16 // stride) and out.min() >= 0
    assert isinstance(block.downsample, nn.Identity) == (in_ch == out_ch and stride == 1)
    custom = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride), nn.BatchNorm2d(out_ch))
    assert tut.ResidualBlock(in_ch, out_ch, stride, downsample=custom).downsample is custom


def test_modern_cnn_any_input_size_and_dropout():
    model = tut.ModernCNN(num_classes=5, dropout_rate=0.3, in_chans=1, width=0.125).eval()
    assert model.head_drop.p == 0.3 and model(torch.randn(2, 1, 16, 16)).shape == (2, 5)
    assert model(torch.randn(1, 1, 24, 20)).shape == (1, 5)


def test_channel_attention_shares_one_mlp():
    ca = tut.ChannelAttention(32, reduction=4)
    hidden = 8
    # One MLP: C*h + h + h*C + C parameters; an MLP per pooling would have twice that.
    assert sum(p.numel() for p in ca.parameters()) == 32 * hidden + hidden + hidden * 32 + 32
    x = torch.randn(2, 32, 8, 8)
    gate = ca.attention(x)
    assert gate.shape == (2, 32, 1, 1) and 0 < gate.min() and gate.max() < 1
    torch.testing.assert_close(ca(x), x * gate)


def test_spatial_attention_keeps_size_and_refuses_even_kernel():
    sa = tut.SpatialAttention(kernel_size=7)
    x = torch.randn(2, 4, 9, 11)
    assert sa(x).shape == x.shape and 0 < sa.attention(x).min() and sa.attention(x).max() < 1
    with pytest.raises(ValueError, match="odd"):
        tut.SpatialAttention(kernel_size=4)


def test_cbam_is_channel_then_spatial():
    cbam = tut.CBAM(16, reduction=4, kernel_size=3)
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(cbam(x), cbam.spatial(cbam.channel(x)))
    assert cbam.spatial.conv.kernel_size == (3, 3)


def test_attention_conv_block_gates_the_branch():
    block = tut.AttentionConvBlock(8, 16, stride=2).eval()
    assert type(block.attn).__name__ == "CBAM"
    x = torch.randn(2, 8, 16, 16, requires_grad=True)
    out = block(x)
    out.sum().backward()
    assert out.shape == (2, 16, 8, 8) and x.grad.abs().sum() > 0


@pytest.mark.parametrize("pool_type", POOLS.names())
def test_advanced_pooling(pool_type):
    pool = tut.AdvancedPooling(4, pool_type).eval()
    x = torch.rand(2, 4, 7, 7) + 0.1
    out = pool(x)
    assert out.shape == (2, 4, 4, 4)  # 'same' padding: ceil(7 / 2)
    torch.testing.assert_close(pool(x), out)  # eval is deterministic (stochastic pooling averages)


def test_modern_activations_formulas():
    x = torch.linspace(-4, 4, 101)
    A = tut.ModernActivations
    torch.testing.assert_close(A.swish(x), x * torch.sigmoid(x))
    torch.testing.assert_close(A.mish(x), x * torch.tanh(torch.nn.functional.softplus(x)))
    assert (A.gelu(x) - torch.nn.functional.gelu(x)).abs().max() < 1e-3
    frelu = A.frelu(3)
    y = torch.randn(2, 3, 8, 8)
    assert isinstance(frelu, nn.Module) and (frelu(y) >= y).all()
    assert sum(p.numel() for p in frelu.parameters()) > 0  # weights that live in the model


def test_adaptive_activation_learns_its_slope():
    act = tut.AdaptiveActivation(num_parameters=3, init_value=0.1)
    x = torch.tensor([-2.0, 3.0]).view(1, 1, 1, 2).repeat(1, 3, 1, 1)
    out = act(x)
    torch.testing.assert_close(out[0, :, 0], torch.tensor([[-0.2, 3.0]] * 3))
    out.sum().backward()
    assert act.weight.grad.shape == (3,) and torch.allclose(act.weight.grad, torch.full((3,), -2.0))
    assert "weight" in act.state_dict()


def test_activation_comparison_gradients_and_timing():
    comp = tut.ActivationComparison(("relu", "swish", "gelu", "frelu"), channels=4)
    grads = comp.compare_gradients(num_points=2001)
    assert grads["relu"]["grad"].numel() == 2001
    assert grads["relu"]["dead_fraction"] == pytest.approx(0.5, abs=1e-3)
    assert grads["swish"]["at_zero"] == pytest.approx(0.5) and grads["gelu"]["at_zero"] == pytest.approx(0.5)
    assert grads["swish"]["min"] < 0 and grads["swish"]["dead_fraction"] == 0  # swish dips below 0, never dead
    bench = comp.benchmark_performance((4, 8, 8), warmup=1, repeats=3)
    assert set(bench) == {"relu", "swish", "gelu", "frelu"}
    assert all(b["latency_median_s"] > 0 and math.isfinite(b["throughput_ips"]) for b in bench.values())


@pytest.mark.parametrize("norm_type", ["batch", "group", "layer", "instance", "switchable"])
def test_advanced_normalization_eval_is_per_sample(norm_type):
    torch.manual_seed(0)
    norm = tut.AdvancedNormalization(8, norm_type)
    x = torch.randn(4, 8, 6, 6) * 3 + 1
    out = norm(x)
    assert out.shape == x.shape and out.mean().abs() < 0.2  # normalised in training
    norm.eval()
    # In eval a sample's output must not depend on the rest of the batch (running statistics for BN parts).
    torch.testing.assert_close(norm(x[:1]), norm(x)[:1])


def test_dropblock_drops_about_rate_and_keeps_scale():
    torch.manual_seed(0)
    db = tut.DropBlock2D(drop_rate=0.2, block_size=3)
    x = torch.ones(4, 16, 24, 24)
    out = db(x)
    dropped = (out == 0).float().mean().item()
    assert 0.12 < dropped < 0.28 and out.mean().item() == pytest.approx(1.0, rel=1e-4)
    assert torch.equal(db.eval()(x), x)


def test_stochastic_depth_per_sample_scaled_and_off_in_eval():
    torch.manual_seed(0)
    sd = tut.StochasticDepth(drop_prob=0.25)
    x = torch.ones(4000, 3, 2, 2)
    out = sd(x)
    per_sample = out.flatten(1)
    assert ((per_sample == 0).all(1) | (per_sample == 1 / 0.75).all(1)).all()  # all or nothing, scaled by 1/keep
    assert out.mean().item() == pytest.approx(1.0, abs=0.05)
    assert torch.equal(sd.eval()(x), x)


def test_regularized_block_random_in_training_only():
    torch.manual_seed(0)
    block = tut.RegularizedConvBlock(8, 8, drop_block_rate=0.3, block_size=3, drop_path_rate=0.5)
    x = torch.randn(4, 8, 12, 12)
    assert not torch.equal(block(x), block(x))
    block.eval()
    assert torch.equal(block(x), block(x)) and block(x).shape == (4, 8, 12, 12)


def test_warmup_cosine_values_at_known_epochs():
    params = [nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD([{"params": params, "lr": 0.1}, {"params": [nn.Parameter(torch.zeros(1))], "lr": 0.01}])
    sched = tut.WarmupCosineAnnealingLR(opt, warmup_epochs=4, max_epochs=14, eta_min=1e-3)
    lrs = []
    for _ in range(15):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1 / 4)  # not 0: the first epoch trains
    assert lrs[4] == pytest.approx(0.1) and max(lrs) == pytest.approx(0.1)
    assert lrs[9] == pytest.approx((0.1 + 1e-3) / 2)  # half way through the cosine
    assert lrs[14] == pytest.approx(1e-3) and all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert opt.param_groups[1]["lr"] == pytest.approx(1e-3)  # each group anneals from its own base


def test_adaptive_trainer_trains_and_keeps_best():
    model = _tiny_resnet(1).train()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = tut.AdaptiveTrainer(model, _batches(2), _batches(1, seed=1), device="cpu")
    history = trainer.train(epochs=1)
    assert len(history) == 1 and math.isfinite(history[0]["train_loss"]) and 0 <= history[0]["val_acc"] <= 1
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert trainer.validate()["val_acc"] == pytest.approx(history[0]["val_acc"])


def test_image_classification_pipeline_on_digits():
    pipe = tut.ImageClassificationPipeline(num_classes=10, input_size=16, overrides=["model.width=0.125"])
    train, val = pipe.prepare_data(batch_size=16, limit=32)
    x, y = next(iter(train))
    assert x.shape == (16, 1, 16, 16) and x.dtype == torch.float32 and y.max() < 10
    history = pipe.train_model(epochs=1)
    assert len(history) == 1 and math.isfinite(history[0]["train_loss"])
    assert 0 <= pipe.evaluate_model()["val_acc"] <= 1
    cls, probs = pipe.predict_single_image((torch.rand(8, 8) * 255).to(torch.uint8))
    assert 0 <= cls < 10 and probs.shape == (10,) and probs.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert pipe.model.training  # predicting did not leave the model in eval mode


@pytest.fixture(scope="module")
def optimizer_model() -> nn.Module:
    return _tiny_resnet(0)


def test_model_optimizer_quantize_prune_fuse(optimizer_model):
    model = optimizer_model
    opt = tut.ModelOptimizer(model)
    x = torch.randn(16, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model(x)
        fused = opt.optimize_for_inference()
        assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
        torch.testing.assert_close(fused(x), ref, atol=1e-4, rtol=1e-4)
        pruned = opt.prune_model(amount=0.5)
        n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        assert n(pruned.model) < n(model) and pruned.removed > 0 and pruned.model(x).shape == ref.shape
        q = opt.quantize_model(x)
        int8 = q.model(x)
    assert any(t.dtype == torch.int8 for t in q.state.values())  # conv weights really are int8
    assert (int8 - ref).abs().max() < 0.1 * ref.abs().max() + 1e-3


def test_model_optimizer_distill_and_benchmark(optimizer_model):
    opt = tut.ModelOptimizer(optimizer_model)
    student = _tiny_resnet(2)
    before = [p.detach().clone() for p in student.parameters()]
    history = opt.knowledge_distillation(student.train(), _batches(2), epochs=1)
    assert math.isfinite(history[0]["train_kl_teacher"]) and history[0]["train_kl_teacher"] >= 0
    assert any(not torch.equal(b, p) for b, p in zip(before, student.parameters()))
    assert not optimizer_model.training  # the teacher was not switched to train mode
    bench = opt.benchmark_performance(torch.randn(2, 1, 16, 16), warmup=1, repeats=3)
    assert bench["latency_median_s"] > 0 and math.isfinite(bench["throughput_ips"]) and bench["params"] > 0
