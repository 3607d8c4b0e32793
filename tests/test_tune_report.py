"""Trial outcomes, the trials table and the search plots (plain data, no Ray cluster)."""

from __future__ import annotations

import csv
import io

from cnnray.tune.report import (best_so_far, format_tune_summary, plot_best_so_far, plot_metric_vs_params,
                                trial_rows, trials_csv, trials_table)
from cnnray.tune.results import TrialOutcome, best_of, best_outcome, trial_status
from cnnray.tune.space import load_space


def _outcome(tid, status, best, history, **params):
    return TrialOutcome(trial_id=tid, status=status, params=params, best=best, epochs_run=len(history),
                        reports=len(history), run_id=None, checkpoint_path=f"/ckpt/{tid}", history=history)


OUTCOMES = [
    _outcome("a", "finished", 0.9, [(1.0, 0.5), (3.0, 0.9)], **{"schedule.name": "cosine", "optim.lr": 1e-3,
                                                                  "schedule.warmup_epochs": 0.5}),
    _outcome("b", "stopped_early", 0.4, [(2.0, 0.4)], **{"schedule.name": "onecycle", "optim.lr": 5e-3}),
    _outcome("c", "failed", None, [], **{"schedule.name": "cosine", "optim.lr": 2e-4}),
]


def test_trial_status_from_tune_status_and_last_report():
    assert trial_status("TERMINATED", {"train_done": True}) == "finished"
    assert trial_status("TERMINATED", {"train_done": False}) == "stopped_early"  # a scheduler stopped it
    assert trial_status("ERROR", {"train_done": True}) == "failed"
    for s in ("RUNNING", "PAUSED", "PENDING"):
        assert trial_status(s, {}) == "unfinished"


def test_best_values_and_best_trial():
    assert best_of([0.2, float("nan"), 0.7, float("inf")], "max") == 0.7
    assert best_of([0.2, 0.7], "min") == 0.2 and best_of([], "max") is None
    assert best_outcome(OUTCOMES, "max").trial_id == "a"
    assert best_outcome(OUTCOMES, "min").trial_id == "b"
    assert best_outcome([OUTCOMES[2]], "max") is None  # a failed trial is never registered


def test_best_so_far_is_monotone_in_time_order():
    assert best_so_far(OUTCOMES, "max") == [(1, 0.5), (2, 0.5), (3, 0.9)]
    assert best_so_far(OUTCOMES, "min") == [(1, 0.5), (2, 0.4), (3, 0.4)]


def test_trials_table_and_csv_hold_every_trial_and_key():
    keys = ["optim.lr", "schedule.name", "schedule.warmup_epochs"]
    rows = trial_rows(OUTCOMES, keys, "val_acc")
    parsed = list(csv.DictReader(io.StringIO(trials_csv(rows))))
    assert [r["trial_id"] for r in parsed] == ["a", "b", "c"]
    assert parsed[0]["best_val_acc"] == "0.9" and parsed[2]["best_val_acc"] == ""
    assert parsed[1]["schedule.warmup_epochs"] == ""  # inactive for onecycle
    table = trials_table(rows).splitlines()
    assert table[0].split()[:4] == ["trial_id", "status", "best_val_acc", "epochs_run"] and len(table) == 5
    text = format_tune_summary({"name": "s", "status": "KILLED", "metric": "val_acc", "num_trials": 3})
    assert "cnnray tune --resume s" in text


def test_plots_are_written(tmp_path):
    space = load_space("default")
    assert plot_best_so_far(OUTCOMES, "val_acc", "max", tmp_path / "b.png").stat().st_size > 1000
    assert plot_metric_vs_params(OUTCOMES, space, "val_acc", tmp_path / "m.png").stat().st_size > 1000
