"""Ray Data streaming yields the same samples as the in-memory loader (real local Ray)."""

from __future__ import annotations

import torch

from cnnray.config.data import DataSection
from cnnray.data import (MemoryLoader, StreamingLoader, build_streaming_datasets, build_transforms, describe_dataset,
                         load_arrays)
from cnnray.data.fake import write_image_folder
from cnnray.data.prepare import prepare_dataset


def _samples(batches) -> list[tuple[int, bytes]]:
    return sorted((int(label), bytes(img.numpy())) for x, y in batches for img, label in zip(x, y))


def test_streaming_matches_memory_for_parquet(ray_local, tmp_path):
    src = write_image_folder(tmp_path / "src", num_classes=3, per_class=10, size=12, val_per_class=3)
    prepare_dataset(DataSection(source="imagefolder", path=str(src)), tmp_path / "pq", shards=3, progress=False)
    cfg = DataSection(source="parquet", path=str(tmp_path / "pq"), image_size=8)
    info = describe_dataset(cfg)
    datasets = build_streaming_datasets(cfg, info)
    tx, ty, vx, vy = load_arrays(cfg)
    for split, x, y in (("train", tx, ty), ("val", vx, vy)):
        stream = StreamingLoader(datasets[split], 7, device=torch.device("cpu"), transform=None, drop_last=False)
        stream.set_epoch(0)
        memory = MemoryLoader(x, y, 7, shuffle=split == "train", drop_last=False)
        got = _samples(stream)
        assert len(got) == len(x) and got == _samples(memory)
    train_tf, _ = build_transforms(cfg, info)
    xb, yb = next(iter(StreamingLoader(datasets["train"], 8, device="cpu", transform=train_tf, drop_last=True)))
    assert xb.shape == (8, 3, 8, 8) and xb.dtype == torch.float32 and yb.dtype == torch.int64


def test_streaming_from_arrays_source(ray_local):
    cfg = DataSection(source="synthetic", num_classes=3, samples_per_class=10, image_size=8, loader="streaming")
    info = describe_dataset(cfg)
    ds = build_streaming_datasets(cfg, info)
    tx, ty, _, _ = load_arrays(cfg)
    got = _samples(StreamingLoader(ds["train"], 5, device="cpu", transform=None, drop_last=False))
    assert got == _samples([(tx, ty)])
