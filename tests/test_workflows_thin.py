"""Workflows stay thin (DESIGN.md): a workflow's `main` parses, builds an options object, validates it, calls one
library function and prints, in no more than 40 lines. Read from the source (no imports run)."""

from __future__ import annotations

import ast
from pathlib import Path

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"
MAX_MAIN_LINES = 40


def _main_lengths() -> dict[str, int]:
    """Lines of each workflow's top-level `def main` (decorators aside), by file name."""
    lengths = {}
    for path in sorted(WORKFLOWS.glob("*.py")):
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, ast.FunctionDef) and node.name == "main":
                lengths[path.name] = node.end_lineno - node.lineno + 1
    return lengths


def test_every_workflow_main_is_at_most_40_lines():
    offenders = {name: n for name, n in _main_lengths().items() if n > MAX_MAIN_LINES}
    assert not offenders, (f"workflow mains over {MAX_MAIN_LINES} lines (move the logic into the package that owns "
                           f"it): " + ", ".join(f"workflows/{k}: {v}" for k, v in sorted(offenders.items())))


def test_the_scan_sees_the_workflows():
    """Not vacuous: the commands' workflows are found, each with a `main`."""
    lengths = _main_lengths()
    assert {"train.py", "compress.py", "jobs.py", "submit.py", "evaluate.py", "predict.py"} <= set(lengths)
    assert all(n > 1 for n in lengths.values()), lengths
