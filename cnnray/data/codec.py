"""Image bytes <-> uint8 [C,H,W] arrays: PNG/JPEG through PIL, 'raw' as plain row-major bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from cnnray.errors import DataError

FORMATS = ("png", "jpeg", "raw")
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
JPEG_QUALITY = 95
_THREADS = 4  # PIL decodes with the GIL released; a few threads keep 2 cores busy


def mode_channels(mode: str) -> int:
    """Colour channels of a PIL mode once alpha is dropped: 1 for grey modes, 3 otherwise."""
    return 1 if mode in GRAY_MODES else 3


def pil_to_array(img: Image.Image, channels: int | None, size: int | None) -> np.ndarray:
    """Convert a PIL image to uint8 [C,H,W] with `channels` (None: its own) at size x size (None: as is)."""
    c = channels or mode_channels(img.mode)
    img = img.convert("L" if c == 1 else "RGB")
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)  # PIL widens the filter when shrinking
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))


def try_decode_file(path: str | Path, channels: int | None, size: int | None) -> tuple[np.ndarray | None, str]:
    """(uint8 [C,H,W], "") for a readable image, or (None, reason) when empty, truncated or corrupt."""
    try:
        with Image.open(path) as img:
            img.load()
            return pil_to_array(img, channels, size), ""
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        empty = Path(path).is_file() and Path(path).stat().st_size == 0
        return None, "empty file (0 bytes)" if empty else f"{type(e).__name__}: {e}"


def decode_file(path: str | Path, channels: int | None, size: int | None) -> np.ndarray:
    """Fully decode one image file; DataError naming the path when it is empty, truncated or corrupt."""
    arr, reason = try_decode_file(path, channels, size)
    if arr is None:
        raise DataError(f"cannot decode image {path}: {reason}")
    return arr


def encode(img: np.ndarray, fmt: str) -> bytes:
    """Encode uint8 [C,H,W] as png, jpeg or raw bytes (deterministic: fixed settings, no metadata)."""
    if fmt == "raw":
        return np.ascontiguousarray(img, dtype=np.uint8).tobytes()
    pil = Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
    buf = io.BytesIO()
    if fmt == "png":
        pil.save(buf, format="PNG", compress_level=6)
    elif fmt == "jpeg":
        pil.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    else:
        raise DataError(f"unknown image format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    return buf.getvalue()


def decode(buf: bytes, shape: Sequence[int], fmt: str, channels: int, size: int) -> np.ndarray:
    """Decode one stored image to uint8 [channels,size,size]."""
    c, h, w = (int(v) for v in shape)
    if fmt == "raw":
        arr = np.frombuffer(buf, dtype=np.uint8).reshape(c, h, w)
        if c == channels and h == w == size:
            return arr
        pil = Image.fromarray(arr[0] if c == 1 else arr.transpose(1, 2, 0))
    else:
        pil = Image.open(io.BytesIO(buf))
    return pil_to_array(pil, channels, size)


def decode_many(bufs: Sequence[bytes], shapes: Sequence[Sequence[int]], fmt: str, channels: int,
                size: int) -> np.ndarray:
    """Decode a batch to uint8 [B,channels,size,size]; raw images already at that shape take one copy."""
    n = len(bufs)
    if fmt == "raw" and all(tuple(int(v) for v in s) == (channels, size, size) for s in shapes):
        return np.frombuffer(b"".join(bufs), dtype=np.uint8).reshape(n, channels, size, size).copy()
    out = np.empty((n, channels, size, size), dtype=np.uint8)

    def one(i: int) -> None:
        out[i] = decode(bufs[i], shapes[i], fmt, channels, size)

    if n < 64:
        for i in range(n):
            one(i)
    else:
        with ThreadPoolExecutor(_THREADS) as pool:
            list(pool.map(one, range(n)))
    return out
