"""Gather a registered version's report from MLflow: its version and run, evaluations, decisions, inspect
figures and the search that produced it. Read-only; artifacts are downloaded into a scratch folder."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cnnray.insight.report_model import PNG_MAGIC, Evaluation, Figure, VersionReport
from cnnray.tracking.model_store import ResolvedVersion, client
from cnnray.tracking.runs import TrackingContext, metric_history
from cnnray.tracking.uri import parse_model_uri

LINEAGE_KEYS = ("cnnray.config_hash", "cnnray.data_fingerprint", "cnnray.git_commit", "cnnray.ray_run_name",
                "cnnray.weights", "cnnray.best_epoch", "cnnray.tune_run", "cnnray.trial_id", "cnnray.init_from",
                "cnnray.init_sha256", "cnnray.parent_version")
TRAINING_PNGS = ("learning_curves.png", "confusion_matrix.png")
TUNE_PNGS = ("best_so_far.png", "metric_vs_params.png", "top_trials.png")
MAX_RUNS = 20  # evaluations and decisions shown per version
# Version tags of what it cost (cnnray.run.finish; the search's from cnnray tune), as the report labels them.
COST_TAGS = (("cnnray.cost_device_hours", "training device-hours"), ("cnnray.cost_device_kind", "device kind"),
             ("cnnray.cost_money", "training money"), ("cnnray.search_cost_device_hours", "search device-hours"),
             ("cnnray.search_cost_money", "search money"))


def _utc(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if ms else ""


class _Artifacts:
    """Downloads a run's artifacts on demand into one scratch folder; a missing file is None, not an error."""

    def __init__(self, tracking_uri: str, root: Path) -> None:
        self.c, self.root = client(tracking_uri), root

    def listing(self, run_id: str, folder: str | None = None) -> list[str]:
        try:
            return [a.path for a in self.c.list_artifacts(run_id, folder) if not a.is_dir]
        except Exception:  # noqa: BLE001 - an unreachable artifact store leaves the section empty, with a note
            return []

    def read(self, run_id: str, path: str) -> bytes | None:
        try:
            dst = self.root / run_id
            dst.mkdir(parents=True, exist_ok=True)
            return Path(self.c.download_artifacts(run_id, path, str(dst))).read_bytes()
        except Exception:  # noqa: BLE001
            return None

    def figure(self, run_id: str, path: str, title: str) -> Figure | None:
        data = self.read(run_id, path)
        return Figure(title, data, f"run {run_id[:8]}: {path}") if data and data.startswith(PNG_MAGIC) else None


def _title(path: str) -> str:
    return Path(path).stem.replace("_", " ")


def _training(r: VersionReport, art: _Artifacts, run_id: str, tracking_uri: str, scratch: Path) -> None:
    # deferred (heavy import): matplotlib
    from cnnray.tracking.plots import plot_learning_curves

    c = art.c
    try:
        run = c.get_run(run_id)
    except Exception as e:  # noqa: BLE001 - a deleted run: the version still has its tags and card
        r.notes["training"] = f"the version's run {run_id} could not be read ({type(e).__name__})"
        return
    info = run.info
    r.training = {"run id": run_id, "run name": run.data.tags.get("mlflow.runName", ""), "status": info.status,
                  "started (UTC)": _utc(info.start_time), "ended (UTC)": _utc(info.end_time),
                  "best epoch": run.data.tags.get("cnnray.best_epoch", ""),
                  "weights": run.data.tags.get("cnnray.weights", "")}
    r.params = dict(run.data.params)
    r.final_metrics = dict(run.data.metrics)
    ctx = TrackingContext(tracking_uri, info.experiment_id, run_id)
    r.history = {k: metric_history(ctx, k) for k in ("train_loss", "val_loss", "val_acc", "val_top5", "lr")
                 if k in run.data.metrics}
    if r.history:
        png = plot_learning_curves(r.history, scratch / "curves.png", title=f"{r.label}: training curves")
        r.training_figures.append(Figure("training curves (from the run's metric history)", png.read_bytes(),
                                         f"run {run_id[:8]}: metrics"))
    files = set(art.listing(run_id))
    if "confusion_matrix.png" in files:
        fig = art.figure(run_id, "confusion_matrix.png", "confusion matrix, best epoch (validation)")
        r.training_figures += [fig] if fig else []
    if "confusion_matrix.json" in files:
        data = art.read(run_id, "confusion_matrix.json")
        try:
            r.confusion = (json.loads(data or b"null") or {}).get("matrix")
        except (json.JSONDecodeError, AttributeError):
            r.confusion = None
    if r.confusion is None and "per_class_report.txt" in files:
        r.per_class_text = (art.read(run_id, "per_class_report.txt") or b"").decode("utf-8", "replace")
    if r.confusion is None and r.per_class_text is None:
        r.notes["classes"] = "the training run logged no confusion matrix (a version registered outside cnnray train)"
    _insight(r, art, run_id)


def _insight(r: VersionReport, art: _Artifacts, run_id: str) -> None:
    """The run's insight/ figures, in the order inspect drew them (its summary.json), else by name."""
    listed = art.listing(run_id, "insight")
    if "insight/summary.json" in listed:
        try:
            r.insight_summary = json.loads(art.read(run_id, "insight/summary.json") or b"null")
        except json.JSONDecodeError:
            r.insight_summary = None
    drawn = [f"insight/{n}" for n in ((r.insight_summary or {}).get("figures") or {}).values() if isinstance(n, str)]
    pngs = [p for p in drawn if p in listed] + sorted(p for p in listed if p.endswith(".png") and p not in drawn)
    for path in pngs:
        fig = art.figure(run_id, path, _title(path))
        r.insight_figures += [fig] if fig else []


def _runs_about(c: Any, name: str, version: str, extra: str) -> list[Any]:
    """Runs in any experiment tagged with this model version (evaluations, decisions), oldest first."""
    if "'" in name:  # MLflow's filter grammar has no escape for quotes in values
        return []
    ids = [e.experiment_id for e in c.search_experiments(max_results=1000)]
    runs = c.search_runs(ids, f"tags.`cnnray.model_name` = '{name}' and tags.`cnnray.model_version` = '{version}'"
                              f" and {extra}", max_results=MAX_RUNS, order_by=["attributes.start_time DESC"])
    return list(reversed(runs))


def _evaluations(r: VersionReport, art: _Artifacts) -> None:
    for run in _runs_about(art.c, r.name, r.version, "tags.`cnnray.kind` = 'evaluation'"):
        rid = run.info.run_id
        ev = Evaluation(rid, run.data.tags.get("mlflow.runName", ""), _utc(run.info.start_time), dict(run.data.params),
                        dict(run.data.metrics))
        files = set(art.listing(rid))
        if "per_class.csv" in files:
            text = (art.read(rid, "per_class.csv") or b"").decode("utf-8", "replace")
            ev.per_class = list(csv.DictReader(io.StringIO(text)))
        if "confusion_matrix.png" in files:
            fig = art.figure(rid, "confusion_matrix.png", f"confusion matrix of {ev.run_name}")
            ev.figures += [fig] if fig else []
        r.evaluations.append(ev)
    if not r.evaluations:
        r.notes["evaluation"] = f"no evaluation run yet: `cnnray evaluate --model {r.label}` records one"


def _decisions(r: VersionReport, art: _Artifacts) -> None:
    for run in _runs_about(art.c, r.name, r.version, "tags.`cnnray.decision_id` != ''"):
        data = art.read(run.info.run_id, "promotion_decision.json")
        try:
            record = json.loads(data) if data else None
        except json.JSONDecodeError:
            record = None
        r.decisions.append(record if isinstance(record, dict) else {
            "action": run.data.tags.get("cnnray.kind", ""), "outcome": run.data.tags.get("cnnray.decision", ""),
            "candidate_version": r.version, "reason": f"(run {run.info.run_id}: no readable promotion_decision.json)"})
    r.decisions.sort(key=lambda d: int(d.get("seq") or 0))
    if not r.decisions:
        r.notes["promotion"] = f"no promotion decision about this version yet: `cnnray promote --name {r.name} --candidate {r.version}`"


def _search(r: VersionReport, art: _Artifacts, tags: dict[str, str]) -> None:
    parent_id = tags.get("cnnray.tune_parent_run_id")
    if not parent_id:
        r.notes["search"] = "this version was not produced by `cnnray tune`"
        return
    try:
        parent = art.c.get_run(parent_id)
    except Exception as e:  # noqa: BLE001
        r.notes["search"] = f"the search's parent run {parent_id} could not be read ({type(e).__name__})"
        return
    p = parent.data.params
    r.tune = {"search": tags.get("cnnray.tune_run", ""), "parent run id": parent_id, "status": parent.info.status,
              "scheduler": p.get("tune.scheduler", ""), "search algorithm": p.get("tune.search", ""),
              "trials": p.get("tune.num_samples", ""), "this trial": tags.get("cnnray.trial_id", ""),
              "metrics": dict(parent.data.metrics)}
    files = set(art.listing(parent_id))
    for name in TUNE_PNGS:
        fig = art.figure(parent_id, name, _title(name)) if name in files else None
        r.tune_figures += [fig] if fig else []
    if "trials.txt" in files:
        r.tune["trials_text"] = (art.read(parent_id, "trials.txt") or b"").decode("utf-8", "replace")


def _chain(r: VersionReport, c: Any, tags: dict[str, str]) -> None:
    """Follow cnnray.compress.source (compressed from) and cnnray.parent_version (initialized from, model.init_from)
    back through the versions a model descends from (at most 10 steps: a cycle stops it)."""
    seen, current = {r.label}, tags
    for _ in range(10):
        source, parent = current.get("cnnray.compress.source"), current.get("cnnray.parent_version")
        if parent and not source:
            source = f"models:/{parent}"
        if not source or source in seen:
            if current.get("cnnray.init_from") and not parent:  # a file or torchvision start ends the chain
                r.chain.append({"version": current["cnnray.init_from"], "method": "init_from",
                                "note": f"first weights (sha256 {current.get('cnnray.init_sha256', '')[:12]})"})
            return
        seen.add(source)
        if parent and not current.get("cnnray.compress.source"):
            r.chain.append({"version": source, "method": "init_from", "note": "trained from its weights (model.init_from)"})
        else:
            r.chain.append({"version": source, "method": current.get("cnnray.compress.method", ""),
                            "note": "compressed from it by cnnray compress"})
        try:
            ref = parse_model_uri(source)
            current = dict(c.get_model_version(ref.name, ref.version).tags or {}) if ref.version else {}
        except Exception:  # noqa: BLE001 - a deleted source ends the chain
            return


def gather_report(tracking_uri: str, version: ResolvedVersion, card: Any) -> VersionReport:
    """Everything the report shows about `version` (a registered one) and its `card` (serve.card.ModelCard)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # the command prints its own lines
    c = client(tracking_uri)
    mv = c.get_model_version(version.name, version.version)
    tags = dict(mv.tags or {})
    lineage = {k.removeprefix("cnnray."): tags[k] for k in LINEAGE_KEYS if tags.get(k)}
    lineage.update({f"package {k.removeprefix('cnnray.version.')}": v for k, v in sorted(tags.items())
                    if k.startswith("cnnray.version.")})
    r = VersionReport(version.label, version.name or "", version.version or "", list(version.aliases),
                      _utc(mv.creation_timestamp), mv.description or "", card.architecture, list(card.class_names),
                      lineage, generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"))
    r.version_metrics = {k.removeprefix("cnnray.metric."): v for k, v in sorted(tags.items())
                         if k.startswith("cnnray.metric.")}
    r.compression = {k.removeprefix("cnnray.compress."): v for k, v in sorted(tags.items())
                     if k.startswith("cnnray.compress.")}
    r.cost = {label: tags[k] for k, label in COST_TAGS if tags.get(k)}
    _chain(r, c, tags)
    with tempfile.TemporaryDirectory(prefix="cnnray-report-") as tmp:
        art = _Artifacts(tracking_uri, Path(tmp))
        if version.run_id:
            _training(r, art, version.run_id, tracking_uri, Path(tmp))
        else:
            r.notes["training"] = "the version has no run"
        _evaluations(r, art)
        _decisions(r, art)
        _search(r, art, tags)
    if not r.insight_figures:
        r.notes["inspect"] = (f"no inspect figures logged for this version: `cnnray inspect --model {r.label}` "
                              "or `cnnray report --inspect` adds them")
    return r
