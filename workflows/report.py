"""`cnnray report --model URI [--out DIR] [--inspect] [data.* keys] [tracking.uri=...] [--no-log] [--json]`:
one self-contained HTML page for a registered version (lineage, curves, per-class table, evaluations,
promotion decisions, inspect figures, search plots), written to --out and logged under report/ of its run."""

from __future__ import annotations

import sys

from cnnray.console import make_parser, print_json, run_workflow
from cnnray.insight.report_command import ReportOptions, run_report


def main(argv: list[str] | None = None) -> int:
    """Validate, optionally run inspect first, gather the version's records, write and log the page."""
    parser = make_parser("cnnray report", "One HTML page about a registered version, from what MLflow holds.",
                         config=False)
    parser.add_argument("--model", required=True, help="models:/NAME/VERSION or models:/NAME@ALIAS")
    parser.add_argument("overrides", nargs="*", help="tracking.uri; data.* keys for --inspect (default: the "
                                                     "model's training data)")
    parser.add_argument("--out", default=None, help="output folder (default ./cnnray_report); the page is "
                                                    "NAME-vVERSION.html")
    parser.add_argument("--inspect", action="store_true", help="run `cnnray inspect` (all parts) first, so the "
                                                               "page has its figures")
    parser.add_argument("--no-log", action="store_true", help="do not log the page to the version's run")

    def body() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        opts = ReportOptions(args.model, tuple(args.overrides), out=args.out, inspect=args.inspect,
                             log=not args.no_log)
        opts.validate()
        result = run_report(opts)
        if args.json:
            print_json(result)
        return 0

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
