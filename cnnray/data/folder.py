"""Scan an image folder (root/train/<class>/*, optional root/val/<class>/* and root/test/<class>/*) and check its
layout and modes."""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from cnnray.data.codec import IMAGE_EXTENSIONS, mode_channels
from cnnray.errors import DataError


@dataclass(frozen=True)
class FolderListing:
    """Image files per split with class indices; `val` / `test` are None when the folder has no such folder."""

    root: Path
    class_names: tuple[str, ...]
    train: tuple[tuple[Path, int], ...]
    val: tuple[tuple[Path, int], ...] | None
    test: tuple[tuple[Path, int], ...] | None = None


def _class_dirs(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS)


def _split(d: Path, classes: dict[str, int], split: str) -> tuple[tuple[Path, int], ...]:
    items: list[tuple[Path, int]] = []
    for cdir in _class_dirs(d):
        if cdir.name not in classes:
            raise DataError(f"{split} class '{cdir.name}' ({cdir}) has no directory in the train split; "
                            f"train classes: {', '.join(classes)}")
        files = _images(cdir)
        if not files:
            raise DataError(f"class directory {cdir} is empty: no files ending in "
                            f"{', '.join(sorted(IMAGE_EXTENSIONS))}")
        items += [(f, classes[cdir.name]) for f in files]
    return tuple(items)


def scan_folder(path: str | Path, key: str = "data.path") -> FolderListing:
    """List root/train/<class>/* (or root/<class>/* when there is no train/), root/val/<class>/* and
    root/test/<class>/*."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"{key} {root} " + ("is not a directory" if root.exists() else "does not exist"))
    train_dir, val_dir, test_dir = root / "train", root / "val", root / "test"
    if not train_dir.is_dir():
        for d in (val_dir, test_dir):
            if d.is_dir():
                raise DataError(f"{root} has {d.name}/ but no train/ directory: expected {root}/train/<class>/<image>")
        train_dir = root  # a flat folder of class directories is the train split
    names = [d.name for d in _class_dirs(train_dir)]
    if not names:
        raise DataError(f"{train_dir} holds no class directories: expected {train_dir}/<class>/<image>")
    classes = {n: i for i, n in enumerate(names)}
    train = _split(train_dir, classes, "train")
    val = _split(val_dir, classes, "val") if val_dir.is_dir() and train_dir != root else None
    test = _split(test_dir, classes, "test") if test_dir.is_dir() and train_dir != root else None
    return FolderListing(root, tuple(names), train, val, test)


def header_channels(data: bytes | Path) -> int:
    """Channels of one image from its header (1 grey, 3 colour); raises on unreadable headers."""
    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
        return mode_channels(img.mode)


def resolve_channels(found: dict[Path, int], requested: int | None, key: str) -> int:
    """The requested channel count, or the images' own when they agree; mixed modes are refused."""
    if requested is not None:
        return requested
    kinds = sorted(set(found.values()))
    if len(kinds) > 1:
        examples = {c: next(str(p) for p, v in found.items() if v == c) for c in kinds}
        counts = {c: sum(1 for v in found.values() if v == c) for c in kinds}
        raise DataError(f"images have mixed channel counts: {counts[1]} grey (e.g. {examples[1]}) and {counts[3]} "
                        f"colour (e.g. {examples[3]}); set {key}=1 or {key}=3 to convert them")
    return kinds[0] if kinds else 3


def relative(paths: Iterable[Path], root: Path) -> list[str]:
    """Paths relative to the folder root, '/'-separated (what fingerprints and manifests record)."""
    return [p.relative_to(root).as_posix() for p in paths]
