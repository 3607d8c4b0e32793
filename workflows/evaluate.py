"""`cnnray evaluate --model URI [data.* keys] [--split val|train|test] [--out DIR] [--json]`: metrics of a
registered version on labelled data, recorded as an MLflow evaluation run linked to the version."""

from __future__ import annotations

import sys
from pathlib import Path

from cnnray.console import make_parser, print_json, run_workflow


def main(argv: list[str] | None = None) -> int:
    """Evaluate a model version; print metrics, per-class table and confusion matrix."""
    parser = make_parser("cnnray evaluate", "Evaluate a registered model version on labelled data.", config=False)
    parser.add_argument("--model", required=True, help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/ID/model")
    parser.add_argument("overrides", nargs="*", help="data.* keys (default: the data the model was trained on), "
                                                     "tracking.uri, tracking.experiment")
    parser.add_argument("--split", default="val", choices=["val", "train", "test"])
    parser.add_argument("--out", default=None, help="directory for metrics.json, per_class.csv, confusion_matrix.csv/.png")
    parser.add_argument("--no-log", action="store_true", help="do not record an MLflow evaluation run")

    def body() -> int:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        from cnnray.serve.options import split_keys
        from cnnray.serve.uri import parse_model_uri

        ref = parse_model_uri(args.model)
        keys = split_keys(args.overrides)
        from cnnray.serve import report
        from cnnray.serve.data import check_classes, data_config_for, describe
        from cnnray.serve.run_eval import evaluate_models, uses_ray
        from cnnray.tracking.model_store import load_version

        clf, version = load_version(ref, keys.tracking_uri)
        data = data_config_for(clf.card, keys.data)
        info = describe(data)
        check_classes(clf.card, tuple(info.class_names), f"data.source={data.source}")
        if uses_ray(data):
            from cnnray.ray_session import quiet_ray

            quiet_ray(args.verbose)
        res = evaluate_models([clf], data, args.split)[0]
        trained_on = version.tags.get("cnnray.data_fingerprint") or clf.card.training.get("data_fingerprint")
        names = clf.class_names
        print(f"{version.label} on {data.source} {args.split} ({res.n} images, "
              f"{'Ray Data' if uses_ray(data) else 'in-process'}):")
        print(report.metrics_table(res))
        print("\n" + report.per_class_table(res, names))
        print("\n" + report.confusion_table(res, names), flush=True)
        summary = {"model_uri": version.label, "name": version.name, "version": version.version,
                   "split": args.split, "n": res.n, "metrics": res.metrics, "data_source": data.source,
                   "data_fingerprint": info.fingerprint, "same_data_as_training": trained_on == info.fingerprint,
                   "confusion_matrix": res.confusion}
        files = []
        if args.out:
            files = report.write_eval_files(Path(args.out), res, names, summary)
            print(f"\nwrote {', '.join(f.name for f in files)} to {args.out}")
        if not args.no_log:
            import tempfile

            from cnnray.tracking.evaluation import log_evaluation_run

            params = {"model_uri": version.label, "split": args.split, "data.source": data.source,
                      "data.path": data.path, "data_fingerprint": info.fingerprint, "n": res.n}
            with tempfile.TemporaryDirectory(prefix="cnnray-eval-") as tmp:
                # The run always keeps its per-class table and matrix (what `cnnray report` shows).
                files = files or report.write_eval_files(Path(tmp), res, names, summary)
                summary["run_id"] = log_evaluation_run(keys.tracking_uri, keys.experiment, version, res.metrics,
                                                       params, [f for f in files if f.suffix in (".png", ".csv", ".json")])
            print(f"recorded as MLflow run {summary['run_id']}")
        if args.json:
            print_json(summary)
        return 0

    return run_workflow(body)


if __name__ == "__main__":
    sys.exit(main())
