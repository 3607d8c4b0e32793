"""A planned replay trained and judged against its original: announce what differs, train as `cnnray train`
would, side-by-side, weights digest, the paired test when they differ, and the verdict recorded on the replay's
run. It hands back what a compressed replay builds on (`compressed.py` compresses the replayed weights again):
the original classifier and the replay's best weights."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnray.replay.compare import DIFFERENT, Verdict, format_verdict, judge, paired_test, weights_digest
from cnnray.replay.options import ReplayOptions
from cnnray.replay.plan import ReplayPlan


@dataclass
class Judged:
    """A finished (or unfinished) replay: the result object, the original, the replay's best weights (None
    when the replay did not finish)."""

    result: dict[str, Any]
    original: Any  # ImageClassifier of the original version
    weights: dict[str, Any] | None


def load_original(version: Any, uri: str, **classifier_kw: Any) -> tuple[Any, dict[str, Any]]:
    """(ImageClassifier, the registered weights.pt as saved) of the version."""
    # deferred (heavy import): torch, MLflow
    import torch

    from cnnray.classifier.card import WEIGHTS_FILE
    from cnnray.classifier.classifier import ImageClassifier
    from cnnray.tracking.model_store import fetch

    with tempfile.TemporaryDirectory(prefix="cnnray-replay-") as tmp:
        files = fetch(version, uri, tmp)
        weights = torch.load(files / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        return ImageClassifier.from_dir(files, **classifier_kw), weights


def _original_side(plan: ReplayPlan, weights: dict[str, Any]) -> dict[str, Any]:
    t, rt = plan.version.tags, plan.record.run_tags

    def num(key: str) -> float | None:
        return float(t[key]) if key in t else None

    best = rt.get("cnnray.best_epoch")
    return {"val_acc": num("cnnray.metric.val_acc"), "val_loss": num("cnnray.metric.val_loss"),
            "test_acc": num("cnnray.metric.test_acc"), "test_loss": num("cnnray.metric.test_loss"),
            "best_epoch": int(best) + 1 if best not in (None, "None") else None,
            "epochs": len(plan.record.curves.get("train_loss", [])) or None, "weights_sha256": weights_digest(weights)}


def _replay_side(result: dict[str, Any], weights: dict[str, Any]) -> dict[str, Any]:
    m, tm = result.get("best_metrics") or {}, result.get("test_metrics") or {}
    best = result.get("best_epoch")
    return {"val_acc": m.get("val_acc"), "val_loss": m.get("val_loss"), "test_acc": tm.get("test_acc"),
            "test_loss": tm.get("test_loss"), "best_epoch": int(best) + 1 if best is not None else None,
            "epochs": result.get("epochs_run"), "weights_sha256": weights_digest(weights)}


def _paired(plan: ReplayPlan, original: Any, replay_weights: dict[str, Any], alpha: float) -> dict[str, Any] | None:
    """Both models on the held-out split (val when the data has none), paired image by image."""
    # deferred (heavy import): torch, PIL, pyarrow
    from cnnray.classifier.classifier import ImageClassifier
    from cnnray.serve.run_eval import evaluate_models

    info, c = plan.prep.info, original.card.input
    split = "test" if getattr(info, "num_test", 0) else "val"
    data = plan.prep.cfg.data.model_copy(update={
        "image_size": c.image_size, "channels": c.channels,
        "loader": "streaming" if plan.prep.loader_kind == "streaming" else "memory"})
    replay = ImageClassifier(original.card, replay_weights)
    a, b = evaluate_models([original, replay], data, split)
    if a.n == 0:
        return None
    return paired_test(a.labels, a.pred, b.pred, a.top5, b.top5, original.card.num_classes, split, alpha)


def _record(plan: ReplayPlan, result: dict[str, Any], verdict: Verdict, uri: str) -> None:
    """replay.json, the curves of both runs in one figure, and the verdict tags on the replay's run."""
    # deferred (heavy import): matplotlib
    from cnnray.tracking.plots import plot_replay_curves
    from cnnray.tracking.replay_record import record_replay, run_curves

    with tempfile.TemporaryDirectory(prefix="cnnray-replay-") as tmp:
        fig = plot_replay_curves(plan.record.curves, run_curves(uri, result["run_id"]), Path(tmp) / "replay_curves.png",
                                 f"{plan.version.label} (original) and its replay: {verdict.verdict}")
        doc = Path(tmp) / "replay.json"
        doc.write_text(json.dumps({"replay_of": plan.version.label, **verdict.to_json(),
                                   "differences": [d.__dict__ for d in plan.differences]}, indent=1, default=str))
        version = (result["registered_name"], str(result["version"])) if result.get("version") else None
        record_replay(uri, result["run_id"], {"cnnray.replay_verdict": verdict.verdict,
                                              "cnnray.replay_reason": verdict.reason}, [fig, doc], version)


def announce(plan: ReplayPlan, on_line: Callable[[str], None]) -> None:
    """What the replay trains and what differs from the original, before it trains."""
    v = plan.version
    on_line(f"replaying {v.label} ({plan.kind}, run {plan.record.run_tags.get('cnnray.run_name', plan.record.run_id)}) "
            f"as run {plan.prep.run_name}")
    if plan.differences:
        on_line("differs from the original (recorded on the replay's run):")
        for d in plan.differences:
            on_line(d.line())
    else:
        on_line("same code, packages, device kind, workers and host CPU as the original")
    for note in plan.notes:
        on_line(f"note: {note}")


def train_and_judge(plan: ReplayPlan, opts: ReplayOptions, on_line: Callable[[str], None] = print, *,
                    verbose: bool = False) -> Judged:
    """Announce, train as `cnnray train` would, compare with the original, record the verdict on the replay's run."""
    # deferred (heavy import): torch, MLflow through the run package
    from cnnray.run.outcome import load_best
    from cnnray.run.training import run_training

    v, uri = plan.version, opts.tracking_uri
    announce(plan, on_line)
    original, original_weights = load_original(v, uri)  # before training: a version that cannot load is refused
    out: dict[str, Any] = {"replay_of": v.label, "kind": plan.kind, "original_run_id": plan.record.run_id,
                           "differences": [d.__dict__ for d in plan.differences], "notes": plan.notes}
    result = run_training(plan.prep.cfg, prepared=plan.prep, on_line=on_line, verbose=verbose)
    out.update(status=result["status"], run_id=result.get("run_id"), run_name=result.get("run_name"),
               version=result.get("version"), registered_name=result.get("registered_name"))
    if result["status"] != "FINISHED":
        out.update(verdict=None, error=result.get("error"))
        return Judged(out, original, None)
    replay_weights, _ = load_best(result["checkpoint"])
    orig_side, replay_side = _original_side(plan, original_weights), _replay_side(result, replay_weights)
    identical = orig_side["weights_sha256"] == replay_side["weights_sha256"]
    test = None if identical else _paired(plan, original, replay_weights, opts.alpha)
    verdict = judge(orig_side, replay_side, test)
    _record(plan, result, verdict, uri)
    on_line(format_verdict(verdict, v.label))
    out.update(verdict.to_json(), different=verdict.verdict == DIFFERENT)
    return Judged(out, original, replay_weights)
