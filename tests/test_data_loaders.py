"""MemoryLoader sharding and order, batch transforms, mixup/cutmix targets."""

from __future__ import annotations

import torch

from cnnray.config.data import AugmentSection, DataSection
from cnnray.data import MemoryLoader, MixupCutmix, build_transforms, describe_dataset
from cnnray.data.transforms import source_defaults


def _data(n: int = 103) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.arange(n, dtype=torch.int64).view(n, 1, 1, 1).expand(n, 1, 2, 2).to(torch.uint8).contiguous()
    return images, torch.arange(n)  # label == index, so batches reveal which samples they hold


def _ids(loader: MemoryLoader) -> list[int]:
    return [int(v) for _, y in loader for v in y]


def test_eval_shards_are_disjoint_and_complete():
    x, y = _data()
    shards = [_ids(MemoryLoader(x, y, 8, rank=r, world_size=2, shuffle=False, drop_last=False)) for r in (0, 1)]
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(103))
    assert [len(MemoryLoader(x, y, 8, rank=r, world_size=2, shuffle=False, drop_last=False)) for r in (0, 1)] == [7, 7]


def test_train_shards_disjoint_equal_length_and_cover_over_epochs():
    x, y = _data()
    seen: set[int] = set()
    for epoch in range(6):
        loaders = [MemoryLoader(x, y, 8, rank=r, world_size=2, seed=3) for r in (0, 1)]
        for ld in loaders:
            ld.set_epoch(epoch)
        a, b = (_ids(ld) for ld in loaders)
        assert not set(a) & set(b)
        assert len(a) == len(b) == 6 * 8 == len(loaders[0]) * 8  # 51 per rank, last partial batch dropped
        seen |= set(a) | set(b)
    assert len(seen) > 100  # each epoch leaves out a different remainder
    full = [_ids(MemoryLoader(x, y, 8, rank=r, world_size=2, seed=3, drop_last=False)) for r in (0, 1)]
    assert len(full[0]) == len(full[1]) == 51 and len(set(full[0]) | set(full[1])) == 102  # 103 % 2 skipped


def test_order_reproducible_per_seed_and_epoch():
    x, y = _data()
    ld = MemoryLoader(x, y, 10, seed=7)
    ld.set_epoch(2)
    first = _ids(ld)
    resumed = MemoryLoader(x, y, 10, seed=7)
    resumed.set_epoch(2)
    assert _ids(resumed) == first
    ld.set_epoch(3)
    assert _ids(ld) != first
    other = MemoryLoader(x, y, 10, seed=8)
    other.set_epoch(2)
    assert _ids(other) != first


def test_loader_applies_transform_on_device():
    x, y = _data(20)
    ld = MemoryLoader(x, y, 4, transform=lambda b: b.float() / 255)
    xb, yb = next(iter(ld))
    assert xb.dtype == torch.float32 and yb.dtype == torch.int64 and xb.shape == (4, 1, 2, 2)
    assert next(iter(MemoryLoader(x, y, 4)))[0].dtype == torch.uint8  # no transform: raw uint8


def test_transforms_keep_shape_dtype_and_normalize():
    cfg = DataSection(source="synthetic", samples_per_class=4, image_size=16, augment=AugmentSection(
        crop_padding=2, rotation=15, translate=0.1, scale_min=0.9, scale_max=1.1, brightness=0.3, contrast=0.3,
        saturation=0.3, erasing_prob=0.5))
    info = describe_dataset(cfg)
    train_tf, eval_tf = build_transforms(cfg, info)
    batch = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    out = train_tf(batch, generator=torch.Generator().manual_seed(0))
    again = train_tf(batch, generator=torch.Generator().manual_seed(0))
    assert out.shape == batch.shape and out.dtype == torch.float32 and torch.equal(out, again)
    assert not torch.equal(out, eval_tf(batch))
    ev = eval_tf(batch)
    mean = torch.tensor(info.mean).view(1, 3, 1, 1)
    std = torch.tensor(info.std).view(1, 3, 1, 1)
    assert torch.allclose(ev, (batch.float() / 255 - mean) / std, atol=1e-5)
    gray = DataSection(source="digits", image_size=8)
    tf, _ = build_transforms(gray, describe_dataset(gray))
    assert tf(torch.zeros(2, 1, 8, 8, dtype=torch.uint8)).shape == (2, 1, 8, 8)


def test_source_defaults():
    assert source_defaults(DataSection(source="digits")).hflip is False
    assert source_defaults(DataSection(source="cifar10")).hflip is True
    assert source_defaults(DataSection(source="cifar10", image_size=32)).crop_padding == 4
    off = AugmentSection(hflip=False, crop_padding=0)
    assert source_defaults(DataSection(source="cifar10", augment=off)).hflip is False


def test_crop_and_flip_move_pixels_exactly():
    from cnnray.data.augment import random_crop, random_hflip

    x = torch.rand(16, 3, 8, 8)
    cropped = random_crop(x, 2, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    windows = [padded[..., dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
    assert all(any(torch.equal(c, w[i]) for w in windows) for i, c in enumerate(cropped))  # a shifted window
    flipped = random_hflip(x, torch.Generator().manual_seed(1))
    assert all(torch.equal(f, o) or torch.equal(f, o.flip(2)) for f, o in zip(flipped, x))


def test_identity_affine_and_rotation():
    from cnnray.data.augment import random_affine

    x = torch.rand(4, 3, 8, 8)
    assert torch.allclose(random_affine(x, 0.0, 0.0, (1.0, 1.0)), x, atol=1e-5)
    turned = random_affine(x, 180.0, 0.0, (1.0, 1.0), torch.Generator().manual_seed(0))
    assert turned.shape == x.shape and not torch.allclose(turned, x)


def test_mixup_cutmix_targets_sum_to_one():
    x = torch.rand(8, 3, 16, 16)
    y = torch.arange(8) % 5
    for mixup, cutmix in ((0.4, 0.0), (0.0, 1.0), (0.4, 1.0)):
        mix = MixupCutmix(mixup, cutmix, 1.0, 5, label_smoothing=0.1)
        assert mix.active
        for seed in range(4):
            xm, t = mix(x, y, generator=torch.Generator().manual_seed(seed))
            assert xm.shape == x.shape and t.shape == (8, 5) and t.dtype == torch.float32
            assert torch.allclose(t.sum(1), torch.ones(8)) and (t >= 0).all()
    off = MixupCutmix(0.0, 0.0, 1.0, 5, label_smoothing=0.1)
    assert not off.active
    xm, t = off(x, y)
    assert xm is x and torch.allclose(t.max(1).values, torch.full((8,), 0.92))
