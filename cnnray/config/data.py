"""The `data` section: where images come from, how they are loaded, normalized and augmented."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from cnnray.config.base import Strict

# ImageNet's per-channel (R, G, B) statistics on the 0-1 scale, as torchvision's pretrained models use them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class AugmentSection(Strict):
    """Batch-level augmentations, applied on the training device; None means the source's default."""

    hflip: bool | None = Field(default=None, description=(
        "mirror left-right with probability 0.5; None: on for natural images (cifar, imagefolder, parquet, "
        "synthetic), off for digits"))
    crop_padding: int | None = Field(default=None, ge=0, description=(
        "random crop after zero padding by this many pixels; 0: no crop; None: image_size/8 (digits: /16)"))
    rotation: float = Field(default=0.0, ge=0, le=180, description="max rotation in degrees, drawn U(-v, v)")
    translate: float = Field(default=0.0, ge=0, lt=1, description=(
        "max shift as a fraction of the image size, drawn U(-v, v) per axis"))
    scale_min: float = Field(default=1.0, gt=0, description="min zoom factor of the random affine (1: none)")
    scale_max: float = Field(default=1.0, gt=0, description="max zoom factor of the random affine (>= scale_min)")
    brightness: float = Field(default=0.0, ge=0, le=1, description="brightness factor drawn U(1-v, 1+v); 0: off")
    contrast: float = Field(default=0.0, ge=0, le=1, description="contrast factor drawn U(1-v, 1+v); 0: off")
    saturation: float = Field(default=0.0, ge=0, le=1, description=(
        "saturation factor drawn U(1-v, 1+v); 0: off; no effect on 1-channel images"))
    hue: float = Field(default=0.0, ge=0, le=0.5, description=(
        "hue shift drawn U(-v, v) in turns of the colour wheel (0.5 = 180 degrees), as torchvision's "
        "ColorJitter; 0: off; no effect on 1-channel images (grey has no hue)"))
    erasing_prob: float = Field(default=0.0, ge=0, le=1, description=(
        "probability per image of erasing one random rectangle (to 0 after normalization: the mean)"))
    erasing_scale: tuple[float, float] = Field(default=(0.02, 0.33), description=(
        "random erasing: [min, max] area of the rectangle as a fraction of the image, in (0, 1]"))
    erasing_ratio: tuple[float, float] = Field(default=(0.3, 3.3), description=(
        "random erasing: [min, max] aspect ratio (height/width) of the rectangle, > 0, drawn log-uniform"))
    mixup_alpha: float = Field(default=0.0, ge=0, description="mixup Beta(alpha, alpha) parameter; 0: off")
    cutmix_alpha: float = Field(default=0.0, ge=0, description="cutmix Beta(alpha, alpha) parameter; 0: off")
    mix_prob: float = Field(default=1.0, ge=0, le=1, description=(
        "probability a batch is mixed at all (when mixup or cutmix is on)"))
    normalize: bool = Field(default=True, description=(
        "subtract the mean and divide by the std per channel (statistics chosen by data.normalize_stats)"))

    @field_validator("erasing_scale", "erasing_ratio")
    @classmethod
    def _ordered_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1]:
            raise ValueError(f"expected [min, max] with 0 < min <= max, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _scale_order(self) -> AugmentSection:
        if self.scale_min > self.scale_max:
            raise ValueError(f"scale_min ({self.scale_min}) must be <= scale_max ({self.scale_max})")
        if self.erasing_scale[1] > 1:
            raise ValueError(f"erasing_scale max must be <= 1 (a fraction of the image), got {self.erasing_scale[1]}")
        return self


class DataSection(Strict):
    """Data source, split, loader and augmentation."""

    source: Literal["digits", "cifar10", "cifar100", "imagefolder", "parquet", "synthetic"] = Field(
        default="digits", description="where the images come from")
    path: str | None = Field(default=None, description="directory or URI; required by cifar*, imagefolder, parquet")
    image_size: int = Field(default=32, ge=4, le=1024, description=(
        "pixels; every loader yields image_size x image_size images"))
    channels: Literal[1, 3] | None = Field(default=None, description=(
        "None: the source's own (digits 1, synthetic 3); 1 or 3 converts"))
    val_fraction: float = Field(default=0.2, gt=0, lt=1, description=(
        "fraction of the images (of the whole set, per class) held out for validation when the source has no val "
        "split"))
    test_fraction: float = Field(default=0.15, ge=0, lt=1, description=(
        "fraction of the images (of the whole set, per class) held out as the test split when the source has no "
        "test split of its own; no training or selection reads it; 0: no test split; ignored where the source has "
        "its own test split: CIFAR's test batch, an image folder's test/, Parquet test shards"))
    split_seed: int = Field(default=0, ge=0, le=2**32 - 1, description=(
        "the train/val/test split (and the synthetic images) depend only on this"))
    num_classes: int | None = Field(default=None, ge=2, description="synthetic only: number of classes; None: 10")
    samples_per_class: int = Field(default=100, ge=2, description="synthetic only: images per class")
    loader: Literal["auto", "memory", "streaming"] = Field(default="auto", description=(
        "memory: decoded tensors on each worker; streaming: Ray Data; auto: memory when it fits memory_budget_mb"))
    memory_budget_mb: int = Field(default=2048, ge=1, description=(
        "MiB; 'auto' picks the memory loader when decoded train+val fit this"))
    normalize_stats: Literal["dataset", "imagenet"] = Field(default="dataset", description=(
        "per-channel mean/std used to normalize: dataset = the train split's (or the source's known constants); "
        "imagenet = ImageNet's RGB mean/std for 3 channels, and the average of the three for 1 channel"))
    augment: AugmentSection = Field(default_factory=AugmentSection, description="train-time augmentation")

    @model_validator(mode="after")
    def _fractions_leave_a_train_split(self) -> DataSection:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(f"data.val_fraction ({self.val_fraction}) + data.test_fraction ({self.test_fraction}) "
                             "must be < 1: both are fractions of all images, and the rest is the train split")
        return self
