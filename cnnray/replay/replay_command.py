"""`cnnray replay` end to end: a compressed version goes to `compressed.py` (its source's replay, then the same
compression); any other is planned (`plan.py`: every check before work) and trained and judged (`planned.py`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cnnray.replay.options import ReplayOptions
from cnnray.replay.plan import COMPRESS_TAG, plan_replay, resolve_version
from cnnray.replay.planned import train_and_judge


def run_replay(opts: ReplayOptions, on_line: Callable[[str], None] = print, *, verbose: bool = False) -> dict[str, Any]:
    """Replay the version `opts.model` names; the result object (verdict None when the replay did not finish)."""
    version = resolve_version(opts)
    if COMPRESS_TAG in version.tags:  # its source's replay, then the same compression command
        # deferred (heavy import): torch, PIL through cnnray.compress.job
        from cnnray.replay.compressed import replay_compressed

        return replay_compressed(opts, version, on_line, verbose)
    return train_and_judge(plan_replay(opts), opts, on_line, verbose=verbose).result
