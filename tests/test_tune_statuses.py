"""Trial statuses come from Tune's public callbacks and are persisted beside Tune's state (no Ray internals)."""

from __future__ import annotations

from types import SimpleNamespace

from cnnray.tune.plan import TRIAL_ENDS_FILE, TRIALS_FILE, SearchIdentity, load_trial_statuses, save_trial_status
from cnnray.tune.results import result_trial_id, trial_status
from cnnray.tune.lifecycle import TrialLifecycle


def test_statuses_round_trip_and_survive_a_corrupt_file(tmp_path):
    ident = SearchIdentity("s", str(tmp_path), str(tmp_path / "s"), resume=False)
    assert load_trial_statuses(ident) == {}
    save_trial_status(ident, "a_00000", "TERMINATED")
    save_trial_status(ident, "a_00001", "ERROR")
    save_trial_status(ident, "a_00001", "TERMINATED")  # retried on --resume: the last end wins
    assert load_trial_statuses(ident) == {"a_00000": "TERMINATED", "a_00001": "TERMINATED"}
    log = tmp_path / "s" / TRIAL_ENDS_FILE
    assert [p.name for p in (tmp_path / "s").iterdir()] == [TRIAL_ENDS_FILE]  # appended to: no temporary file
    assert len(log.read_text().splitlines()) == 3  # one line per end, nothing rewritten
    log.write_text(log.read_text() + '{"trial_id": "a_00002", "sta')  # the last line cut by a crash
    assert load_trial_statuses(ident) == {"a_00000": "TERMINATED", "a_00001": "TERMINATED"}
    # A search started by an earlier cnnray (the whole-file JSON) still resumes with its statuses.
    (tmp_path / "s" / TRIALS_FILE).write_text('{"a_00009": "ERROR"}')
    assert load_trial_statuses(ident)["a_00009"] == "ERROR"
    (tmp_path / "s" / TRIALS_FILE).write_text('{"a_00009": "ERR')  # truncated: counts as none
    assert "a_00009" not in load_trial_statuses(ident)


def _trial(trial_id, last):
    """A stand-in for Tune's Trial: what the lifecycle reads and slims."""
    stats = {k: {"max": v, "min": v} for k, v in last.items() if k.startswith("val_")}
    meta = SimpleNamespace(last_result=dict(last), metric_analysis=stats, metric_n_steps={k: {} for k in stats},
                           invalidate_cache=lambda: None)
    return SimpleNamespace(trial_id=trial_id, last_result=last, run_metadata=meta, metric_analysis=stats,
                           config={}, error_file=None)


def test_lifecycle_records_and_persists_each_ended_trial(tmp_path):
    ident = SearchIdentity("s", str(tmp_path), str(tmp_path / "s"), resume=False)
    lines: list[str] = []
    cb = TrialLifecycle("s", "val_acc", 3, None, lines.append,
                        persist=lambda trial_id, status: save_trial_status(ident, trial_id, status))
    done = _trial("t_00000", {"train_done": True, "epochs_done": 3, "val_acc": 0.5, "val_f1_macro": 0.4})
    stopped = _trial("t_00001", {"epochs_done": 1})
    broken = _trial("t_00002", {})
    for t in (done, stopped, broken):
        cb.on_trial_start(0, [], t)
    cb.on_trial_complete(0, [], done)
    cb.on_trial_complete(0, [], stopped)
    cb.on_trial_error(0, [], broken)
    saved = load_trial_statuses(ident)
    assert not cb.running and cb.overhead()["trials"] == 3  # ended trials leave numbers, not entries
    # What Tune keeps of an ended trial shrinks to what is read later: the search metric, the outcome's keys.
    assert set(done.run_metadata.last_result) == {"train_done", "epochs_done", "val_acc"}
    assert set(done.run_metadata.metric_analysis) == {"val_acc"} == set(done.run_metadata.metric_n_steps)
    assert saved == {"t_00000": "TERMINATED", "t_00001": "TERMINATED", "t_00002": "ERROR"}
    assert [trial_status(saved[t.trial_id], t.last_result) for t in (done, stopped, broken)] == [
        "finished", "stopped_early", "failed"]
    assert any("stopped by the scheduler after epoch 1" in s for s in lines) and any("FAILED" in s for s in lines)


def test_a_result_belongs_to_the_trial_its_folder_names():
    # A PBT clone's last metrics can carry the source trial's id; the folder is named by the trial itself.
    r = SimpleNamespace(path="/x/search/t_00003", metrics={"trial_id": "t_00001"})
    assert result_trial_id(r) == "t_00003"
    assert trial_status("RUNNING", {}) == "unfinished"


def _outcome(trial_id, status, best=None, checkpoint=None, error=None):
    from cnnray.tune.results import TrialOutcome

    return TrialOutcome(trial_id, status, {}, best, 1 if best is not None else 0, 1 if best is not None else 0,
                        None, checkpoint, error=error)


def test_search_status_when_the_time_budget_ends_it():
    from cnnray.tune.results import best_outcome, search_status

    cut = [_outcome("a", "unfinished", 0.8, "/ckpt/a"), _outcome("b", "unfinished", 0.9, "/ckpt/b")]
    # Every trial cut short by the budget, but with checkpointed epochs: FINISHED, and the best is ranked.
    assert search_status(cut, signalled=False, budget_hit=True) == ("FINISHED", None)
    assert best_outcome(cut, "max").trial_id == "b"
    # The same trials without the budget were interrupted.
    assert search_status(cut, signalled=False, budget_hit=False) == ("KILLED", "interrupted")
    # A budget that ran out before any epoch was reported leaves nothing to rank.
    none = [_outcome("a", "unfinished"), _outcome("b", "unfinished")]
    status, error = search_status(none, signalled=False, budget_hit=True)
    assert status == "FAILED" and "before any trial finished an epoch" in error
    failed = [_outcome("a", "failed", error="boom"), _outcome("b", "unfinished")]
    assert search_status(failed, signalled=False, budget_hit=True) == ("FAILED", "every trial failed: ?; boom")
    assert search_status([_outcome("a", "signal", 0.8, "/c")], signalled=True, budget_hit=True)[0] == "KILLED"
