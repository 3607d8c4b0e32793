"""The `cnnray` command: `cnnray <workflow> [args]` runs `workflows.<workflow>.main(args)`."""

from __future__ import annotations

import importlib
import sys

from cnnray.commands import COMMANDS

USAGE = "usage: cnnray <command> [--config FILE] [key.sub=value ...] [--json]\ncommands: " + ", ".join(COMMANDS)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a workflow; exit code 2 for an unknown command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"cnnray: unknown command '{name}'; valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
