"""`cnnray report --model URI [--out DIR] [--inspect] [data.* keys] [tracking.uri=...] [--no-log] [--json]`:
one self-contained HTML page for a registered version (lineage, curves, per-class table, evaluations,
promotion decisions, inspect figures, search plots), written to --out and logged under report/ of its run."""

from __future__ import annotations

import sys
from pathlib import Path

from cnnray.console import make_parser, print_json, run_workflow


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
        from cnnray.errors import UserInputError
        from cnnray.serve.options import split_keys
        from cnnray.serve.uri import parse_model_uri

        ref = parse_model_uri(args.model)
        if ref.run_id:
            raise UserInputError(f"--model {args.model}: report takes a registered version (models:/NAME/VERSION "
                                 "or models:/NAME@ALIAS)")
        out = Path(args.out) if args.out else None
        if out is not None and out.exists() and not out.is_dir():
            raise UserInputError(f"--out {args.out!r} is an existing file, not a folder")
        keys = split_keys(args.overrides)
        if keys.data and not args.inspect:
            raise UserInputError(f"{keys.data[0]}: data.* keys choose the images of --inspect; add --inspect "
                                 "or leave them out")
        if args.inspect:
            from cnnray.insight.inspect_options import PARTS
            from cnnray.insight.inspect_version import inspect_version

            summary = inspect_version(ref, keys.tracking_uri, keys.data, None, list(PARTS), False, None, 4)
            print(f"inspect: {len(summary['figures'])} figures logged to run {summary['run_id']} under insight/")
        from cnnray.insight.report_version import report_version

        result = report_version(ref, keys.tracking_uri, out, log=not args.no_log)
        figures = ", ".join(f"{k} {v}" for k, v in result["figures"].items())
        print(f"wrote {result['path']} ({result['bytes'] / 1e6:.2f} MB; figures: {figures}; "
              f"{result['evaluations']} evaluation(s), {result['decisions']} decision(s))")
        for section, why in result["missing"].items():
            print(f"  {section}: {why}")
        if result["artifacts"]:
            print(f"logged to run {result['run_id']} as {result['artifacts'][0]}")
        if args.json:
            print_json(result)
        return 0

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
