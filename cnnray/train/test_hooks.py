"""Fault injection for cnnray's own tests: read from environment variables, never from the user's config.

The driver reads these once and hands them to the workers inside the loop config (a Ray worker process
does not see variables set in the driver after the cluster started), so they never show up in
`cnnray config --keys`, in MLflow params or in the config hash.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

NAN_AT_STEP = "CNNRAY_TEST_NAN_AT_STEP"  # make the loss NaN at this global (optimizer) step
FAIL_AT_EPOCH = "CNNRAY_TEST_FAIL_AT_EPOCH"  # rank 1 (or 0 alone) dies once, half-way through this epoch


def read_test_hooks(environ: Mapping[str, str] | None = None) -> dict[str, int]:
    """The hooks set in the environment, as {variable: value}; a malformed value is a clear error."""
    environ = os.environ if environ is None else environ
    hooks = {}
    for name in (NAN_AT_STEP, FAIL_AT_EPOCH):
        text = environ.get(name, "").strip()
        if not text:
            continue
        if not text.isdigit():
            raise ValueError(f"{name}={text!r} must be a non-negative integer")
        hooks[name] = int(text)
    return hooks
