"""Trial outcomes, the trials table and the search plots (plain data, no Ray cluster)."""

from __future__ import annotations

import csv
import io
import random

import numpy as np
import pytest
from matplotlib.image import imread

from cnnray.config import load_config
from cnnray.errors import ConfigError
from cnnray.tune.trial_tables import (best_so_far, format_tune_summary, plot_best_so_far, plot_metric_vs_params,
                                plot_top_trials, ranked, top_trials, trial_rows, trials_csv, trials_table)
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


def _not_blank(path):
    pixels = imread(path)
    return pixels.ndim == 3 and float(np.var(pixels[..., :3])) > 0


def test_plots_are_written(tmp_path):
    space = load_space("default")
    assert _not_blank(plot_best_so_far(OUTCOMES, "val_acc", "max", tmp_path / "b.png"))
    assert _not_blank(plot_metric_vs_params(OUTCOMES, space, "val_acc", tmp_path / "m.png"))
    assert _not_blank(plot_top_trials(OUTCOMES, "val_acc", "max", 20, tmp_path / "t.png"))
    assert _not_blank(plot_top_trials([OUTCOMES[2]], "val_acc", "max", 20, tmp_path / "none.png"))  # no metric


# --- A search of 500 trials: the table and the plots stay readable.

N_TRIALS, TOP = 500, 20


def _many(n=N_TRIALS, failed_every=25):
    """n trials over the default space, every `failed_every`-th without a metric, in random metric order."""
    rng = random.Random(0)
    out = []
    for i in range(n):
        best = None if i % failed_every == 7 else round(rng.uniform(0.1, 0.95), 6)
        params = {"optim.lr": 10 ** rng.uniform(-3.3, -2), "schedule.name": rng.choice(["cosine", "onecycle"])}
        out.append(_outcome(f"t{i:05d}", "failed" if best is None else "finished", best,
                            [] if best is None else [(float(i), best)], **params))
    return out


@pytest.mark.parametrize("mode", ["max", "min"])
def test_table_of_500_trials_shows_the_top_n_sorted_then_a_count(mode):
    outcomes = _many()
    rows = trial_rows(ranked(outcomes, mode), ["optim.lr", "schedule.name"], "val_acc")
    lines = trials_table(rows, TOP).splitlines()
    assert len(lines) == TOP + 3  # header, rule, TOP trials, the closing count
    assert lines[-1] == f"... {N_TRIALS - TOP} more trials (all {N_TRIALS} in the parent run's trials.csv)"
    shown = [float(line.split()[2]) for line in lines[2:-1]]
    assert shown == sorted(shown, reverse=mode == "max")
    scored = sorted((o.best for o in outcomes if o.best is not None), reverse=mode == "max")
    assert shown == [float(f"{v:.4g}") for v in scored[:TOP]]
    assert len(trials_table(rows[:TOP], TOP).splitlines()) == TOP + 2  # no count line when all fit


@pytest.mark.parametrize("mode", ["max", "min"])
def test_csv_keeps_all_500_trials_best_first_unscored_last(mode):
    outcomes = _many()
    parsed = list(csv.DictReader(io.StringIO(trials_csv(trial_rows(ranked(outcomes, mode), [], "val_acc")))))
    assert len(parsed) == N_TRIALS and {r["trial_id"] for r in parsed} == {o.trial_id for o in outcomes}
    values = [r["best_val_acc"] for r in parsed]
    unscored = sum(o.best is None for o in outcomes)
    assert unscored and values[-unscored:] == [""] * unscored and "" not in values[:-unscored]
    scored = [float(v) for v in values[:-unscored]]
    assert scored == sorted(scored, reverse=mode == "max")


def test_top_trials_are_the_best_n_in_either_mode():
    outcomes = _many()
    values = sorted(o.best for o in outcomes if o.best is not None)
    assert [o.best for o in top_trials(outcomes, "max", TOP)] == values[::-1][:TOP]
    assert [o.best for o in top_trials(outcomes, "min", TOP)] == values[:TOP]
    assert len(top_trials(OUTCOMES, "max", TOP)) == 2  # a trial without a metric is never among the best
    assert [o.trial_id for o in ranked(OUTCOMES, "min")] == ["b", "a", "c"]


def test_plots_of_500_trials_are_written(tmp_path):
    outcomes, space = _many(), load_space("default")
    assert _not_blank(plot_metric_vs_params(outcomes, space, "val_acc", tmp_path / "m.png", mode="max", top=TOP))
    assert _not_blank(plot_top_trials(outcomes, "val_loss", "min", TOP, tmp_path / "t.png"))


def test_table_top_must_be_positive():
    assert load_config().tune.table_top == 20
    assert load_config(overrides=["tune.table_top=5"]).tune.table_top == 5
    with pytest.raises(ConfigError, match=r"tune\.table_top"):
        load_config(overrides=["tune.table_top=0"])
