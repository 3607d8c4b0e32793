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
# "KIND@STEP": rank 1 fails at this global step. kill: SIGKILLed on every attempt (an out-of-memory kill);
# abort: a native crash (SIGABRT) on the first attempt only; config: a ConfigError on every attempt.
FAULT_AT_STEP = "CNNRAY_TEST_FAULT_AT_STEP"
FAULT_KINDS = ("kill", "abort", "config")


def read_test_hooks(environ: Mapping[str, str] | None = None) -> dict[str, int | str]:
    """The hooks set in the environment, as {variable: value}; a malformed value is a clear error."""
    environ = os.environ if environ is None else environ
    hooks: dict[str, int | str] = {}
    for name in (NAN_AT_STEP, FAIL_AT_EPOCH):
        text = environ.get(name, "").strip()
        if not text:
            continue
        if not text.isdigit():
            raise ValueError(f"{name}={text!r} must be a non-negative integer")
        hooks[name] = int(text)
    text = environ.get(FAULT_AT_STEP, "").strip()
    if text:
        kind, _, step = text.partition("@")
        if kind not in FAULT_KINDS or not step.isdigit():
            raise ValueError(f"{FAULT_AT_STEP}={text!r} must be KIND@STEP with KIND one of {', '.join(FAULT_KINDS)}")
        hooks[FAULT_AT_STEP] = text
    return hooks
