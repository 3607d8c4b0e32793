"""What `cnnray promote` and `cnnray rollback` print: the decision in a few lines, and with --json the record."""

from __future__ import annotations

from typing import Any

from cnnray.console import EXIT_OK, print_json
from cnnray.serve.tables import decision_summary


def print_decision(record: dict[str, Any], as_json: bool = False) -> int:
    """Print the decision record's summary (and the record as the JSON line with `as_json`); the exit code."""
    print(decision_summary(record), flush=True)
    if as_json:
        print_json(record)
    return EXIT_OK
