"""`cnnray data prepare`: a source -> verified, deterministic Parquet shards plus manifest.json."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnray.config.data import DataSection
from cnnray.data.atomic import atomic_directory, check_output
from cnnray.data.codec import FORMATS, encode, try_decode_file
from cnnray.data.folder import header_channels, resolve_channels, scan_folder
from cnnray.data.manifest import FORMAT_VERSION, fingerprint_of, write_manifest
from cnnray.data.progress import progress_bar
from cnnray.data.shards import shard_name, write_shard
from cnnray.data.sources import get_source
from cnnray.data.sources.common import require_path
from cnnray.data.sources.imagefolder import splits3
from cnnray.data.test_split import NoTestSplitError, load_test_split
from cnnray.errors import DataError

ROWS_PER_SHARD = 10_000  # automatic shard count: enough shards for Ray Data to read in parallel
SPLITS = ("train", "val", "test")  # test: its own shards and fingerprint, the held-out split
NATIVE_SIZE = {"digits": 8, "cifar10": 32, "cifar100": 32}  # array sources keep this size unless --image-size
_THREADS = 4

Decoded = tuple[np.ndarray | None, str]


@dataclass(frozen=True)
class Item:
    """One image to write: its split, label, recorded path, shown path and how to decode it."""

    split: str
    label: int
    ref: str  # recorded in the 'path' column: relative to the source root, or split/index
    shown: str  # named in reports: the absolute file path, or ref
    read: Callable[[], Decoded]


@dataclass
class Plan:
    """What prepare will write: classes, channel count, items per split, images refused up front."""

    class_names: tuple[str, ...]
    channels: int
    items: dict[str, list[Item]]
    skipped: list[dict[str, str]] = field(default_factory=list)


def _folder_plan(cfg: DataSection, image_size: int | None, strict: bool) -> Plan:
    listing = scan_folder(require_path(cfg))
    train, val, test = splits3(listing, cfg)
    found: dict[Path, int] = {}
    skipped: list[dict[str, str]] = []
    for path, _ in [*train, *val, *test]:  # headers only: cheap, and settles the channel count before decoding
        try:
            found[path] = header_channels(path)
        except Exception as e:
            reason = "empty file (0 bytes)" if path.stat().st_size == 0 else f"{type(e).__name__}: {e}"
            if strict:
                raise DataError(f"cannot read image {path}: {reason} (--strict)") from None
            skipped.append({"path": str(path), "reason": reason})
    c = resolve_channels(found, cfg.channels, "--channels")

    def items(pairs: list[tuple[Path, int]], split: str) -> list[Item]:
        return [Item(split, y, p.relative_to(listing.root).as_posix(), str(p),
                     lambda p=p: try_decode_file(p, c, image_size)) for p, y in pairs if p in found]

    return Plan(listing.class_names, c, {"train": items(train, "train"), "val": items(val, "val"),
                                         "test": items(test, "test")}, skipped)


def _array_plan(cfg: DataSection, image_size: int | None) -> Plan:
    size = image_size or NATIVE_SIZE.get(cfg.source, cfg.image_size)
    sized = cfg.model_copy(update={"image_size": size})
    a = get_source(cfg.source).load(sized)
    try:  # through the one reader of test images (so the audit hook sees prepare copy them into test shards)
        t = load_test_split(sized)
        tx, ty = t.x, t.y
    except NoTestSplitError:  # data.test_fraction=0: train and val shards only, as before test splits
        tx, ty = a.val_x[:0], a.val_y[:0]
    out: dict[str, list[Item]] = {}
    for split, x, y in (("train", a.train_x, a.train_y), ("val", a.val_x, a.val_y), ("test", tx, ty)):
        xs, ys = x.numpy(), y.tolist()
        out[split] = [Item(split, ys[i], f"{split}/{i}", f"{split}/{i}", lambda i=i, xs=xs: (xs[i], ""))
                      for i in range(len(ys))]
    return Plan(a.class_names, int(a.train_x.shape[1]), out)


def _encode(item: Item, fmt: str) -> tuple[Item, bytes | None, np.ndarray | None, str]:
    arr, reason = item.read()
    return (item, None, None, reason) if arr is None else (item, encode(arr, fmt), arr, "")


class _Stats:
    """Exact integer pixel sums (order-independent, so deterministic) and stored-size statistics of train."""

    def __init__(self, channels: int) -> None:
        self.sum = np.zeros(channels, np.int64)
        self.sq = np.zeros(channels, np.int64)
        self.pixels = 0
        self.sizes: list[tuple[int, int]] = []

    def add(self, arr: np.ndarray) -> None:
        """Count one train image (val and test never shape the statistics training normalizes with)."""
        self.sizes.append((arr.shape[1], arr.shape[2]))
        flat = arr.reshape(arr.shape[0], -1).astype(np.int64)
        self.sum += flat.sum(1)
        self.sq += (flat * flat).sum(1)
        self.pixels += flat.shape[1]

    def summary(self) -> dict[str, Any]:
        n = max(1, self.pixels)
        mean = self.sum / n / 255.0
        std = np.sqrt(np.maximum(self.sq / n / 65025.0 - mean**2, 1e-12))
        hs, ws = [h for h, _ in self.sizes] or [0], [w for _, w in self.sizes] or [0]
        return {"mean": [round(float(v), 6) for v in mean], "std": [round(float(v), 6) for v in std],
                "image_size": {"min_h": min(hs), "max_h": max(hs), "mean_h": round(sum(hs) / len(hs), 3),
                               "min_w": min(ws), "max_w": max(ws), "mean_w": round(sum(ws) / len(ws), 3)}}


def prepare_dataset(cfg: DataSection, out: str | Path, *, shards: int | None = None, fmt: str = "png",
                    image_size: int | None = None, strict: bool = False, overwrite: bool = False,
                    progress: bool = True) -> dict[str, Any]:
    """Verify and write every image of `cfg`'s source to OUT; unreadable ones are skipped (or fatal with strict)."""
    start = time.perf_counter()
    if fmt not in FORMATS:
        raise DataError(f"unknown --format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    if cfg.source == "parquet":
        raise DataError("data.source=parquet is already prepared; prepare reads digits, synthetic, cifar10, "
                        "cifar100 or imagefolder")
    out = check_output(Path(out), overwrite)
    plan = _folder_plan(cfg, image_size, strict) if cfg.source == "imagefolder" else _array_plan(cfg, image_size)
    stats = _Stats(plan.channels)
    skipped = list(plan.skipped)
    records: list[dict[str, Any]] = []
    counts = {s: {n: 0 for n in plan.class_names} for s in SPLITS}
    total = sum(len(v) for v in plan.items.values())
    with atomic_directory(out, overwrite) as tmp, progress_bar(total, "prepare", progress) as advance, \
            ThreadPoolExecutor(_THREADS) as pool:
        for split in SPLITS:
            # A seeded shuffle mixes classes within each shard (streaming reads shards in order).
            items = plan.items[split]
            order = np.random.default_rng(cfg.split_seed).permutation(len(items))
            n = 0 if not items else max(1, min(shards or math.ceil(len(items) / ROWS_PER_SHARD), len(items)))
            for k, part in enumerate(np.array_split(order, n) if n else []):
                rows: dict[str, list[Any]] = {"images": [], "shapes": [], "labels": [], "paths": []}
                for item, data, arr, reason in pool.map(lambda i, items=items: _encode(items[i], fmt), part.tolist()):
                    advance(1)
                    if data is None or arr is None:
                        if strict:
                            raise DataError(f"cannot decode image {item.shown}: {reason} (--strict)")
                        skipped.append({"path": item.shown, "reason": reason})
                        continue
                    if split == "train":
                        stats.add(arr)
                    counts[split][plan.class_names[item.label]] += 1
                    for key, v in zip(rows, (data, list(arr.shape), item.label, item.ref)):
                        rows[key].append(v)
                rec = write_shard(tmp / shard_name(split, k, n), **rows)
                records.append({"split": split, **rec})
        fingerprint = fingerprint_of(records)
        write_manifest(tmp, {
            "format_version": FORMAT_VERSION, "source": cfg.source, "format": fmt, "channels": plan.channels,
            "class_names": list(plan.class_names), "num_classes": len(plan.class_names),
            # each split's own fingerprint (the combine of its shards' sha256s); no "test" entry without test shards
            "splits": {s: {"count": sum(c.values()), "per_class": c,
                           "fingerprint": fingerprint_of(r for r in records if r["split"] == s)}
                       for s, c in counts.items() if s != "test" or any(r["split"] == s for r in records)},
            **stats.summary(), "shards": records, "fingerprint": fingerprint,
            "skipped": [_relative(s, cfg) for s in skipped],
        })
    return {"out": str(out), "fingerprint": fingerprint, "source": cfg.source, "format": fmt,
            "channels": plan.channels, "num_classes": len(plan.class_names),
            "counts": {s: sum(c.values()) for s, c in counts.items()}, "shards": len(records),
            "skipped": skipped, "seconds": round(time.perf_counter() - start, 3)}


def _relative(entry: dict[str, str], cfg: DataSection) -> dict[str, str]:
    # The manifest records paths relative to the source root, so it does not depend on where the folder lives.
    root = str(Path(cfg.path).expanduser().resolve()) + "/" if cfg.path else ""
    return {k: v.replace(root, "") if root else v for k, v in entry.items()}
