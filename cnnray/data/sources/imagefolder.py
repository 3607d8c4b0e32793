"""A local image folder decoded with PIL; val and test split off train (seeded, stratified) when there is no val/
or test/ folder."""

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
from cnnray.data.info import DatasetInfo, SplitArrays, TestArrays
from cnnray.data.sources.common import require_path
from cnnray.data.split import stratified_split3
from cnnray.errors import DataError

STATS_SAMPLE = 256  # train images decoded to estimate mean/std in describe (evenly spaced, deterministic)
_THREADS = 4


Items = list[tuple[Path, int]]


def splits3(listing: FolderListing, cfg: DataSection) -> tuple[Items, Items, Items]:
    """(train, val, test) file lists: the folder's own val/ and test/, or stratified splits of train/."""
    train = list(listing.train)
    labels = np.array([c for _, c in train])
    val_frac = 0.0 if listing.val is not None else cfg.val_fraction
    test_frac = 0.0 if listing.test is not None else cfg.test_fraction
    tr, va, te = stratified_split3(labels, val_frac, test_frac, cfg.split_seed)
    val = list(listing.val) if listing.val is not None else [train[i] for i in va]
    test = list(listing.test) if listing.test is not None else [train[i] for i in te]
    return [train[i] for i in tr], val, test


def splits(listing: FolderListing, cfg: DataSection) -> tuple[Items, Items]:
    """(train, val) file lists (what training reads)."""
    train, val, _ = splits3(listing, cfg)
    return train, val


def decode_all(paths: list[Path], channels: int, size: int) -> torch.Tensor:
    """Decode files to uint8 [N,C,size,size] in a few threads; the first bad file raises DataError."""
    out = np.empty((len(paths), channels, size, size), dtype=np.uint8)

    def one(i: int) -> None:
        out[i] = decode_file(paths[i], channels, size)

    with ThreadPoolExecutor(_THREADS) as pool:
        list(pool.map(one, range(len(paths))))
    return torch.from_numpy(out)


def _scan(cfg: DataSection) -> tuple[FolderListing, int, str, dict[Path, str]]:
    listing = scan_folder(require_path(cfg))
    items = [*listing.train, *(listing.val or ()), *(listing.test or ())]
    found: dict[Path, int] = {}
    h = hashlib.sha256(b"imagefolder\n")
    file_hashes: dict[Path, str] = {}
    for (path, label), rel in zip(items, relative([p for p, _ in items], listing.root)):
        data = path.read_bytes()
        file_hashes[path] = hashlib.sha256(data).hexdigest()
        h.update(f"{rel}\n{label}\n{file_hashes[path]}\n".encode())
        try:  # every header, also with data.channels set: a bad image in the test split is named now too
            found[path] = header_channels(data)
        except Exception as e:
            raise DataError(f"cannot read image {path}: {'empty file (0 bytes)' if not data else e}") from None
    return listing, resolve_channels(found, cfg.channels, "data.channels"), h.hexdigest(), file_hashes


def _test_fingerprint(listing: FolderListing, test: Items, file_hashes: dict[Path, str]) -> str:
    """sha256 over (relative path, label, file sha256) of the test images; "" when there are none."""
    if not test:
        return ""
    h = hashlib.sha256(b"imagefolder-test\n")
    for (path, label), rel in zip(test, relative([p for p, _ in test], listing.root)):
        h.update(f"{rel}\n{label}\n{file_hashes[path]}\n".encode())
    return h.hexdigest()


def load(cfg: DataSection) -> SplitArrays:
    """Decode every train and val image at data.image_size; mixed grey/colour needs data.channels."""
    listing, c, _, _ = _scan(cfg)
    train, val = splits(listing, cfg)
    tx = decode_all([p for p, _ in train], c, cfg.image_size)
    vx = decode_all([p for p, _ in val], c, cfg.image_size)
    ty = torch.tensor([y for _, y in train], dtype=torch.int64)
    vy = torch.tensor([y for _, y in val], dtype=torch.int64)
    return SplitArrays(tx, ty, vx, vy, listing.class_names)


def load_test(cfg: DataSection) -> TestArrays | None:
    """The held-out split (test/ or split off train/); read only through cnnray.data.test_split."""
    listing, c, _, hashes = _scan(cfg)
    test = splits3(listing, cfg)[2]
    if not test:
        return None
    x = decode_all([p for p, _ in test], c, cfg.image_size)
    y = torch.tensor([label for _, label in test], dtype=torch.int64)
    return TestArrays(x, y, listing.class_names, _test_fingerprint(listing, test, hashes))


def describe(cfg: DataSection) -> DatasetInfo:
    """Hashes every file and reads its header; mean/std come from a sample of the train images."""
    listing, c, fp, hashes = _scan(cfg)
    train, val, test = splits3(listing, cfg)
    step = max(1, len(train) // STATS_SAMPLE)
    mean, std = channel_stats(decode_all([p for p, _ in train[::step]], c, cfg.image_size))
    s = cfg.image_size
    return DatasetInfo(source=cfg.source, num_classes=len(listing.class_names), class_names=listing.class_names,
                       channels=c, image_size=s, num_train=len(train), num_val=len(val), fingerprint=fp,
                       mean=mean, std=std, nbytes_train=len(train) * c * s * s, num_test=len(test),
                       test_fingerprint=_test_fingerprint(listing, test, hashes))
