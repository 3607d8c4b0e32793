"""The promotion gate: evaluate candidate and champion on the same frozen data, decide, move aliases
compare-and-set, record the evidence. Registry access goes through cnnray.tracking (MLflow lives there)."""

from __future__ import annotations

import getpass
import socket
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from cnnray import __version__
from cnnray.errors import UserInputError
from cnnray.promote.rule import ALREADY, Decision, decide, decide_first
from cnnray.promote.stats import METRICS, compare
from cnnray.tracking import model_store

MAX_ATTEMPTS = 5  # re-evaluations when another promotion moved `champion` meanwhile


@dataclass
class PromoteOptions:
    """The command's options, validated without MLflow or Ray."""

    tracking_uri: str
    name: str = "cnnray"
    candidate: str = "challenger"  # an alias or a version number
    metric: str = "accuracy"
    min_delta: float = 0.0
    confidence: float = 0.95
    floor: float = 0.0
    data_overrides: list[str] = field(default_factory=list)
    split: str = "val"
    dry_run: bool = False
    experiment: str = "cnnray"
    resamples: int = 2000
    seed: int = 0

    def validate(self) -> None:
        """UserInputError naming the option when a value is out of range."""
        if self.metric not in METRICS:
            raise UserInputError(f"--metric {self.metric!r} is not valid; valid metrics: {', '.join(METRICS)}")
        if not 0.5 <= self.confidence < 1:
            raise UserInputError(f"--confidence must lie in [0.5, 1), got {self.confidence}")
        if not 0 <= self.floor <= 1:
            raise UserInputError(f"--floor must lie in [0, 1], got {self.floor}")
        if not -1 < self.min_delta < 1:
            raise UserInputError(f"--min-delta must lie in (-1, 1), got {self.min_delta}")
        if self.resamples < 100:
            raise UserInputError(f"--resamples must be at least 100, got {self.resamples}")

    @property
    def candidate_uri(self) -> str:
        """models:/NAME/VERSION for a number, models:/NAME@ALIAS otherwise."""
        c = self.candidate
        return f"models:/{self.name}/{c}" if c.isdigit() else f"models:/{self.name}@{c}"


def _who() -> dict[str, str]:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        user = "unknown"
    return {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "user": user,
            "host": socket.gethostname(), "cnnray_version": __version__}


def run_promote(opt: PromoteOptions, on_line: Callable[[str], None] = print) -> dict[str, Any]:
    """Evaluate, decide and (unless dry run) apply and record; returns the decision record."""
    # deferred (heavy import): torch, PIL
    from cnnray.serve.data import check_classes, data_config_for, describe
    from cnnray.tracking.promotion import CHAMPION, aliases, apply_decision, log_decision_run

    opt.validate()
    uri = opt.tracking_uri
    cand_v = model_store.resolve(opt.candidate_uri, uri)
    cand, _ = model_store.load_version(f"models:/{opt.name}/{cand_v.version}", uri)
    data = data_config_for(cand.card, opt.data_overrides)
    info = describe(data)
    trained_on = cand_v.tags.get("cnnray.data_fingerprint") or cand.card.training.get("data_fingerprint")
    if trained_on and info.fingerprint != trained_on:
        raise UserInputError(
            f"cannot compare: the evaluation data ({data.source}, fingerprint {info.fingerprint[:12]}) is not the data "
            f"{cand_v.label} was trained against (fingerprint {trained_on[:12]}); pass the data.* keys of its "
            "training data, or evaluate with `cnnray evaluate` instead")
    check_classes(cand.card, tuple(info.class_names), f"the evaluation data ({data.source})")
    cache: dict[str, Any] = {}
    champion_seen = aliases(uri, opt.name).get(CHAMPION)
    for attempt in range(MAX_ATTEMPTS):
        record = _evidence(opt, cand_v.version, champion_seen, cand, data, info, cache, on_line)
        record.update(_who(), decision_id=uuid.uuid4().hex, action="promote", registered_model=opt.name,
                      candidate_uri=cand_v.label, dry_run=opt.dry_run, attempt=attempt + 1)
        if opt.dry_run:
            return record
        applied = apply_decision(uri, opt.name, str(cand_v.version), champion_seen, record["promote"], record)
        if applied.applied:
            record = applied.record
            metrics = {k: v for k, v in (record.get("comparison") or {}).items()
                       if k in ("candidate", "champion", "delta", "ci_low", "ci_high", "p_value", "n")
                       and isinstance(v, (int, float))}
            record["run_id"] = log_decision_run(uri, opt.experiment, opt.name, record, metrics)
            return record
        on_line(f"champion moved to v{applied.champion_now} while evaluating; re-evaluating against it")
        champion_seen = applied.champion_now
    raise RuntimeError(f"champion of {opt.name!r} kept moving; gave up after {MAX_ATTEMPTS} evaluations")


def _evidence(opt: PromoteOptions, cand_version: str, champion: str | None, cand: Any, data: Any, info: Any,
              cache: dict[str, Any], on_line: Callable[[str], None]) -> dict[str, Any]:
    """Evaluate what is needed and apply the rule (no registry writes)."""
    # deferred (heavy import): torch, PIL
    from cnnray.serve.data import check_classes
    from cnnray.serve.run_eval import evaluate_models

    record: dict[str, Any] = {"candidate_version": cand_version, "champion_version": champion, "metric": opt.metric,
                              "min_delta": opt.min_delta, "confidence": opt.confidence, "floor": opt.floor,
                              "data": {"source": data.source, "path": data.path, "split": opt.split,
                                       "fingerprint": info.fingerprint}}
    if champion == cand_version:
        d = Decision(ALREADY, f"v{cand_version} is already the champion")
        return {**record, "outcome": d.outcome, "reason": d.reason, "promote": False}
    models, keys = [cand], [cand_version]
    if champion is not None:
        champ, _ = model_store.load_version(f"models:/{opt.name}/{champion}", opt.tracking_uri)
        check_classes(champ.card, tuple(info.class_names), f"the evaluation data (champion v{champion})")
        models.append(champ)
        keys.append(champion)
    todo = [(k, m) for k, m in zip(keys, models) if k not in cache]
    if todo:
        on_line(f"evaluating {', '.join('v' + k for k, _ in todo)} on {data.source} {opt.split} ...")
        for (k, _), res in zip(todo, evaluate_models([m for _, m in todo], data, opt.split)):
            cache[k] = res
    rc = cache[cand_version]
    record["data"]["n"] = rc.n
    record["candidate_metrics"] = rc.metrics
    if champion is None:
        d = decide_first(rc.metric(opt.metric), opt.metric, opt.floor)
        record["comparison"] = {"candidate": rc.metric(opt.metric), "n": rc.n}
    else:
        rh = cache[champion]
        if rh.n != rc.n or not (rh.labels == rc.labels).all():
            raise RuntimeError("candidate and champion were not evaluated on the same examples")
        cmp = compare(opt.metric, rc.labels, rc.pred, rh.pred, rc.top5, rh.top5, cand.card.num_classes,
                      confidence=opt.confidence, resamples=opt.resamples, seed=opt.seed)
        d = decide(cmp, opt.min_delta, opt.floor)
        record["champion_metrics"] = rh.metrics
        record["comparison"] = {**asdict(cmp), "discordant": list(cmp.discordant)}
    return {**record, "outcome": d.outcome, "reason": d.reason, "promote": d.promote}


def run_rollback(tracking_uri: str, name: str, experiment: str = "cnnray") -> dict[str, Any]:
    """`champion` back to `previous-champion`, recorded like a promotion (UserInputError when there is none)."""
    # deferred (heavy import): torch, PIL
    from cnnray.tracking.promotion import PREVIOUS, aliases, apply_rollback, log_decision_run

    if PREVIOUS not in aliases(tracking_uri, name):
        raise UserInputError(f"registered model {name!r} has no alias {PREVIOUS!r}: nothing to roll back to")
    record = {**_who(), "decision_id": uuid.uuid4().hex, "action": "rollback", "outcome": "rolled-back",
              "registered_model": name}
    done = apply_rollback(tracking_uri, name, record)
    if done is None:
        raise UserInputError(f"registered model {name!r} lost its {PREVIOUS!r} alias meanwhile: nothing to roll back to")
    done["run_id"] = log_decision_run(tracking_uri, experiment, name, done)
    return done
