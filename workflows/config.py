"""`cnnray config --show`: print the resolved config tree with defaults (YAML), or the key reference."""

from __future__ import annotations

import sys

from cnnray.config import load_config, to_yaml
from cnnray.console import make_parser, print_json, run_workflow


def main(argv: list[str] | None = None) -> int:
    """Print the resolved config (after --config files or names and overrides) or every key with its description."""
    parser = make_parser("cnnray config", "Show the resolved config tree or the reference of every key.")
    parser.add_argument("--show", action="store_true", help="print the resolved config as YAML (default)")
    parser.add_argument("--keys", action="store_true", help="print every key with its type, default and description")

    def body() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        cfg = load_config(args.config, args.overrides)
        if args.keys:
            from cnnray.config.reference import key_reference

            print(key_reference())
        else:
            print(to_yaml(cfg), end="")
        if args.json:
            print_json(cfg.model_dump(mode="json"))
        return 0

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
