"""DropBlock, DropPath and the drop-path schedule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnray.layers import DropBlock2d, DropPath, drop_block_2d, drop_path, drop_path_rates


def expected_drop_fraction(drop_prob: float, bs: int, h: int, w: int) -> float:
    """Exact E[dropped fraction] for independent seeds: pixel dropped unless no covering seed fires."""
    gamma = drop_prob / bs**2 * (h * w) / ((h - bs + 1) * (w - bs + 1))
    # Seeds are block top-left corners in [0, size - bs]; count those whose block covers each pixel.
    n_i = torch.tensor([min(i, h - bs) - max(0, i - bs + 1) + 1 for i in range(h)], dtype=torch.float64)
    n_j = torch.tensor([min(j, w - bs) - max(0, j - bs + 1) + 1 for j in range(w)], dtype=torch.float64)
    covering = n_i[:, None] * n_j[None, :]
    return (1 - (1 - gamma) ** covering).mean().item()


def covered_by_full_squares(zero: torch.Tensor, bs: int) -> torch.Tensor:
    """For a (B, C, H, W) bool map: is each pixel inside some all-True bs x bs square within the map?"""
    full = F.avg_pool2d(zero.float(), bs, stride=1) == 1.0  # top-left corners of all-zero squares
    return F.max_pool2d(F.pad(full.float(), (bs - 1,) * 4), bs, stride=1).bool()


def test_drop_fraction_matches_drop_prob():
    torch.manual_seed(0)
    x = torch.ones(64, 8, 64, 64)
    out = drop_block_2d(x, 0.1, 7, per_channel=True)
    measured = (out == 0).float().mean().item()
    # 512 independent 64x64 maps: the measured fraction has std ~0.0013, so 0.006 is > 4 sigma.
    assert abs(measured - expected_drop_fraction(0.1, 7, 64, 64)) < 0.006
    # Ghiasi's gamma ignores block overlap and the thinner coverage of the border, so the true
    # fraction (0.0947 here) sits a little below drop_prob; 0.015 allows that bias plus the noise.
    assert abs(measured - 0.1) < 0.015


@pytest.mark.parametrize("drop_prob,bs,size", [(0.05, 5, 32), (0.3, 3, 24), (0.2, 7, 20)])
def test_dropped_pixels_form_whole_squares_inside_the_map(drop_prob, bs, size):
    torch.manual_seed(1)
    out = drop_block_2d(torch.ones(8, 4, size, size), drop_prob, bs, per_channel=True)
    zero = out == 0
    assert zero.any()
    # Every dropped pixel lies in a complete bs x bs dropped square that fits inside the map:
    # isolated pixels or blocks clipped at the border would fail this.
    assert torch.equal(covered_by_full_squares(zero, bs) & zero, zero)


def test_single_seed_is_one_square():
    # bs = 5 on 9x9 leaves a 5x5 grid of seeds; with gamma near 1 almost every seed fires and the
    # zeros are unions of whole 5x5 squares (each sample, each channel on its own).
    torch.manual_seed(0)
    out = drop_block_2d(torch.ones(2, 3, 9, 9), 0.2, 5)
    zero = out == 0
    assert zero.any() and torch.equal(covered_by_full_squares(zero, 5) & zero, zero)


def test_block_as_large_as_the_map_is_clamped():
    # Unclamped, a 7x7 (or 4x4) block on a 4x4 map has one seed position and drops whole maps with
    # probability drop_prob; clamped to 2x2 it drops patches and almost never a whole map.
    from cnnray.layers.drop import effective_block_size

    assert effective_block_size(7, 4, 4) == 2 and effective_block_size(4, 4, 4) == 2
    assert effective_block_size(3, 4, 4) == 3 and effective_block_size(7, 9, 9) == 7
    assert effective_block_size(5, 1, 7) == 1
    torch.manual_seed(5)
    out = drop_block_2d(torch.ones(256, 16, 4, 4), 0.2, 7)
    zero = out == 0
    assert torch.equal(covered_by_full_squares(zero, 2) & zero, zero)
    whole_maps = zero.flatten(2).all(-1).float().mean().item()
    assert whole_maps < 0.01  # unclamped this would be 0.2
    assert 0.1 < zero.float().mean().item() < 0.3


def test_eval_and_zero_prob_are_identity():
    x = torch.randn(2, 3, 16, 16)
    block = DropBlock2d(0.3, 5).eval()
    assert torch.equal(block(x), x)
    assert torch.equal(DropBlock2d(0.0, 5).train()(x), x)
    assert torch.equal(drop_block_2d(x, 0.3, 5, training=False), x)


def test_expectation_preserved():
    torch.manual_seed(2)
    x = torch.rand(8, 4, 32, 32) + 0.5
    means = torch.stack([drop_block_2d(x, 0.2, 5).mean() for _ in range(100)])
    # Rescaling by numel / kept makes each draw's mean close to x's; 1% is loose for 100 draws.
    assert means.mean().item() == pytest.approx(x.mean().item(), rel=0.01)
    out = drop_block_2d(x, 0.2, 5)
    kept = out != 0
    assert torch.allclose(out[kept] / x[kept], (out[kept] / x[kept])[0].expand(int(kept.sum())))


def test_map_smaller_than_block():
    torch.manual_seed(3)
    x = torch.ones(4, 3, 4, 5)
    outs = [drop_block_2d(x, 0.5, 7, per_channel=True) for _ in range(20)]
    assert all(o.shape == x.shape and torch.isfinite(o).all() for o in outs)
    zero = torch.stack([o == 0 for o in outs]).flatten(0, 1)
    assert zero.any()
    # The 7x7 block would cover the map: clamped to 2x2 (half the height), zeros come in whole 2x2 squares.
    assert torch.equal(covered_by_full_squares(zero, 2) & zero, zero)


def test_per_channel_versus_shared_masks():
    torch.manual_seed(4)
    x = torch.ones(4, 6, 16, 16)
    shared = drop_block_2d(x, 0.3, 3, per_channel=False) == 0
    assert torch.equal(shared, shared[:, :1].expand_as(shared))  # same mask on every channel
    assert not torch.equal(shared[0], shared[1])  # but one per sample
    separate = drop_block_2d(x, 0.3, 3, per_channel=True) == 0
    assert not torch.equal(separate, separate[:, :1].expand_as(separate))


@pytest.mark.parametrize("kwargs,name", [({"drop_prob": 1.0}, "drop_prob"), ({"drop_prob": -0.1}, "drop_prob"),
                                         ({"block_size": 0}, "block_size"), ({"block_size": 2.5}, "block_size")])
def test_dropblock_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DropBlock2d(**kwargs)
    with pytest.raises(ValueError, match=name):
        drop_block_2d(torch.ones(1, 1, 8, 8), **{"drop_prob": 0.1, "block_size": 3, **kwargs})


def test_drop_path_drops_whole_samples_and_keeps_expectation():
    torch.manual_seed(5)
    x = torch.rand(20000, 2, 3, 3) + 0.5
    out = drop_path(x, 0.3, training=True)
    dropped = (out == 0).flatten(1).all(1)
    kept = torch.isclose(out, x / 0.7).flatten(1).all(1)
    assert torch.equal(dropped | kept, torch.ones_like(dropped))
    # Binomial(20000, 0.3): std 0.0032, so 0.015 is > 4 sigma.
    assert dropped.float().mean().item() == pytest.approx(0.3, abs=0.015)
    assert out.mean().item() == pytest.approx(x.mean().item(), rel=0.02)


def test_drop_path_identity_cases():
    x = torch.randn(4, 3, 2, 2)
    assert torch.equal(drop_path(x, 0.5, training=False), x)
    assert torch.equal(DropPath(0.0).train()(x), x)
    assert torch.equal(DropPath(0.5).eval()(x), x)
    with pytest.raises(ValueError, match="drop_prob"):
        DropPath(1.0)


def test_drop_path_rates_linear():
    assert drop_path_rates(0.2, 5) == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert drop_path_rates(0.1, 16) == pytest.approx(torch.linspace(0, 0.1, 16).tolist())
    assert drop_path_rates(0.3, 1) == [0.0]
    with pytest.raises(ValueError, match="drop_path_rate"):
        drop_path_rates(1.5, 4)
    with pytest.raises(ValueError, match="num_blocks"):
        drop_path_rates(0.1, -1)
