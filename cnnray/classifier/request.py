"""What a prediction request may hold, checked against a model card before anything is predicted.

One set of rules for every server of a version: `cnnray serve` (the JSON body of POST /invocations) and the
pyfunc that `mlflow models serve` runs (the DataFrame or array MLflow parsed from the same body). A request
that breaks a rule raises `BadRequest` naming the problem and the accepted forms (HTTP 400), never a
prediction of something the card does not describe and never a 500.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cnnray.classifier.card import InputContract
from cnnray.classifier.preprocess import IMAGE_COLUMN, to_model_input
from cnnray.errors import DataError

FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")
PARAMS = {"top_k": "an integer >= 1", "return_logits": "true or false"}
MAX_IMAGES = 256  # per request: a batch of the dynamic batcher holds several requests
ACCEPTED = (
    "accepted bodies (JSON): {\"dataframe_split\": {\"columns\": [\"image\"], \"data\": [[BASE64_PNG_OR_JPEG], ...]}}, "
    "{\"dataframe_records\": [{\"image\": BASE64}, ...]}, {\"inputs\": [BASE64, ...]} or {\"inputs\": UINT8_ARRAY} "
    "with shape N,H,W / N,H,W,C (C in 1, 3, 4) / N,C,H,W (C in 1, 3) and integers 0-255; at most {max} images; "
    "optional \"params\": {{\"top_k\": INT, \"return_logits\": BOOL}}")


class BadRequest(DataError):
    """A request body the model does not take; the message names the problem and the accepted forms."""


def accepted(max_images: int = MAX_IMAGES) -> str:
    """The accepted forms, for error messages and `GET /version`."""
    return ACCEPTED.replace("{max}", str(max_images)).replace("{{", "{").replace("}}", "}")


def _bad(problem: str, max_images: int) -> BadRequest:
    return BadRequest(f"{problem}; {accepted(max_images)}")


@dataclass(frozen=True)
class Request:
    """A parsed body: the images (a list of encoded images, or one numeric array) and the prediction params."""

    images: Any
    top_k: int = 5
    return_logits: bool = False


def parse_body(body: Any, max_images: int = MAX_IMAGES) -> Request:
    """The JSON body of POST /invocations (as MLflow's scoring protocol defines it) -> a Request."""
    if not isinstance(body, dict):
        raise _bad(f"the body must be a JSON object, got {type(body).__name__}", max_images)
    keys = [k for k in body if k in FORMATS]
    extra = sorted(set(body) - set(FORMATS) - {"params"})
    if len(keys) != 1 or extra:
        what = f"unknown keys {extra}" if extra else f"{len(keys)} of {list(FORMATS)}"
        raise _bad(f"the body must hold exactly one of {list(FORMATS)} (and optionally params), got {what}",
                   max_images)
    top_k, logits = parse_params(body.get("params"), max_images)
    return Request(_images_of(keys[0], body[keys[0]], max_images), top_k, logits)


def parse_params(params: Any, max_images: int = MAX_IMAGES) -> tuple[int, bool]:
    """(top_k, return_logits) from a params object; BadRequest naming a wrong or unknown one."""
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise _bad(f"params must be an object, got {type(params).__name__}", max_images)
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise _bad(f"unknown params {unknown}; allowed: " + ", ".join(f"{k} ({v})" for k, v in PARAMS.items()),
                   max_images)
    top_k = params.get("top_k", 5)
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise _bad(f"params.top_k must be {PARAMS['top_k']}, got {top_k!r}", max_images)
    logits = params.get("return_logits", False)
    if not isinstance(logits, (bool, np.bool_)):
        raise _bad(f"params.return_logits must be {PARAMS['return_logits']}, got {logits!r}", max_images)
    return int(top_k), bool(logits)


def _images_of(key: str, value: Any, max_images: int) -> Any:
    if key == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise _bad("dataframe_split must be an object with \"columns\" and \"data\" (a list of rows)", max_images)
        columns = value.get("columns") or [IMAGE_COLUMN]
        col = columns.index(IMAGE_COLUMN) if IMAGE_COLUMN in columns else 0 if len(columns) == 1 else None
        if col is None:
            raise _bad(f"dataframe_split needs a column {IMAGE_COLUMN!r} (or exactly one column), got {columns}",
                       max_images)
        rows = value["data"]
        if not all(isinstance(r, list) and len(r) == len(columns) for r in rows):
            raise _bad(f"dataframe_split: every row of data must be a list of {len(columns)} values", max_images)
        return [r[col] for r in rows]
    if key == "dataframe_records":
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise _bad("dataframe_records must be a list of objects", max_images)
        if not all(IMAGE_COLUMN in r or len(r) == 1 for r in value):
            raise _bad(f"dataframe_records: every record needs the key {IMAGE_COLUMN!r}", max_images)
        return [r[IMAGE_COLUMN] if IMAGE_COLUMN in r else next(iter(r.values())) for r in value]
    # inputs / instances (TF serving): a list of encoded images, {"image": [...]}, or a numeric array
    if isinstance(value, dict):
        if set(value) != {IMAGE_COLUMN}:
            raise _bad(f"{key} as an object must hold only the key {IMAGE_COLUMN!r}, got {sorted(value)}", max_images)
        value = value[IMAGE_COLUMN]
    if not isinstance(value, list):
        raise _bad(f"{key} must be a list (of base64 images) or a nested list of integers", max_images)
    if value and all(isinstance(v, str) for v in value):
        return value
    if value and isinstance(value[0], dict):  # "instances": [{"image": ...}]
        return _images_of("dataframe_records", value, max_images)
    return _array(value, key, max_images)


def _array(value: list, where: str, max_images: int) -> np.ndarray:
    try:
        a = np.asarray(value)
    except ValueError:
        a = np.asarray([], dtype=object)
    if a.dtype == object or a.dtype.kind in "US":
        raise _bad(f"{where}: a numeric array must be rectangular (every image the same shape, numbers only); send "
                   "images of different sizes as base64 strings", max_images)
    return a


def checked_images(images: Any, contract: InputContract, max_images: int = MAX_IMAGES) -> torch.Tensor:
    """Images as parsed from a body (or by MLflow) -> uint8 [N,C,S,S] for `contract`; BadRequest if not a
    batch the card accepts (wrong rank or channels, non-uint8 values, empty, too many, not an image)."""
    if hasattr(images, "columns"):  # a DataFrame (MLflow's parse of dataframe_split/records)
        cols = list(images.columns)
        if IMAGE_COLUMN not in cols and len(cols) != 1:
            raise _bad(f"a DataFrame input needs a column {IMAGE_COLUMN!r} (or exactly one column), got {cols}",
                       max_images)
        images = list(images[IMAGE_COLUMN if IMAGE_COLUMN in cols else cols[0]])
    elif isinstance(images, dict):  # MLflow's parse of {"inputs": {"image": [...]}}
        if set(images) != {IMAGE_COLUMN}:
            raise _bad(f"an object input must hold only the key {IMAGE_COLUMN!r}, got {sorted(images)}", max_images)
        images = images[IMAGE_COLUMN]
        images = list(images) if isinstance(images, np.ndarray) and images.dtype.kind in "OUS" else images
    if isinstance(images, np.ndarray) and images.dtype.kind in "OUS":
        images = images.tolist()
    n = len(images) if isinstance(images, (Sequence, np.ndarray)) else None
    if n is None:
        raise _bad(f"expected a batch of images, got {type(images).__name__}", max_images)
    if n == 0:
        raise _bad("the batch is empty", max_images)
    if isinstance(images, np.ndarray):
        _check_array(images, max_images)  # before the count: a 2-D array is one image of the wrong rank
    if n > max_images:
        raise _bad(f"the batch holds {n} images, more than the {max_images} one request may hold", max_images)
    if not isinstance(images, np.ndarray):
        for i, item in enumerate(images):
            if not isinstance(item, (str, bytes, bytearray)):
                raise _bad(f"input {i}: expected a base64-encoded image, got {type(item).__name__}", max_images)
    try:
        return to_model_input(images, contract)
    except BadRequest:
        raise
    except DataError as e:
        raise _bad(str(e), max_images) from None


def _check_array(a: np.ndarray, max_images: int) -> None:
    if a.dtype.kind not in "iu":
        got = "true/false" if a.dtype.kind == "b" else "fractions" if a.dtype.kind == "f" else str(a.dtype)
        raise _bad(f"pixel values must be integers 0-255 (uint8), got {got}", max_images)
    if a.ndim not in (3, 4):
        raise _bad(f"an array input must be a batch of rank 3 (N,H,W) or 4 (N,H,W,C / N,C,H,W), got rank {a.ndim} "
                   f"(shape {tuple(a.shape)})", max_images)
    if a.ndim == 4 and a.shape[-1] not in (1, 3, 4) and a.shape[1] not in (1, 3):
        raise _bad(f"cannot take {a.shape[-1]} channels (shape {tuple(a.shape)}): N,H,W,C needs C in 1, 3, 4 and "
                   "N,C,H,W needs C in 1, 3", max_images)
    if min(a.shape[1:]) < 1:
        raise _bad(f"an image has no pixels (shape {tuple(a.shape)})", max_images)
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi > 255:
        raise _bad(f"pixel values must be integers 0-255 (uint8), found {lo}..{hi}", max_images)
