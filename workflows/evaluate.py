"""`cnnray evaluate --model URI [data.* keys] [--split test|val|train] [--out DIR] [--json]`: metrics of a
registered version on labelled data, recorded as an MLflow evaluation run linked to the version."""

from __future__ import annotations

import sys

from cnnray.console import make_parser, print_json, run_workflow


def main(argv: list[str] | None = None) -> int:
    """Evaluate a model version; print metrics, per-class table and confusion matrix."""
    parser = make_parser("cnnray evaluate", "Evaluate a registered model version on labelled data.", config=False)
    parser.add_argument("--model", required=True, help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/ID/model")
    parser.add_argument("overrides", nargs="*", help="data.* keys (default: the data the model was trained on), "
                                                     "tracking.uri, tracking.experiment")
    parser.add_argument("--split", default="test", choices=["test", "val", "train"],
                        help="test: held out (default); val: what training selected on; train")
    parser.add_argument("--out", default=None, help="directory for metrics.json, per_class.csv, confusion_matrix.csv/.png")
    parser.add_argument("--no-log", action="store_true", help="do not record an MLflow evaluation run")

    def body() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        # deferred: torch (cnnray.serve), after --help and argument errors
        from cnnray.serve.evaluate_command import EvaluateOptions, run_evaluate

        opts = EvaluateOptions(args.model, tuple(args.overrides), split=args.split, out=args.out,
                               log=not args.no_log, verbose=args.verbose)
        opts.validate()
        summary = run_evaluate(opts)
        if args.json:
            print_json(summary)
        return 0

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
