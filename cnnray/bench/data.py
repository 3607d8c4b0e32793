"""Data loading throughput: MemoryLoader and Ray Data streaming against torchvision ImageFolder + DataLoader."""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from cnnray.cluster.ray_session import ensure_ray, requiet_ray_data
from cnnray.config.data import AugmentSection, DataSection
from cnnray.threads import torch_threads

PADDING = 4  # the crop padding used by all three pipelines
SHARDS = 4  # parquet shards: Ray Data reads and decodes them in parallel tasks
WARMUP_EPOCHS = 1  # untimed epochs before the timed ones, in every pipeline
# Torch threads of the process that runs the batched transforms. Like-for-like with the baseline, whose
# DataLoader workers run torch single-threaded; intra-op threads on 128-image batches mostly add wake-up
# cost (tens of ms per op when the cores are busy).
TRANSFORM_THREADS = 1


def _epoch_rates(make_batches: Any, epochs: int) -> list[float]:
    """Images/s of each epoch after one untimed warm-up (worker start-up is one-off, not throughput)."""
    rates = []
    for epoch in range(-WARMUP_EPOCHS, epochs):
        batches: Iterable = make_batches(epoch)
        start, n = time.perf_counter(), 0
        for x, _ in batches:
            n += x.shape[0]
        if epoch >= 0:
            rates.append(n / max(time.perf_counter() - start, 1e-9))
    return rates


def _baseline(root: Path, size: int, batch_size: int, mean: tuple, std: tuple, epochs: int) -> list[float]:
    # deferred (heavy import): torchvision
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.RandomCrop(size, padding=PADDING), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize(mean, std)])
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(str(root), transform=tf), batch_size=batch_size,
                                         shuffle=True, num_workers=2, drop_last=True, persistent_workers=True)
    return _epoch_rates(lambda _: loader, epochs)


def run_data_bench(num_images: int = 50000, image_size: int = 32, batch_size: int = 128, epochs: int = 2,
                   shard_formats: tuple[str, ...] = ("raw", "png")) -> dict[str, Any]:
    """Median images/s over epochs of each pipeline on one generated PNG folder, and ratios to the baseline."""
    # deferred (heavy import): pyarrow, PIL
    from cnnray.data import (
        MemoryLoader,
        StreamingLoader,
        build_streaming_datasets,
        build_transforms,
        describe_dataset,
        load_arrays,
    )
    from cnnray.data.fake import write_image_folder
    from cnnray.data.prepare import prepare_dataset

    aug = AugmentSection(hflip=True, crop_padding=PADDING)
    with tempfile.TemporaryDirectory(prefix="cnnray-bench-") as tmp:
        # val_per_class=1: a val/ folder exists, so the train split is exactly root/train, what the baseline reads.
        root = write_image_folder(Path(tmp) / "folder", num_classes=10, per_class=math.ceil(num_images / 10),
                                  size=image_size, val_per_class=1)
        cfg = DataSection(source="imagefolder", path=str(root), image_size=image_size, augment=aug,
                          test_fraction=0)  # the whole of root/train is the train split, as torchvision reads it
        start = time.perf_counter()
        info = describe_dataset(cfg)
        tx, ty, _, _ = load_arrays(cfg)
        load_s = time.perf_counter() - start
        train_tf, _ = build_transforms(cfg, info)
        memory = MemoryLoader(tx, ty, batch_size, transform=train_tf)

        def memory_epoch(epoch: int) -> MemoryLoader:
            memory.set_epoch(epoch)
            return memory

        with torch_threads(TRANSFORM_THREADS):
            mem_rates = _epoch_rates(memory_epoch, epochs)

        started = ensure_ray()
        # deferred (heavy import): ray
        import ray.data


        requiet_ray_data()

        ctx = ray.data.DataContext.get_current()
        bars = ctx.enable_progress_bars
        ctx.enable_progress_bars = False  # off a terminal Ray Data logs every execution's progress
        stream_rates: dict[str, list[float]] = {}
        prepare_s: dict[str, float] = {}
        try:
            for fmt in shard_formats:
                start = time.perf_counter()
                prepare_dataset(cfg, Path(tmp) / fmt, shards=SHARDS, fmt=fmt, progress=False)
                prepare_s[fmt] = round(time.perf_counter() - start, 3)
                pcfg = DataSection(source="parquet", path=str(Path(tmp) / fmt), image_size=image_size, augment=aug)
                ds = build_streaming_datasets(pcfg, describe_dataset(pcfg))["train"]
                with torch_threads(TRANSFORM_THREADS):
                    stream_rates[fmt] = _epoch_rates(
                        lambda e: StreamingLoader(ds, batch_size, device="cpu", transform=train_tf, drop_last=True,
                                                  seed=e), epochs)
        finally:
            ctx.enable_progress_bars = bars
            if started:
                # deferred (heavy import): ray
                import ray

                ray.shutdown()
        base_rates = _baseline(root / "train", image_size, batch_size, info.mean, info.std, epochs)

    mem, base = statistics.median(mem_rates), statistics.median(base_rates)
    stream = {fmt: statistics.median(r) for fmt, r in stream_rates.items()}
    head = shard_formats[0]  # the headline streaming figure: the first (fastest-decoding) shard format
    return {"num_images": int(tx.shape[0]), "image_size": image_size, "batch_size": batch_size, "epochs": epochs,
            "warmup_epochs": WARMUP_EPOCHS, "transform_threads": TRANSFORM_THREADS,
            "memory_load_s": round(load_s, 3), "prepare_s": prepare_s, "streaming_format": head,
            "memory_imgs_per_s": round(mem, 1), "streaming_imgs_per_s": round(stream[head], 1),
            "baseline_imgs_per_s": round(base, 1), "memory_vs_baseline": round(mem / base, 2),
            "streaming_vs_baseline": round(stream[head] / base, 2),
            "streaming_by_format": {fmt: {"imgs_per_s": round(v, 1), "vs_baseline": round(v / base, 2)}
                                    for fmt, v in stream.items()},
            "epoch_imgs_per_s": {"memory": [round(r, 1) for r in mem_rates],
                                 **{f"streaming_{fmt}": [round(r, 1) for r in rs] for fmt, rs in stream_rates.items()},
                                 "baseline": [round(r, 1) for r in base_rates]}}


def format_data_bench(result: dict[str, Any]) -> str:
    """A small table of the result of run_data_bench."""
    r = result
    lines = [f"data loading: {r['num_images']} images {r['image_size']}px, batch {r['batch_size']}, "
             f"median of {r['epochs']} epochs after {r['warmup_epochs']} warm-up (crop+flip+normalize)",
             f"  {'pipeline':<40} {'images/s':>10} {'vs baseline':>12}",
             f"  {'memory (MemoryLoader, batched transforms)':<40} {r['memory_imgs_per_s']:>10.0f} "
             f"{r['memory_vs_baseline']:>11.2f}x",
             *[f"  {'streaming (Ray Data, ' + fmt + ' parquet shards)':<40} {v['imgs_per_s']:>10.0f} "
               f"{v['vs_baseline']:>11.2f}x" for fmt, v in r["streaming_by_format"].items()],
             f"  {'baseline (ImageFolder+DataLoader x2)':<40} {r['baseline_imgs_per_s']:>10.0f} {1.0:>11.2f}x",
             f"  one-off: decode into memory {r['memory_load_s']:.2f} s, prepare parquet "
             + ", ".join(f"{fmt} {s:.2f} s" for fmt, s in r["prepare_s"].items())]
    return "\n".join(lines)
