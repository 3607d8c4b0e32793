"""The `data` section: where images come from, how they are loaded and augmented."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class AugmentConfig(_Strict):
    """Batch-level augmentations, applied on the training device; None means the source's default."""

    hflip: bool | None = None  # None: on for natural images (cifar, imagefolder, parquet, synthetic), off for digits
    crop_padding: int | None = Field(default=None, ge=0)  # random crop with this padding; None: image_size/8 (digits /16)
    rotation: float = Field(default=0.0, ge=0, le=180)  # max degrees
    translate: float = Field(default=0.0, ge=0, lt=1)  # max fraction of the image size
    scale_min: float = Field(default=1.0, gt=0)
    scale_max: float = Field(default=1.0, gt=0)
    brightness: float = Field(default=0.0, ge=0, le=1)
    contrast: float = Field(default=0.0, ge=0, le=1)
    saturation: float = Field(default=0.0, ge=0, le=1)
    erasing_prob: float = Field(default=0.0, ge=0, le=1)
    mixup_alpha: float = Field(default=0.0, ge=0)
    cutmix_alpha: float = Field(default=0.0, ge=0)
    mix_prob: float = Field(default=1.0, ge=0, le=1)  # probability a batch is mixed at all
    normalize: bool = True  # by the train split's per-channel mean/std (or the source's known constants)

    @model_validator(mode="after")
    def _scale_order(self) -> AugmentConfig:
        if self.scale_min > self.scale_max:
            raise ValueError(f"scale_min ({self.scale_min}) must be <= scale_max ({self.scale_max})")
        return self


class DataConfig(_Strict):
    """Data source, split, loader and augmentation."""

    source: Literal["digits", "cifar10", "cifar100", "imagefolder", "parquet", "synthetic"] = "digits"
    path: str | None = None  # directory or URI; required by cifar*, imagefolder, parquet
    image_size: int = Field(default=32, ge=4, le=1024)  # every loader yields image_size x image_size
    channels: Literal[1, 3] | None = None  # None: the source's own (digits 1, synthetic 3); 1 or 3 converts
    val_fraction: float = Field(default=0.2, gt=0, lt=1)  # when the source has no val split
    split_seed: int = Field(default=0, ge=0, le=2**32 - 1)  # the train/val split (and the synthetic images) depend only on this
    num_classes: int | None = Field(default=None, ge=2)  # synthetic only; None: 10
    samples_per_class: int = Field(default=100, ge=2)  # synthetic only
    loader: Literal["auto", "memory", "streaming"] = "auto"
    memory_budget_mb: int = Field(default=2048, ge=1)  # 'auto' picks memory when decoded train+val fit this
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
