"""`cnnray evaluate` from its options: a registered version's metrics on labelled data, printed as tables,
optionally written to a folder, and recorded as an MLflow evaluation run linked to the version."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnray.cluster.ray_session import quiet_ray
from cnnray.serve import tables
from cnnray.serve.data import check_classes, data_config_for, describe
from cnnray.serve.options import VersionCommand
from cnnray.serve.run_eval import evaluate_models, uses_ray
from cnnray.tracking.evaluation import log_evaluation_run
from cnnray.tracking.lineage import TEST_FINGERPRINT_TAG
from cnnray.tracking.model_store import load_version


@dataclass(frozen=True)
class EvaluateOptions(VersionCommand):
    """The options of `cnnray evaluate` as given; `validate()` before `run_evaluate`."""

    model: str  # models:/NAME@ALIAS, models:/NAME/VERSION or runs:/ID/model
    overrides: tuple[str, ...] = ()  # data.* keys, tracking.uri, tracking.experiment
    split: str = "test"  # the held-out split; val and train are what training selected on
    out: str | None = None  # folder for metrics.json, per_class.csv, confusion_matrix.csv/.png
    log: bool = True  # record an MLflow evaluation run
    verbose: bool = False  # show Ray's own logs

    def key_args(self) -> list[str]:
        return list(self.overrides)

    def validate(self) -> None:
        """UserInputError (exit 2) for a bad model URI or key, before MLflow is touched."""
        _ = self.ref, self.keys


def split_label(split: str) -> str:
    """How a split is named in output: whether selection saw it."""
    return {"test": "test (held out)", "val": "val (the selection split)", "train": "train"}.get(split, split)


def _log_run(opts: EvaluateOptions, version: Any, res: Any, data: Any, info: Any, summary: dict[str, Any],
             files: list[Path], names: tuple[str, ...]) -> str:
    """Record the evaluation run (it always keeps its per-class table and matrix: what `cnnray report` shows)."""
    params = {"model_uri": version.label, "split": opts.split, "data.source": data.source,
              "data.path": data.path, "data_fingerprint": info.fingerprint, "n": res.n,
              "test_fingerprint": summary.get("test_fingerprint") or ""}
    with tempfile.TemporaryDirectory(prefix="cnnray-eval-") as tmp:
        files = files or tables.write_eval_files(Path(tmp), res, names, summary)
        return log_evaluation_run(opts.keys.tracking_uri, opts.keys.experiment, version, res.metrics,
                                  params, [f for f in files if f.suffix in (".png", ".csv", ".json")])


def run_evaluate(opts: EvaluateOptions) -> dict[str, Any]:
    """Evaluate the version, print metrics, per-class table and confusion matrix; the summary (--json object)."""
    clf, version = load_version(opts.ref, opts.keys.tracking_uri)
    data = data_config_for(clf.card, opts.keys.data)
    info = describe(data)
    check_classes(clf.card, tuple(info.class_names), f"data.source={data.source}")
    if uses_ray(data):
        quiet_ray(opts.verbose)
    res = evaluate_models([clf], data, opts.split)[0]
    trained_on = version.tags.get("cnnray.data_fingerprint") or clf.card.training.get("data_fingerprint")
    names = clf.class_names
    test_fp = getattr(info, "test_fingerprint", "") if opts.split == "test" else ""
    print(f"{version.label} on {data.source} {split_label(opts.split)} ({res.n} images, "
          f"{'Ray Data' if uses_ray(data) else 'in-process'}):")
    print(tables.metrics_table(res))
    print("\n" + tables.per_class_table(res, names))
    print("\n" + tables.confusion_table(res, names), flush=True)
    summary = {"model_uri": version.label, "name": version.name, "version": version.version,
               "split": opts.split, "n": res.n, "metrics": res.metrics, "data_source": data.source,
               "data_fingerprint": info.fingerprint, "same_data_as_training": trained_on == info.fingerprint,
               "test_fingerprint": test_fp or None,
               "same_test_set_as_training": (test_fp == version.tags.get(TEST_FINGERPRINT_TAG)) if test_fp else None,
               "confusion_matrix": res.confusion}
    files = []
    if opts.out:
        files = tables.write_eval_files(Path(opts.out), res, names, summary)
        print(f"\nwrote {', '.join(f.name for f in files)} to {opts.out}")
    if opts.log:
        summary["run_id"] = _log_run(opts, version, res, data, info, summary, files, names)
        print(f"recorded as MLflow run {summary['run_id']}")
    return summary
