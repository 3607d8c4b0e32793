"""`cnnray predict --model URI FILE_OR_DIR... [--top-k 5] [--json]`: class names with confidences for image
files; `--data parquet PATH --out predictions.parquet` predicts a Parquet data set through Ray Data."""

from __future__ import annotations

import sys

from cnnray.console import make_parser, print_json, run_workflow


def main(argv: list[str] | None = None) -> int:
    """Predict image files (or a Parquet data set) with a model version."""
    parser = make_parser("cnnray predict", "Predict image files with a registered model version.", config=False)
    parser.add_argument("--model", required=True, help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/ID/model")
    parser.add_argument("inputs", nargs="*", help="image files or directories (searched recursively); "
                                                  "tracking.uri=... also accepted")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--data", nargs=2, metavar=("parquet", "PATH"), default=None,
                        help="batch prediction of a Parquet data set through Ray Data")
    parser.add_argument("--split", default=None, help="with --data on a prepared directory: only this split")
    parser.add_argument("--out", default=None, help="with --data: the predictions Parquet file to write")

    def body() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        # deferred: torch (cnnray.serve), after --help and argument errors
        from cnnray.serve.predict_command import PredictOptions, run_predict

        opts = PredictOptions(args.model, tuple(args.inputs), top_k=args.top_k,
                              data=tuple(args.data) if args.data else None, split=args.split, out=args.out,
                              verbose=args.verbose)
        opts.validate()
        result = run_predict(opts)
        if args.json:
            print_json(result)
        return 0

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
