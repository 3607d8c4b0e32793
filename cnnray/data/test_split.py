"""The held-out test split: `load_test_split` is the only function in cnnray that decodes test images.

Training and `cnnray tune` load sources through `load(cfg)`, which returns train and val only; the test split is
read here, by evaluation (`cnnray evaluate`, `cnnray promote`, the one look training takes after all selection
is done) and by `cnnray data prepare`, which copies it into test shards. Each source module's `load_test(cfg)`
is called from here alone (tests/test_data_test_split.py checks the source tree for other callers).

Test hook: with `CNNRAY_TEST_SPLIT_AUDIT=FILE` in the environment, every call appends one JSON line to FILE:
{"pid", "source", "n", "fingerprint", "stack"}, where stack is the 10 innermost frames that called
`load_test_split`, as "module:function", innermost first, joined by " <- ". It lets a test prove which code
(and which process) read test images; it is not meant for production use.
"""

from __future__ import annotations

import json
import os
import sys

from cnnray.config.data import DataSection
from cnnray.data.info import TestArrays
from cnnray.data.sources import get_source
from cnnray.errors import DataError

AUDIT_ENV = "CNNRAY_TEST_SPLIT_AUDIT"
AUDIT_FRAMES = 10
__all__ = ["AUDIT_ENV", "NoTestSplitError", "TestArrays", "load_test_split"]


class NoTestSplitError(DataError):
    """The configured data has no test split (data.test_fraction=0, or Parquet prepared without test shards)."""


def load_test_split(cfg: DataSection) -> TestArrays:
    """Decode the test split of `cfg`'s source at data.image_size/channels; NoTestSplitError when it has none."""
    arrays = get_source(cfg.source).load_test(cfg)
    if arrays is None:
        raise NoTestSplitError(_missing(cfg))
    _audit(cfg, arrays)
    return arrays


def _missing(cfg: DataSection) -> str:
    where = f"data.source={cfg.source}" + (f" (data.path={cfg.path})" if cfg.path else "")
    if cfg.source == "parquet":
        why = ("its manifest.json lists no test shards (prepared before test splits, or with "
               "data.test_fraction=0); prepare the data again with `cnnray data prepare` to write a test split")
    elif cfg.test_fraction == 0:
        why = "data.test_fraction=0; set data.test_fraction > 0 (e.g. 0.15) to hold out a test split"
    else:
        why = ("it holds no image (a class needs 3 images to hold one out beside train and val; "
               "or the source's own test split is empty)")
    return f"{where} has no test split: {why}"


def _audit(cfg: DataSection, arrays: TestArrays) -> None:
    path = os.environ.get(AUDIT_ENV)
    if not path:
        return
    frames: list[str] = []
    f = sys._getframe(2)  # 0: _audit, 1: load_test_split, 2: its caller
    while f is not None and len(frames) < AUDIT_FRAMES:
        frames.append(f"{f.f_globals.get('__name__', '?')}:{f.f_code.co_name}")
        f = f.f_back
    line = json.dumps({"pid": os.getpid(), "source": cfg.source, "n": int(arrays.y.numel()),
                       "fingerprint": arrays.fingerprint, "stack": " <- ".join(frames)}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one O_APPEND write per line: concurrent processes do not interleave
    finally:
        os.close(fd)
