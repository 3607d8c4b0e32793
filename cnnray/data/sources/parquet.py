"""Parquet shards written by `cnnray data prepare`, from a local path or any URI pyarrow understands."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow.fs as pafs
import torch

from cnnray.config.data import DataSection
from cnnray.data.codec import decode_many
from cnnray.data.convert import convert_stats
from cnnray.data.info import DatasetInfo, SplitArrays, TestArrays
from cnnray.data.manifest import fingerprint_of, read_manifest, shard_paths
from cnnray.data.shards import read_shard
from cnnray.data.sources.common import check_labels, require_path
from cnnray.errors import DataError

_DECODE_CHUNK = 4096  # rows decoded at a time: bounds the Python lists one chunk holds


def _split(cfg: DataSection, split: str, manifest: dict[str, Any], fs: pafs.FileSystem, base: str,
           channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    k = len(manifest["class_names"])
    for path, sha in shard_paths(manifest, base, split):
        table = read_shard(fs, path, sha)
        labels = np.array(table.column("label").to_numpy(), dtype=np.int64)  # a writable copy
        check_labels(labels, k, f"parquet shard {path}")
        for i in range(0, table.num_rows, _DECODE_CHUNK):
            part = table.slice(i, _DECODE_CHUNK)
            xs.append(decode_many(part.column("image").to_pylist(), part.column("shape").to_pylist(),
                                  manifest["format"], channels, cfg.image_size))
        ys.append(labels)
    s = cfg.image_size
    x = np.concatenate(xs) if xs else np.zeros((0, channels, s, s), np.uint8)
    y = np.concatenate(ys) if ys else np.zeros(0, np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def load(cfg: DataSection) -> SplitArrays:
    """Read and verify (sha256) every train and val shard, decode at data.image_size and data.channels."""
    manifest, fs, base = read_manifest(require_path(cfg))
    c = cfg.channels or int(manifest["channels"])
    tx, ty = _split(cfg, "train", manifest, fs, base, c)
    vx, vy = _split(cfg, "val", manifest, fs, base, c)
    return SplitArrays(tx, ty, vx, vy, tuple(manifest["class_names"]))


def _test_fingerprint(manifest: dict[str, Any], path: str) -> str:
    """The combine of the test shards' sha256s ("" when there are none); checked against what prepare recorded."""
    test = [s for s in manifest["shards"] if s["split"] == "test"]
    if not sum(int(s["rows"]) for s in test):
        return ""  # prepared before test splits (or with data.test_fraction=0): format 1 without test shards
    fp = fingerprint_of(test)
    recorded = manifest["splits"].get("test", {}).get("fingerprint")
    if recorded is not None and recorded != fp:
        raise DataError(f"data.path={path}: manifest.json splits.test.fingerprint {recorded} does not match its "
                        f"test shards ({fp}); the manifest was edited: prepare the data again")
    return fp


def load_test(cfg: DataSection) -> TestArrays | None:
    """The `test` shards (sha256-verified like the others); None for a directory prepared without them.
    Called only by cnnray.data.test_split."""
    path = require_path(cfg)
    manifest, fs, base = read_manifest(path)
    fp = _test_fingerprint(manifest, path)
    if not fp:
        return None
    x, y = _split(cfg, "test", manifest, fs, base, cfg.channels or int(manifest["channels"]))
    return TestArrays(x, y, tuple(manifest["class_names"]), fp)


def describe(cfg: DataSection) -> DatasetInfo:
    """Everything from manifest.json; nothing else is read."""
    path = require_path(cfg)
    manifest, _, _ = read_manifest(path)
    c = cfg.channels or int(manifest["channels"])
    mean, std = convert_stats(tuple(manifest["mean"]), tuple(manifest["std"]), c)
    names = tuple(manifest["class_names"])
    n_train = int(manifest["splits"]["train"]["count"])
    s = cfg.image_size
    test_fp = _test_fingerprint(manifest, path)
    n_test = sum(int(r["rows"]) for r in manifest["shards"] if r["split"] == "test") if test_fp else 0
    return DatasetInfo(source=cfg.source, num_classes=len(names), class_names=names, channels=c, image_size=s,
                       num_train=n_train, num_val=int(manifest["splits"].get("val", {}).get("count", 0)),
                       fingerprint=manifest["fingerprint"], mean=mean, std=std, nbytes_train=n_train * c * s * s,
                       num_test=n_test, test_fingerprint=test_fp)
