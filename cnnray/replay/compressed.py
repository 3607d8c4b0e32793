"""`cnnray replay` of a compressed version: the replay of its source (cnnray.compress.source; recursively when that
is compressed too), then the compression command recorded on the version (cnnray.compress.command) run again on the
replayed source, and the result judged against the version: identical, equivalent (the paired test on the held-out
split finds no difference) or different (a compress gate refusal included). Registers nothing without --register;
with it, every replayed step is registered beside its original, tagged cnnray.replay_of."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnray.compress.job.compress_command import CompressJobOptions, command_line
from cnnray.errors import UserInputError
from cnnray.replay.compare import (DIFFERENT, Verdict, format_verdict, judge, paired_test, side_by_side,
                                   weights_digest)
from cnnray.replay.options import ReplayOptions
from cnnray.replay.plan import COMPRESS_TAG, plan_replay
from cnnray.tracking.compression import COMMAND_TAG, TAG, read_command
from cnnray.tracking.model_store import ResolvedVersion, resolve
from cnnray.tracking.replay_record import REPLAY_OF_TAG

SOURCE_TAG = f"{TAG}source"
# Recorded training keys a replay does not take over: where and under which name the original ran, and resuming.
NOT_REPLAYED = ("run.name", "run.address", "scaling.storage_path", "train.resume", "train.resume_from")
MAX_CHAIN = 16


@dataclass
class Step:
    """One compressed version of the chain, with the command that made it from its source."""

    version: ResolvedVersion
    source: str  # models:/NAME/VERSION of its source
    command: dict[str, Any]
    opts: CompressJobOptions | None = None  # set once the root is planned (the experiment is the root's)


def _command_of(version: ResolvedVersion) -> dict[str, Any]:
    try:
        command = read_command(version.tags)
    except ValueError as e:
        raise UserInputError(f"{version.label}: {e}") from None
    if command is None:
        raise UserInputError(f"{version.label} is a compressed version made before cnnray recorded the compression "
                             f"command (no {COMMAND_TAG} tag): what to run again on its replayed source is unknown. "
                             f"Compress {version.tags.get(SOURCE_TAG, 'its source')} again with this cnnray and replay "
                             "that version, or replay the source itself")
    return command


def chain_of(version: ResolvedVersion, tracking_uri: str) -> tuple[list[Step], ResolvedVersion]:
    """The compressed versions from `version` down to its first uncompressed source (top first), and that source;
    UserInputError (exit 2, before any training) for a version without a command or a source."""
    steps: list[Step] = []
    current = version
    while COMPRESS_TAG in current.tags:
        if len(steps) >= MAX_CHAIN or any(s.version.label == current.label for s in steps):
            raise UserInputError(f"{version.label}: its cnnray.compress.source tags do not end at an uncompressed "
                                 f"version within {MAX_CHAIN} steps")
        command = _command_of(current)
        source = current.tags.get(SOURCE_TAG)
        if not source:
            raise UserInputError(f"{current.label} is compressed but records no source ({SOURCE_TAG})")
        steps.append(Step(current, source, command))
        current = resolve(source, tracking_uri)
    return steps, current


def _compress_options(step: Step, replay: ReplayOptions, experiment: str) -> CompressJobOptions:
    """The recorded command, where the replay runs: its tracking store and experiment, its data.path, and for a
    method that trains, its scaling.* and run.address keys instead of the original's."""
    command = dict(step.command)
    command["training"] = [k for k in command.get("training", [])
                           if not str(k).split("=", 1)[0].startswith(NOT_REPLAYED)]
    keys = [f"tracking.uri={replay.tracking_uri}", f"tracking.experiment={experiment}"]
    if "data.path" in replay.keys:
        keys.append(f"data.path={replay.keys['data.path']}")
    opts = CompressJobOptions.from_command(step.source, command, tuple(keys))
    if opts.trains:
        where = [f"{k}={v}" for k, v in replay.keys.items() if k.startswith("scaling.") or k == "run.address"]
        opts = dataclasses.replace(opts, overrides=opts.overrides + tuple(where))
    opts.validate()
    return opts


def _held_out(clf: Any, opts: CompressJobOptions) -> tuple[Any, str]:
    """The data both compressed models are judged on (the command's) and its held-out split (val without one)."""
    # deferred (heavy import): pyarrow
    from cnnray.serve.data import data_config_for, describe

    data = data_config_for(clf.card, opts.keys.data)
    return data, "test" if getattr(describe(data), "num_test", 0) else "val"


def _judge_step(step: Step, original: Any, original_weights: dict[str, Any], outcome: Any, source: Any,
                alpha: float) -> Verdict:
    """The replayed compression against the version: weights digest, then the paired test on the held-out split."""
    # deferred (heavy import): torch, PIL, pyarrow
    from cnnray.classifier.classifier import ImageClassifier
    from cnnray.serve.run_eval import evaluate_models

    assert step.opts is not None
    cand = outcome.candidate
    t, e = step.version.tags, outcome.result["evidence"]
    orig_side: dict[str, Any] = {"val_acc": float(t[f"{TAG}acc"]) if f"{TAG}acc" in t else None,
                                 "weights_sha256": weights_digest(original_weights)}
    replay_side: dict[str, Any] = {"val_acc": e.get("acc"), "weights_sha256": weights_digest(cand.weights)}
    if f"{TAG}train_epochs" in t or "train_epochs" in e:
        orig_side["epochs"] = int(t[f"{TAG}train_epochs"]) if f"{TAG}train_epochs" in t else None
        replay_side["epochs"] = e.get("train_epochs")
    data, split = _held_out(source, step.opts)
    replay = ImageClassifier(cand.card, cand.weights)
    a, b = evaluate_models([original, replay], data, split)
    if a.n:
        for side, r in ((orig_side, a), (replay_side, b)):
            side.update({f"{split}_acc": r.metrics.get("acc"), f"{split}_loss": r.metrics.get("loss")})
    test = None
    if orig_side["weights_sha256"] != replay_side["weights_sha256"] and a.n:
        test = paired_test(a.labels, a.pred, b.pred, a.top5, b.top5, original.card.num_classes, split, alpha)
    if not outcome.passed:
        return Verdict(DIFFERENT, "the compress gate refused the replay: " + "; ".join(outcome.result["reasons"]),
                       side_by_side(orig_side, replay_side), test or {})
    return judge(orig_side, replay_side, test)


def _record(step: Step, verdict: Verdict, uri: str, registered: dict[str, Any]) -> None:
    """The verdict on the registered replay of the step (only with --register: otherwise it has no run)."""
    # deferred (heavy import): MLflow
    from cnnray.tracking.replay_record import record_replay

    version = resolve(f"models:/{registered['name']}/{registered['version']}", uri)
    with tempfile.TemporaryDirectory(prefix="cnnray-replay-") as tmp:
        doc = Path(tmp) / "replay.json"
        doc.write_text(json.dumps({"replay_of": step.version.label, **verdict.to_json()}, indent=1, default=str))
        record_replay(uri, str(version.run_id),
                      {"cnnray.replay_verdict": verdict.verdict, "cnnray.replay_reason": verdict.reason}, [doc],
                      (str(registered["name"]), str(registered["version"])))


def _kind(step: Step) -> str:
    return f"compressed version ({step.command['method']} of {step.source})"


def _not_replayed(step: Step, below: dict[str, Any]) -> dict[str, Any]:
    """The result of a step whose source replay did not finish (verdict None) or was refused (different)."""
    verdict = None if below.get("verdict") is None else DIFFERENT
    why = below.get("reason") if verdict else (below.get("error") or f"it ended {below.get('status')}")
    return {"replay_of": step.version.label, "kind": _kind(step), "original_run_id": step.version.run_id,
            "status": below.get("status"), "verdict": verdict, "different": verdict == DIFFERENT,
            "reason": f"its source {step.source} was not replayed to the end: {why}",
            "error": below.get("error"), "source_replay": below}


def _replay_step(step: Step, source: Any, below: dict[str, Any], replay: ReplayOptions,
                 on_line: Callable[[str], None]) -> tuple[dict[str, Any], Any]:
    """The step's command run on the replayed `source` (an ImageClassifier), then judged: (the result object, the
    replayed compressed classifier; None when its training run failed or the gate refused it)."""
    # deferred (heavy import): torch, PIL
    from cnnray.classifier.classifier import ImageClassifier
    from cnnray.compress.job.compress_command import compress_loaded
    from cnnray.compress.job.runs import CompressTrainingFailed
    from cnnray.replay.planned import load_original

    assert step.opts is not None
    v, uri, line = step.version, step.opts.keys.tracking_uri, command_line(step.source, step.command)
    on_line(f"replaying {v.label} ({_kind(step)}) on the replayed source: {line}")
    original, original_weights = load_original(v, uri)
    out: dict[str, Any] = {"replay_of": v.label, "kind": _kind(step), "original_run_id": v.run_id, "command": line}
    try:
        outcome = compress_loaded(step.opts, source, step.source, str(v.name), register=replay.register,
                                  tags={REPLAY_OF_TAG: v.label}, on_line=on_line)
    except CompressTrainingFailed as e:  # its run says FAILED/KILLED in MLflow; nothing registered
        out.update(status="FAILED", verdict=None, error=str(e), source_replay=below)
        return out, None
    r, e = outcome.result, outcome.result["evidence"]
    out.update(status="FINISHED", run_id=e.get("train_run_id"), version=r.get("version"),
               registered_name=r.get("name"), compress={"reasons": r["reasons"], "evidence": e})
    verdict = _judge_step(step, original, original_weights, outcome, source, replay.alpha)
    if r.get("version"):
        _record(step, verdict, uri, r)
    on_line(format_verdict(verdict, v.label))
    out.update(verdict.to_json(), different=verdict.verdict == DIFFERENT, source_replay=below)
    if not outcome.passed:
        return out, None
    return out, ImageClassifier(outcome.candidate.card, outcome.candidate.weights, channels_last=False)


def replay_compressed(opts: ReplayOptions, version: ResolvedVersion, on_line: Callable[[str], None] = print,
                      verbose: bool = False) -> dict[str, Any]:
    """Replay the compressed `version`: its source's replay, then its compression command; the result object
    (shaped as run_replay's, with `source_replay`: the source's own; verdict None when a step did not finish)."""
    # deferred (heavy import): torch, PIL
    from cnnray.classifier.classifier import ImageClassifier
    from cnnray.replay.planned import train_and_judge

    steps, root = chain_of(version, opts.tracking_uri)
    plan = plan_replay(dataclasses.replace(opts, model=root.label))  # every check before any training
    experiment = opts.keys.get("tracking.experiment") or plan.prep.cfg.tracking.experiment
    for step in steps:
        step.opts = _compress_options(step, opts, experiment)
    on_line(f"{version.label} is compressed: replaying {root.label}, then "
            + " then ".join(f"{s.command['method']} ({s.version.label})" for s in reversed(steps)))
    judged = train_and_judge(plan, dataclasses.replace(opts, model=root.label), on_line, verbose=verbose)
    below = judged.result
    source = (ImageClassifier(judged.original.card, judged.weights, channels_last=False)
              if judged.weights is not None else None)
    for step in reversed(steps):  # from the source up
        if source is None:
            below = _not_replayed(step, below)
        else:
            below, source = _replay_step(step, source, below, opts, on_line)
    return below
