"""Registry side of promotion and rollback: aliases moved compare-and-set under the server-side lock,
and each decision recorded once (version tags, a registered-model tag and a run with a JSON artifact)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cnnray.tracking.lock import registry_lock
from cnnray.tracking.model_store import client, registered_model
from cnnray.tracking.runs import TrackingContext, end_run, ensure_experiment, log_metrics, log_text

CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous-champion", "challenger"
SEQ_TAG = "cnnray.decision_seq"  # registered-model tag: decisions applied so far (incremented under the lock)
HISTORY_TAG = "cnnray.champion_history"  # registered-model tag: JSON list of champion versions, oldest first
LAST_TAG = "cnnray.last_decision"
LEDGER_PREFIX = "cnnray.alpha_ledger."  # registered-model tag per test fingerprint: its alpha budget (JSON)
HISTORY_MAX = 50
TAG_MAX = 4900  # MLflow's tag value limit is 5000 characters


@dataclass
class Applied:
    """What happened under the lock: applied, or stale (the champion moved since the evidence was gathered)."""

    applied: bool
    champion_now: str | None
    record: dict[str, Any]
    tags_now: dict[str, str] | None = None  # the registered model's tags under the lock (for a stale retry)


def ledger_tag(fingerprint: str) -> str:
    """The registered-model tag that holds the alpha ledger of one test set."""
    return f"{LEDGER_PREFIX}{fingerprint[:40]}"


def model_tags(tracking_uri: str, name: str) -> dict[str, str]:
    """The registered model's tags (UserInputError when the model does not exist)."""
    return dict(getattr(registered_model(tracking_uri, name), "tags", {}) or {})


def aliases(tracking_uri: str, name: str) -> dict[str, str]:
    """alias -> version of a registered model (UserInputError when the model does not exist)."""
    return {a: str(v) for a, v in (getattr(registered_model(tracking_uri, name), "aliases", {}) or {}).items()}


def _history(tags: dict[str, str]) -> list[str]:
    try:
        return [str(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]
    except json.JSONDecodeError:
        return []


def _record_tags(c, name: str, version: str, record: dict[str, Any]) -> None:
    comparison = record.get("comparison") or {}
    tags = {
        "cnnray.decision": record["outcome"], "cnnray.decision_id": record["decision_id"],
        "cnnray.decision_seq": str(record["seq"]), "cnnray.decision_time": record["time"],
        "cnnray.decision_action": record["action"], "cnnray.decision_reason": record["reason"][:TAG_MAX],
        "cnnray.decision_metric": record.get("metric", ""),
        "cnnray.decision_champion_version": str(record.get("champion_version") or ""),
        "cnnray.decision_fingerprint": str((record.get("data") or {}).get("fingerprint", "")),
        "cnnray.decision_split": str((record.get("data") or {}).get("split", "")),
    }
    spend = record.get("alpha") or {}
    if spend:
        tags["cnnray.decision_level"] = f"{spend['level']:.6g}"
        if spend.get("decision"):
            tags["cnnray.decision_test_set_decision"] = f"{spend['decision']}/{spend['planned']}"
            tags["cnnray.decision_test_fingerprint"] = str(spend.get("fingerprint", ""))
    for flag in ("selection_split", "unverified_champion"):
        if record.get(flag):
            tags[f"cnnray.decision_{flag}"] = "true"
    for k in ("candidate", "champion", "delta", "ci_low", "ci_high", "p_value", "n"):
        if k in comparison:
            tags[f"cnnray.decision_{k}"] = str(comparison[k])
    for k, v in tags.items():
        c.set_model_version_tag(name, version, k, v)
    c.set_registered_model_tag(name, LAST_TAG, json.dumps(_summary(record))[:TAG_MAX])


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("seq", "decision_id", "action", "outcome", "candidate_version", "champion_version", "metric", "time")
    return {k: record.get(k) for k in keys}


def apply_decision(tracking_uri: str, name: str, candidate: str, champion_seen: str | None, promote: bool,
                   record: dict[str, Any], tag_cas: dict[str, tuple[str | None, str]] | None = None) -> Applied:
    """Compare-and-set: under the lock, move `champion` to `candidate` (old one -> `previous-champion`)
    only if `champion` is still `champion_seen` and every tag of `tag_cas` (key -> (expected, new)) still
    holds its expected value (None: absent); then write the new tag values (the alpha ledger) and record
    the decision, all under the same lock, so concurrent decisions are neither lost nor counted twice."""
    c = client(tracking_uri)
    with registry_lock(tracking_uri, name):
        rm = c.get_registered_model(name)
        now = {a: str(v) for a, v in (rm.aliases or {}).items()}
        champion_now = now.get(CHAMPION)
        tags = dict(rm.tags or {})
        cas = tag_cas or {}
        if champion_now != champion_seen or any(tags.get(k) != want for k, (want, _) in cas.items()):
            return Applied(False, champion_now, record, tags)
        for k, (_, new) in cas.items():
            c.set_registered_model_tag(name, k, new)
        seq = int(tags.get(SEQ_TAG, "0")) + 1
        record = {**record, "seq": seq, "aliases_before": now}
        after = dict(now)
        if promote:
            if champion_now is not None:
                c.set_registered_model_alias(name, PREVIOUS, champion_now)
                after[PREVIOUS] = champion_now
            c.set_registered_model_alias(name, CHAMPION, candidate)
            after[CHAMPION] = candidate
            history = (_history(tags) or ([champion_now] if champion_now else [])) + [candidate]
            c.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-HISTORY_MAX:]))
        record["aliases_after"] = after
        c.set_registered_model_tag(name, SEQ_TAG, str(seq))
        _record_tags(c, name, candidate, record)
        return Applied(True, after.get(CHAMPION), record)


def apply_rollback(tracking_uri: str, name: str, record: dict[str, Any]) -> dict[str, Any] | None:
    """Under the lock: `champion` back to `previous-champion` (None when there is none); the one before
    that, from the champion history, becomes the new `previous-champion`."""
    c = client(tracking_uri)
    with registry_lock(tracking_uri, name):
        rm = c.get_registered_model(name)
        now = {a: str(v) for a, v in (rm.aliases or {}).items()}
        prev, current = now.get(PREVIOUS), now.get(CHAMPION)
        if prev is None:
            return None
        tags = dict(rm.tags or {})
        history = _history(tags)
        # Drop the current champion from the end of the history; what precedes `prev` is the next fallback.
        if history and history[-1] == current:
            history = history[:-1]
        if not history or history[-1] != prev:
            history = history + [prev]
        before_prev = history[-2] if len(history) >= 2 else None
        c.set_registered_model_alias(name, CHAMPION, prev)
        if before_prev is not None:
            c.set_registered_model_alias(name, PREVIOUS, before_prev)
        else:
            c.delete_registered_model_alias(name, PREVIOUS)
        c.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-HISTORY_MAX:]))
        seq = int(tags.get(SEQ_TAG, "0")) + 1
        after = {**{k: v for k, v in now.items() if k != PREVIOUS}, CHAMPION: prev}
        if before_prev is not None:
            after[PREVIOUS] = before_prev
        record = {**record, "seq": seq, "aliases_before": now, "aliases_after": after,
                  "candidate_version": prev, "champion_version": current,
                  "reason": f"rollback: champion v{current} -> v{prev}"}
        c.set_registered_model_tag(name, SEQ_TAG, str(seq))
        _record_tags(c, name, prev, record)
        return record


def log_decision_run(tracking_uri: str, experiment: str, name: str, record: dict[str, Any],
                     metrics: dict[str, float] | None = None) -> str:
    """A FINISHED run holding the decision as `promotion_decision.json` (and its metrics); returns its id."""
    c = client(tracking_uri)
    exp_id = ensure_experiment(tracking_uri, experiment)
    run_name = f"{record['action']}-{name}-v{record.get('candidate_version')}"
    run = c.create_run(exp_id, run_name=run_name, tags={
        "mlflow.runName": run_name, "cnnray.kind": record["action"], "cnnray.model_name": name,
        "cnnray.model_version": str(record.get("candidate_version")), "cnnray.decision_id": record["decision_id"],
        "cnnray.decision": record["outcome"], "cnnray.decision_seq": str(record.get("seq", ""))})
    ctx = TrackingContext(tracking_uri, exp_id, run.info.run_id)
    try:
        if metrics:
            log_metrics(ctx, metrics)
        log_text(ctx, json.dumps(record, indent=2, sort_keys=True, default=str), "promotion_decision.json")
    except BaseException:
        end_run(ctx, "FAILED")
        raise
    end_run(ctx, "FINISHED")
    if record.get("candidate_version"):
        c.set_model_version_tag(name, str(record["candidate_version"]), "cnnray.decision_run_id", run.info.run_id)
    return run.info.run_id
