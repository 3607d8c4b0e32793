"""Colour augmentation (hue), random-erasing settings and normalization statistics of the batch transforms."""

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from cnnray.config.data import IMAGENET_MEAN, IMAGENET_STD, AugmentSection, DataSection
from cnnray.data import augment as A
from cnnray.data.info import DatasetInfo
from cnnray.data.transforms import BatchTransform, build_transforms, normalization_stats


def _info(channels, mean=None, std=None):
    return DatasetInfo(source="synthetic", num_classes=2, class_names=("a", "b"), channels=channels, image_size=8,
                       num_train=4, num_val=2, fingerprint="0" * 64, mean=mean or (0.3,) * channels,
                       std=std or (0.2,) * channels, nbytes_train=0)


@pytest.mark.parametrize("shift", [0.0, 0.1, -0.1, 0.25, -0.5, 0.5])
def test_adjust_hue_matches_torchvision(shift):
    x = torch.rand(5, 3, 9, 7, generator=torch.Generator().manual_seed(0))
    x[0] = 0.5  # a grey image: hue undefined, must stay grey
    out = A.adjust_hue(x, torch.full((5,), shift))
    torch.testing.assert_close(out, TF.adjust_hue(x, shift), atol=2e-6, rtol=0)
    torch.testing.assert_close(out[0], x[0])


def test_adjust_hue_per_image_shift_and_primaries():
    red = torch.zeros(3, 3, 2, 2)
    red[:, 0] = 1.0
    out = A.adjust_hue(red, torch.tensor([1 / 3, 2 / 3, 1.0]))  # red -> green -> blue -> red
    expect = torch.zeros(3, 3, 2, 2)
    expect[0, 1] = expect[1, 2] = expect[2, 0] = 1.0
    torch.testing.assert_close(out, expect, atol=1e-6, rtol=0)


def test_hsv_round_trip():
    x = torch.rand(4, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(A.hsv_to_rgb(A.rgb_to_hsv(x)), x, atol=1e-6, rtol=0)


def test_hue_is_identity_on_grayscale():
    x = torch.rand(4, 1, 6, 6)
    assert A.adjust_hue(x, torch.full((4,), 0.3)) is x
    with pytest.raises(ValueError, match="1- or 3-channel"):
        A.adjust_hue(torch.rand(2, 2, 4, 4), torch.zeros(2))


def test_color_jitter_hue_keeps_value_and_saturation():
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    out = A.color_jitter(x, 0, 0, 0, torch.Generator().manual_seed(0), hue=0.1)
    assert not torch.allclose(out, x)
    hsv_in, hsv_out = A.rgb_to_hsv(x), A.rgb_to_hsv(out)
    torch.testing.assert_close(hsv_out[:, 1:], hsv_in[:, 1:], atol=1e-5, rtol=0)
    d = (hsv_out[:, 0] - hsv_in[:, 0]) % 1.0
    d = torch.where(d > 0.5, d - 1, d)  # signed shift in turns, per pixel
    assert d.abs().max() <= 0.1 + 1e-5
    per_image = d.flatten(1)
    assert (per_image.max(1).values - per_image.min(1).values).max() < 1e-4  # one shift per image


def test_batch_transform_hue_rgb_and_grayscale():
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    rgb = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    base = AugmentSection(hflip=False, crop_padding=0, brightness=0.1)
    tf0 = BatchTransform((0.5,) * 3, (0.25,) * 3, True, base)
    tf1 = BatchTransform((0.5,) * 3, (0.25,) * 3, True, base.model_copy(update={"hue": 0.2}))
    assert not torch.allclose(tf0(rgb, g()), tf1(rgb, g()))
    hue_only = BatchTransform((0.5,) * 3, (0.25,) * 3, False, AugmentSection(hflip=False, crop_padding=0, hue=0.2))
    assert not torch.allclose(hue_only(rgb, g()), rgb.float() / 255)
    # Grayscale: hue changes nothing and draws nothing, so the rest of the stream is unchanged.
    gray = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    tf0 = BatchTransform((0.5,), (0.25,), True, base.model_copy(update={"erasing_prob": 0.5}))
    tf1 = BatchTransform((0.5,), (0.25,), True, base.model_copy(update={"erasing_prob": 0.5, "hue": 0.2}))
    torch.testing.assert_close(tf0(gray, g()), tf1(gray, g()))


def test_erasing_scale_and_ratio_are_used():
    x = torch.full((3, 1, 10, 10), 255, dtype=torch.uint8)
    aug = AugmentSection(hflip=False, crop_padding=0, erasing_prob=1.0, erasing_scale=(0.49, 0.49),
                        erasing_ratio=(1.0, 1.0))
    out = BatchTransform((0.0,), (1.0,), False, aug)(x, torch.Generator().manual_seed(0))
    assert ((out == 0).flatten(1).sum(1) == 49).all()  # a 7x7 square: sqrt(0.49) of each side


def test_erasing_settings_validated():
    with pytest.raises(ValueError, match="min <= max"):
        AugmentSection(erasing_ratio=(3.3, 0.3))
    with pytest.raises(ValueError, match="<= 1"):
        AugmentSection(erasing_scale=(0.5, 1.5))


def test_normalization_stats():
    rgb, gray = _info(3, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6)), _info(1, (0.7,), (0.8,))
    assert normalization_stats(DataSection(), rgb) == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    assert normalization_stats(DataSection(), gray) == ((0.7,), (0.8,))
    imagenet = DataSection(normalize_stats="imagenet")
    assert normalization_stats(imagenet, rgb) == (IMAGENET_MEAN, IMAGENET_STD)
    (m,), (s,) = normalization_stats(imagenet, gray)
    assert m == pytest.approx(0.449) and s == pytest.approx(0.226)


def test_build_transforms_uses_imagenet_stats():
    cfg = DataSection(source="synthetic", normalize_stats="imagenet")
    _, eval_tf = build_transforms(cfg, _info(3))
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    expect = torch.tensor([(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]).view(1, 3, 1, 1)
    expect = expect.expand(1, 3, 2, 2)
    torch.testing.assert_close(eval_tf(x), expect)
