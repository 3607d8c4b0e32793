"""Images in any accepted form -> uint8 [N,C,S,S] exactly as the training data pipeline produced them.

Accepted: numpy/torch uint8 batches N,H,W,C (C = 1, 3 or 4; alpha dropped), N,H,W (grey) or N,C,H,W; a list
of arrays of any sizes; encoded PNG/JPEG/... bytes or base64 strings (a list, a Series, or a DataFrame
column `image` or its only column). Resizing and channel conversion follow the card's `resize`: PIL's
bilinear after a PIL mode conversion (imagefolder/parquet training), or torch's antialiased bilinear and
ITU-R 601 luma (array sources), so a served image gets the pixels training saw.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cnnray.data.codec import pil_to_array
from cnnray.data.convert import resize_uint8, to_channels
from cnnray.errors import DataError
from cnnray.classifier.card import InputContract

IMAGE_COLUMN = "image"


def _as_uint8(a: np.ndarray, where: str) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise DataError(f"{where}: pixel values must be numbers 0-255, got dtype {a.dtype}")
    if a.size and (float(a.min()) < 0 or float(a.max()) > 255):
        raise DataError(f"{where}: pixel values must lie in 0-255 (uint8 images), found {a.min()}..{a.max()}")
    return np.rint(a).astype(np.uint8) if np.issubdtype(a.dtype, np.floating) else a.astype(np.uint8)


def _chw(img: np.ndarray, where: str) -> np.ndarray:
    """One image H,W / H,W,C / C,H,W -> uint8 C,H,W with C in (1, 3)."""
    if img.ndim == 2:
        return img[None]
    if img.ndim != 3:
        raise DataError(f"{where}: an image must have 2 or 3 dimensions, got shape {tuple(img.shape)}")
    if img.shape[-1] in (1, 3, 4):
        img = img[..., :3] if img.shape[-1] == 4 else img
        return np.ascontiguousarray(img.transpose(2, 0, 1))
    if img.shape[0] in (1, 3):
        return img
    raise DataError(f"{where}: cannot tell the channel axis of shape {tuple(img.shape)}; "
                    "use H,W,C with C in 1, 3, 4 (or C,H,W with C in 1, 3)")


def _tensor(a: np.ndarray) -> torch.Tensor:
    """A tensor over `a` (copied when numpy marks it read-only, e.g. views of PIL images)."""
    return torch.from_numpy(a if a.flags.writeable and a.flags.c_contiguous else np.array(a, order="C"))


def _fit_chw(chw: np.ndarray, c: InputContract) -> np.ndarray:
    """uint8 C,H,W at any size and 1/3 channels -> contract size and channels."""
    s = c.image_size
    if chw.shape == (c.channels, s, s):
        return chw
    if c.resize == "tensor":
        t = resize_uint8(_tensor(chw)[None], s)
        return to_channels(t, c.channels)[0].numpy()
    pil = Image.fromarray(chw[0] if chw.shape[0] == 1 else chw.transpose(1, 2, 0))
    return pil_to_array(pil, c.channels, s)


def _decode(buf: bytes, c: InputContract, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(buf)) as img:
            img.load()
            if c.resize == "tensor":
                return _fit_chw(pil_to_array(img, None, None), c)  # native size, then the tensor path
            return pil_to_array(img, c.channels, c.image_size)
    except UnidentifiedImageError:
        raise DataError(f"{where} is not an image PIL can read ({len(buf)} bytes of an unknown format)") from None
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        raise DataError(f"{where} is not a readable image ({type(e).__name__}: {e})") from None


def _bytes_of(value: Any, where: str) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise DataError(f"{where}: a string must be a base64-encoded image") from None
    raise DataError(f"{where}: expected image bytes, a base64 string or an array, got {type(value).__name__}")


def _column(frame: Any) -> Sequence[Any]:
    cols = list(frame.columns)
    if IMAGE_COLUMN in cols:
        return list(frame[IMAGE_COLUMN])
    if len(cols) == 1:
        return list(frame[cols[0]])
    raise DataError(f"a DataFrame input needs a column '{IMAGE_COLUMN}' (or exactly one column); got {cols}")


def _one(item: Any, c: InputContract, where: str) -> np.ndarray:
    if isinstance(item, (np.ndarray, torch.Tensor)):
        arr = item.numpy() if isinstance(item, torch.Tensor) else item
        if arr.dtype == object:  # a 0-d object array wrapping bytes/str (how some frames hold them)
            return _one(arr.item(), c, where)
        return _fit_chw(_chw(_as_uint8(arr, where), where), c)
    if isinstance(item, list):
        return _one(np.asarray(item), c, where)
    return _decode(_bytes_of(item, where), c, where)


def _batch_array(a: np.ndarray, c: InputContract) -> np.ndarray:
    """A dense N,H,W / N,H,W,C / N,C,H,W batch -> uint8 N,C,S,S (whole-batch ops where the path allows)."""
    a = _as_uint8(a, "input batch")
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4 and a.shape[-1] in (1, 3, 4):
        a = np.ascontiguousarray(a[..., :3].transpose(0, 3, 1, 2))
    elif not (a.ndim == 4 and a.shape[1] in (1, 3)):
        raise DataError(f"input batch: expected N,H,W or N,H,W,C (C in 1, 3, 4) or N,C,H,W, "
                        f"got shape {tuple(a.shape)}")
    s = c.image_size
    if a.shape[1:] == (c.channels, s, s):
        return a
    if c.resize == "tensor":
        return to_channels(resize_uint8(_tensor(a), s), c.channels).numpy()
    return np.stack([_fit_chw(img, c) for img in a])


def to_model_input(images: Any, c: InputContract) -> torch.Tensor:
    """Any accepted image input -> uint8 tensor [N, channels, image_size, image_size] (DataError if not)."""
    if hasattr(images, "columns"):  # pandas DataFrame
        images = _column(images)
    elif hasattr(images, "to_list") and not isinstance(images, (np.ndarray, torch.Tensor)):  # pandas Series
        images = images.to_list()
    if isinstance(images, torch.Tensor):
        images = images.cpu().numpy()
    if isinstance(images, np.ndarray) and images.dtype != object:
        if images.ndim == 2:
            images = images[None]
        return _tensor(_batch_array(images, c))
    if isinstance(images, (bytes, str)):
        images = [images]
    items = list(images)
    if not items:
        s = c.image_size
        return torch.zeros((0, c.channels, s, s), dtype=torch.uint8)
    return torch.from_numpy(np.stack([_one(x, c, f"input {i}") for i, x in enumerate(items)]))
