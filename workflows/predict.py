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
        from cnnray.errors import UserInputError
        from cnnray.serve.files import collect_images
        from cnnray.serve.options import split_keys
        from cnnray.serve.uri import parse_model_uri

        ref = parse_model_uri(args.model)
        keys = split_keys([a for a in args.inputs if "=" in a])
        paths = [a for a in args.inputs if "=" not in a]
        if args.top_k < 1:
            raise UserInputError(f"--top-k must be at least 1, got {args.top_k}")
        if args.data:
            if args.data[0] != "parquet":
                raise UserInputError(f"--data {args.data[0]!r}: only 'parquet' is supported (--data parquet PATH)")
            if not args.out or paths:
                raise UserInputError("--data parquet PATH needs --out predictions.parquet and no image files")
            from cnnray.serve.batch import parquet_source

            source = parquet_source(args.data[1], args.split)
        else:
            if not paths:
                raise UserInputError("give image files or directories, or --data parquet PATH --out FILE")
            files, images = collect_images(paths)
        from cnnray.tracking.model_store import load_version

        clf, version = load_version(ref, keys.tracking_uri)
        if args.data:
            from cnnray.serve.batch_write import predict_parquet
            from cnnray.ray_session import quiet_ray

            quiet_ray(args.verbose)
            n = predict_parquet(clf, source, args.out, top_k=args.top_k)
            print(f"{version.label}: wrote {n} predictions to {args.out}")
            result = {"model_uri": version.label, "out": args.out, "rows": n}
        else:
            from cnnray.serve.report import predictions_table

            rows = clf.predict(images, top_k=args.top_k).records(clf.class_names)
            for f, r in zip(files, rows):
                r["path"] = str(f)
            print(predictions_table(rows, args.top_k), flush=True)
            result = {"model_uri": version.label, "name": version.name, "version": version.version,
                      "predictions": rows}
        if args.json:
            print_json(result)
        return 0

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
