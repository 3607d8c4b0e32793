"""Shared command-line plumbing for workflows: argument parsing, exit codes, JSON result line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from cnnray.errors import BudgetSpentError, UserInputError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse that raises UserInputError (exit 2 through `run_workflow`) instead of exiting."""

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """Overrides may come before or after flags (`cnnray train --json train.epochs=3`)."""
        return self.parse_intermixed_args(args, namespace)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserInputError(f"{self.prog}: {message}")


def make_parser(prog: str, description: str, config: bool = True) -> argparse.ArgumentParser:
    """A parser with the common flags: --config, overrides, --json, --verbose."""
    p = _Parser(prog=prog, description=description)
    if config:
        p.add_argument("--config", action="append", default=[], help="YAML config file or built-in config name, e.g. tutorial (repeatable)")
        p.add_argument("overrides", nargs="*", help="config overrides: key.sub=value")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    p.add_argument("--verbose", action="store_true", help="show Ray's own logs")
    return p


def print_json(result: dict[str, Any]) -> None:
    """The machine-readable result: one JSON object, the last line on stdout."""
    sys.stdout.flush()
    print(json.dumps(result, default=str), flush=True)


def run_workflow(body: Callable[[], int | None]) -> int:
    """Run a workflow body, mapping bad input to exit 2 and any other failure to exit 1."""
    try:
        return int(body() or EXIT_OK)
    except UserInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BudgetSpentError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
