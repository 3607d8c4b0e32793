"""Local paths and URIs (file://, s3://, gs://, ...) through pyarrow.fs, with DataError on failure."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs

from cnnray.config.data import DataSection
from cnnray.errors import DataError


def open_location(path: str, key: str = "data.path") -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or a URI; a local path is made absolute."""
    if "://" not in path:
        return pafs.LocalFileSystem(), str(Path(path).expanduser().resolve())
    try:
        return pafs.FileSystem.from_uri(path)
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError or ValueError depending on the scheme
        raise DataError(f"{key}={path!r}: cannot open this URI: {e}") from None


def path_exists(path: str, key: str = "data.path") -> bool:
    """Whether a local path or URI names something that exists (file or directory)."""
    fs, inner = open_location(path, key)
    return fs.get_file_info(inner).type != pafs.FileType.NotFound


def join(base: str, name: str) -> str:
    """`base/name` inside a pyarrow filesystem."""
    return f"{base.rstrip('/')}/{name}"


def is_file(fs: pafs.FileSystem, path: str) -> bool:
    """Whether `path` is an existing file (errors such as denied access count as absent)."""
    try:
        return fs.get_file_info(path).type == pafs.FileType.File
    except Exception:
        return False


def read_bytes(fs: pafs.FileSystem, path: str, what: str) -> bytes:
    """The whole file; DataError naming `what` and the reason when it cannot be read."""
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except Exception as e:
        raise DataError(f"cannot read {what} at {path}: {e}") from None


def absolute_data_path(cfg: DataSection) -> DataSection:
    """The config with a local data.path made absolute, so Ray workers with another cwd find the same files."""
    if not cfg.path or "://" in cfg.path:
        return cfg
    return cfg.model_copy(update={"path": str(Path(cfg.path).expanduser().resolve())})
