"""A local image folder decoded with PIL; val split off train (seeded, stratified) when there is no val/."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from cnnray.config.data import DataSection
from cnnray.data.codec import decode_file
from cnnray.data.convert import channel_stats
from cnnray.data.folder import FolderListing, header_channels, relative, resolve_channels, scan_folder
from cnnray.data.info import DatasetInfo, SplitArrays
from cnnray.data.sources.common import require_path
from cnnray.data.split import stratified_split
from cnnray.errors import DataError

STATS_SAMPLE = 256  # train images decoded to estimate mean/std in describe (evenly spaced, deterministic)
_THREADS = 4


def splits(listing: FolderListing, cfg: DataSection) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """(train, val) file lists: the folder's own val/ or a stratified split of train/."""
    if listing.val is not None:
        return list(listing.train), list(listing.val)
    labels = np.array([c for _, c in listing.train])
    tr, va = stratified_split(labels, cfg.val_fraction, cfg.split_seed)
    return [listing.train[i] for i in tr], [listing.train[i] for i in va]


def decode_all(paths: list[Path], channels: int, size: int) -> torch.Tensor:
    """Decode files to uint8 [N,C,size,size] in a few threads; the first bad file raises DataError."""
    out = np.empty((len(paths), channels, size, size), dtype=np.uint8)

    def one(i: int) -> None:
        out[i] = decode_file(paths[i], channels, size)

    with ThreadPoolExecutor(_THREADS) as pool:
        list(pool.map(one, range(len(paths))))
    return torch.from_numpy(out)


def _scan(cfg: DataSection) -> tuple[FolderListing, int, str]:
    listing = scan_folder(require_path(cfg))
    items = [*listing.train, *(listing.val or ())]
    found: dict[Path, int] = {}
    h = hashlib.sha256(b"imagefolder\n")
    for (path, label), rel in zip(items, relative([p for p, _ in items], listing.root)):
        data = path.read_bytes()
        h.update(f"{rel}\n{label}\n{hashlib.sha256(data).hexdigest()}\n".encode())
        if cfg.channels is None:
            try:
                found[path] = header_channels(data)
            except Exception as e:
                raise DataError(f"cannot read image {path}: {'empty file (0 bytes)' if not data else e}") from None
    return listing, resolve_channels(found, cfg.channels, "data.channels"), h.hexdigest()


def load(cfg: DataSection) -> SplitArrays:
    """Decode every image at data.image_size; mixed grey/colour needs data.channels."""
    listing, c, _ = _scan(cfg)
    train, val = splits(listing, cfg)
    tx = decode_all([p for p, _ in train], c, cfg.image_size)
    vx = decode_all([p for p, _ in val], c, cfg.image_size)
    ty = torch.tensor([y for _, y in train], dtype=torch.int64)
    vy = torch.tensor([y for _, y in val], dtype=torch.int64)
    return SplitArrays(tx, ty, vx, vy, listing.class_names)


def describe(cfg: DataSection) -> DatasetInfo:
    """Hashes every file and reads its header; mean/std come from a sample of the train images."""
    listing, c, fp = _scan(cfg)
    train, val = splits(listing, cfg)
    step = max(1, len(train) // STATS_SAMPLE)
    mean, std = channel_stats(decode_all([p for p, _ in train[::step]], c, cfg.image_size))
    s = cfg.image_size
    return DatasetInfo(source=cfg.source, num_classes=len(listing.class_names), class_names=listing.class_names,
                       channels=c, image_size=s, num_train=len(train), num_val=len(val), fingerprint=fp,
                       mean=mean, std=std, nbytes_train=len(train) * c * s * s)
