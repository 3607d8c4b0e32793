"""The promotion gate: evaluate candidate and champion on the same frozen data, decide, move aliases
compare-and-set, record the evidence. Registry access goes through cnnray.tracking (MLflow lives there)."""

from __future__ import annotations

import getpass
import socket
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from cnnray import __version__
from cnnray.errors import BudgetSpentError, UserInputError
from cnnray.promote import test_set
from cnnray.promote.options import PromoteOptions
from cnnray.promote.rule import ALREADY, Decision, decide_first, judge
from cnnray.promote.spending import DEFAULT_ALPHA, Ledger, open_ledger
from cnnray.serve.online.notify import notify_followers
from cnnray.tracking import model_store

__all__ = ["PromoteOptions", "run_promote", "run_rollback"]

MAX_ATTEMPTS = 5  # re-evaluations when another promotion moved `champion` (or spent alpha) meanwhile


def _who() -> dict[str, str]:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        user = "unknown"
    return {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "user": user,
            "host": socket.gethostname(), "cnnray_version": __version__}


@dataclass
class _Budget:
    """The test set's ledger as read (None: no decision on it yet) and the one this decision opens."""

    stored_json: str | None
    ledger: Ledger | None  # None: not judged on test (no spending)

    @property
    def tag(self) -> str:
        from cnnray.tracking.promotion import ledger_tag

        assert self.ledger is not None
        return ledger_tag(self.ledger.fingerprint)


def _read_budget(opt: PromoteOptions, tags: dict[str, str], test_fp: str | None) -> _Budget:
    """The ledger of the test set; UserInputError for a budget that disagrees, BudgetSpentError when spent."""
    from cnnray.tracking.promotion import ledger_tag

    if test_fp is None:
        return _Budget(None, None)
    raw = tags.get(ledger_tag(test_fp))
    try:
        stored = Ledger.from_json(raw) if raw else None
        ledger = open_ledger(stored, test_fp, opt.alpha, opt.decisions)
    except (ValueError, KeyError) as e:
        raise UserInputError(f"the alpha budget of test set {test_fp[:12]}: {e}") from None
    if ledger.exhausted:
        raise BudgetSpentError(
            f"the false-promotion budget of test set {test_fp[:12]} for {opt.name!r} is spent: {ledger.decisions} "
            f"decisions used alpha {ledger.spent:.4g} of {ledger.alpha:.4g}; another look at the same test images "
            "would break the promised rate. Make a new test set (new images, or another data.split_seed / "
            "data.test_fraction, which gives a new fingerprint and a fresh budget) and train against it")
    return _Budget(raw, ledger)


def run_promote(opt: PromoteOptions, on_line: Callable[[str], None] = print) -> dict[str, Any]:
    """Evaluate, decide and (unless dry run) apply and record; returns the decision record."""
    # deferred (heavy import): torch, PIL
    from cnnray.serve.data import check_classes, data_config_for, describe
    from cnnray.tracking.promotion import CHAMPION, aliases, apply_decision, log_decision_run, model_tags

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
    test_fp = None
    if opt.held_out:
        test_fp = test_set.check_test_split(info, data.source)
        test_set.verify_candidate(cand_v.label, cand_v.tags, cand.card, test_fp)
    else:
        on_line(f"judging on the selection split {opt.split} (--allow-selection-split): the decision is tagged so")
    cache: dict[str, Any] = {}
    champion_seen = aliases(uri, opt.name).get(CHAMPION)
    budget = _read_budget(opt, model_tags(uri, opt.name), test_fp)
    for attempt in range(MAX_ATTEMPTS):
        record = _evidence(opt, cand_v.version, champion_seen, cand, data, info, test_fp, budget, cache, on_line)
        record.update(_who(), decision_id=uuid.uuid4().hex, action="promote", registered_model=opt.name,
                      candidate_uri=cand_v.label, dry_run=opt.dry_run, attempt=attempt + 1)
        if opt.dry_run:
            return record
        cas = None
        if record.get("alpha", {}).get("decision") and budget.ledger is not None:
            spent = budget.ledger.after_decision(record["alpha"]["level"])
            cas = {budget.tag: (budget.stored_json, spent.to_json())}
        applied = apply_decision(uri, opt.name, str(cand_v.version), champion_seen, record["promote"], record, cas)
        if applied.applied:
            record = applied.record
            metrics = {k: v for k, v in (record.get("comparison") or {}).items()
                       if k in ("candidate", "champion", "delta", "ci_low", "ci_high", "p_value", "n")
                       and isinstance(v, (int, float))}
            record["run_id"] = log_decision_run(uri, opt.experiment, opt.name, record, metrics)
            if record.get("promote"):
                record["notified"] = notify_followers(opt.name, on_line)
            return record
        if applied.champion_now != champion_seen:
            on_line(f"champion moved to v{applied.champion_now} while evaluating; re-evaluating against it")
        else:
            on_line("another decision spent alpha on this test set meanwhile; deciding again at the new level")
        champion_seen = applied.champion_now
        budget = _read_budget(opt, applied.tags_now or {}, test_fp)
    raise RuntimeError(f"champion of {opt.name!r} kept moving; gave up after {MAX_ATTEMPTS} evaluations")


def _evaluate(opt: PromoteOptions, keys: list[str], models: list[Any], data: Any, cache: dict[str, Any],
              on_line: Callable[[str], None]) -> None:
    """Evaluate the models not yet in `cache` (keyed by version) on opt.split, in one pass."""
    # deferred (heavy import): torch, PIL
    from cnnray.serve.run_eval import evaluate_models

    todo = [(k, m) for k, m in zip(keys, models) if k not in cache]
    if todo:
        on_line(f"evaluating {', '.join('v' + k for k, _ in todo)} on {data.source} {opt.split} ...")
        for (k, _), res in zip(todo, evaluate_models([m for _, m in todo], data, opt.split)):
            cache[k] = res


def _level(opt: PromoteOptions, budget: _Budget) -> dict[str, Any]:
    """The one-sided level of this decision and what it spends."""
    if budget.ledger is None:  # a selection split: the plain level, spending nothing (and tagged)
        return {"level": DEFAULT_ALPHA if opt.alpha is None else opt.alpha, "decision": None}
    led = budget.ledger
    level = led.next_level()
    after = led.after_decision(level)
    return {"level": level, "decision": after.decisions, "planned": led.planned, "alpha": led.alpha,
            "fingerprint": led.fingerprint, "spent_after": after.spent, "remaining_after": after.remaining}


def _evidence(opt: PromoteOptions, cand_version: str, champion: str | None, cand: Any, data: Any, info: Any,
              test_fp: str | None, budget: _Budget, cache: dict[str, Any],
              on_line: Callable[[str], None]) -> dict[str, Any]:
    """Evaluate what is needed and apply the rule (no registry writes)."""
    # deferred (heavy import): torch, PIL
    from cnnray.serve.data import check_classes

    record: dict[str, Any] = {"candidate_version": cand_version, "champion_version": champion, "metric": opt.metric,
                              "min_delta": opt.min_delta, "floor": opt.floor,
                              "selection_split": not opt.held_out,
                              "data": {"source": data.source, "path": data.path, "split": opt.split,
                                       "fingerprint": info.fingerprint, "test_fingerprint": test_fp}}
    if champion == cand_version:
        d = Decision(ALREADY, f"v{cand_version} is already the champion")
        return {**record, "outcome": d.outcome, "reason": d.reason, "promote": False}
    models, keys = [cand], [cand_version]
    if champion is not None:
        champ_v = model_store.resolve(f"models:/{opt.name}/{champion}", opt.tracking_uri)
        champ, _ = model_store.load_version(champ_v.label, opt.tracking_uri)
        check_classes(champ.card, tuple(info.class_names), f"the evaluation data (champion v{champion})")
        if test_fp is not None and test_set.verify_champion(champ_v.label, champ_v.tags, champ.card, test_fp,
                                                            opt.allow_unverified_champion):
            record["unverified_champion"] = True
            on_line(f"could not verify the test set of champion v{champion} (it records none): comparing both on "
                    f"the candidate's test split (--allow-unverified-champion)")
        models.append(champ)
        keys.append(champion)
    _evaluate(opt, keys, models, data, cache, on_line)
    rc = cache[cand_version]
    if opt.held_out:
        test_set.check_class_counts(rc.labels, tuple(info.class_names))
    record["data"]["n"] = rc.n
    record["candidate_metrics"] = rc.metrics
    if champion is None:  # nothing to be falsely better than: no test of a difference, nothing spent
        d = decide_first(rc.metric(opt.metric), opt.metric, opt.floor)
        record["comparison"] = {"candidate": rc.metric(opt.metric), "n": rc.n}
        return {**record, "outcome": d.outcome, "reason": d.reason, "promote": d.promote}
    rh = cache[champion]
    if rh.n != rc.n or not (rh.labels == rc.labels).all():
        raise RuntimeError("candidate and champion were not evaluated on the same examples")
    spend = _level(opt, budget)
    cmp, d = judge(opt.metric, rc.labels, rc.pred, rh.pred, rc.top5, rh.top5, cand.card.num_classes,
                   level=spend["level"], min_delta=opt.min_delta, floor=opt.floor, resamples=opt.resamples,
                   seed=opt.seed)
    record["alpha"] = spend
    record["confidence"] = cmp.confidence
    record["champion_metrics"] = rh.metrics
    record["comparison"] = {**asdict(cmp), "discordant": list(cmp.discordant)}
    reason = d.reason
    if spend.get("decision"):
        reason += (f"; decision {spend['decision']} of {spend['planned']} on test set {test_fp[:12]}, alpha left "
                   f"{spend['remaining_after']:.4g} of {spend['alpha']:.4g}")
    return {**record, "outcome": d.outcome, "reason": reason, "promote": d.promote}


def run_rollback(tracking_uri: str, name: str, experiment: str = "cnnray",
                 on_line: Callable[[str], None] = print) -> dict[str, Any]:
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
    done["notified"] = notify_followers(name, on_line)
    return done
