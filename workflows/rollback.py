"""`cnnray rollback [--name cnnray] [--json]`: `champion` back to `previous-champion`, recorded like a promotion."""

from __future__ import annotations

import sys

from cnnray.console import make_parser, run_workflow


def main(argv: list[str] | None = None) -> int:
    """Roll the champion back one step."""
    parser = make_parser("cnnray rollback", "Move @champion back to @previous-champion.", config=False)
    parser.add_argument("overrides", nargs="*", help="tracking.uri, tracking.experiment")
    parser.add_argument("--name", default="cnnray", help="registered model name")

    def body() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        from cnnray.serve.options import split_keys

        keys = split_keys(args.overrides)
        from cnnray.promote.decision_output import print_decision
        from cnnray.promote.gate import run_rollback

        return print_decision(run_rollback(keys.tracking_uri, args.name, keys.experiment), args.json)

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
