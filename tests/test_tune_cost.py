"""A search's cost accounting and tune.budget_device_hours as plain data (no Ray cluster, no MLflow): trial
spending from epoch reports, the scheduler's saving, the budget's stop rule, the tables and lines."""

from __future__ import annotations

import json

import pytest

from cnnray.config import load_config
from cnnray.config.schema import PriceSection
from cnnray.errors import ConfigError
from cnnray.tune.cost import (
    SearchSpend,
    cost_metrics,
    cost_rows,
    cost_tags,
    format_search_cost,
    search_cost,
    spend_of_rows,
)
from cnnray.tune.plan import RESULT_FILE, SearchIdentity, load_trial_reports
from cnnray.tune.results import TrialOutcome
from cnnray.tune.trial_tables import cost_table, format_tune_summary


def _report(epochs_done, device_s, epoch_s, t, images=100.0, restored_from=None, **extra):
    """One trial report as the rank loop sends it (cumulative cost_* figures), with Tune's clock."""
    r = {"epochs_done": epochs_done, "timestamp": t, "cost_device_s": device_s, "cost_cpu_s": device_s,
         "cost_gpu_s": 0.0, "cost_wall_s": device_s, "cost_images": images * epochs_done, "cost_startup_s": 0.5,
         "cost_train_s": 1.0, "cost_val_s": 0.1, "cost_checkpoint_s": 0.0, "cost_epoch_device_s": epoch_s, **extra}
    if restored_from:
        r["restored_from"] = restored_from
    return r


def _outcome(tid, status, best, rows, epochs_run=None):
    return TrialOutcome(trial_id=tid, status=status, params={}, best=best,
                        epochs_run=epochs_run if epochs_run is not None else len(rows), reports=len(rows),
                        run_id=None, checkpoint_path=None, cost_rows=rows)


def test_a_trials_spending_is_its_last_cumulative_report():
    spend = SearchSpend()
    for i, r in enumerate([_report(1, 3.0, 2.5, 1), _report(2, 5.0, 2.0, 2), _report(3, 7.5, 2.5, 3)]):
        assert spend.add("a", r)
    assert spend.trials["a"].device_s == 7.5 and spend.trials["a"].final_device_s == 7.5
    assert spend.trials["a"].mean_epoch_device_s == pytest.approx(7.0 / 3)
    assert spend.epochs == 3 and spend.totals()["images"] == 300
    assert not spend.add("a", {"epochs_done": 4, "error": "nan loss"})  # a report without costs counts nothing


def test_a_pbt_clone_counts_its_own_spending_not_its_sources():
    """b restores a's checkpoint of epoch 2 (index 1): its cumulative figures include a's 5.0 device-seconds."""
    rows = [("a", _report(1, 3.0, 2.5, 1)), ("b", _report(1, 4.0, 3.5, 2)), ("a", _report(2, 5.0, 2.0, 3)),
            ("b", _report(3, 8.0, 3.0, 4, restored_from="a@1")),  # 5.0 of a + b's 3.0 since the restore
            ("b", _report(4, 10.0, 2.0, 5, restored_from="a@1")),
            ("b", _report(5, 12.0, 2.0, 6, restored_from="a@1"))]  # then a crash: b restarts from its own
    spend = spend_of_rows(reversed(rows))  # any order in, counted in report-time order
    assert spend.trials["a"].device_s == 5.0
    assert spend.trials["b"].device_s == pytest.approx(4.0 + (12.0 - 5.0))  # before the exploit + after it
    assert spend.device_s == pytest.approx(16.0) and spend.trials["b"].final_device_s == 12.0
    unknown = spend_of_rows([("c", _report(3, 9.0, 1.5, 1, restored_from="gone@1"))])
    assert unknown.trials["c"].device_s == 1.5  # the source's figures are unknown: this epoch alone


def test_search_cost_sums_trials_and_prices_the_schedulers_saving():
    outcomes = [
        _outcome("done", "finished", 0.9, [_report(1, 3.0, 2.5, 1), _report(2, 5.0, 2.0, 3)]),
        _outcome("asha", "stopped_early", 0.5, [_report(1, 2.0, 1.5, 2)]),  # scheduler: 3 epochs it did not run
        _outcome("budget", "stopped_early", 0.6, [_report(1, 1.0, 1.0, 4)]),  # the budget stopped it: no saving
        _outcome("broken", "failed", None, []),
    ]
    price = PriceSection(cpu=2.0)
    cost = search_cost(outcomes, metric="val_acc", mode="max", max_epochs=4, price=price, wall_s=60.0,
                       budget_device_hours=1.0, budget_stopped={"budget"})
    assert cost["device_s"] == pytest.approx(8.0) and cost["device_hours"] == pytest.approx(8.0 / 3600)
    assert cost["device_kind"] == "cpu" and cost["wall_s"] == 60.0 and cost["trial_epochs"] == 4
    assert cost["saved_device_hours"] == pytest.approx(3 * 1.5 / 3600)
    assert cost["money"] == pytest.approx(2.0 * 8.0 / 3600)
    assert cost["saved_money"] == pytest.approx(2.0 * 4.5 / 3600)
    assert cost["metric_per_device_hour"] == pytest.approx(0.9 / (8.0 / 3600), rel=1e-6)
    by_id = {t["trial_id"]: t for t in cost["trials"]}
    assert by_id["asha"]["stopped_by"] == "scheduler" and by_id["budget"]["stopped_by"] == "budget"
    assert by_id["budget"]["saved_device_hours"] == 0 and by_id["broken"]["device_s"] == 0
    assert by_id["done"]["mean_epoch_device_s"] == pytest.approx(2.25) and by_id["done"]["epochs"] == 2
    metrics = cost_metrics(cost)
    assert metrics["cost_device_s"] == pytest.approx(8.0) and metrics["cost_wall_s"] == 60.0
    assert metrics["cost_saved_device_hours"] == pytest.approx(4.5 / 3600) and "cost_money" in metrics
    assert cost_tags(cost) == {"cnnray.search_cost_device_hours": f"{8.0 / 3600:.6g}",
                               "cnnray.search_cost_money": f"{16.0 / 3600:.6g}"}
    unpriced = search_cost(outcomes, metric="val_loss", mode="min", max_epochs=4, price=PriceSection(), wall_s=1.0)
    assert unpriced["money"] is None and unpriced["saved_money"] is None and "cost_money" not in cost_metrics(unpriced)
    assert list(cost_tags(unpriced)) == ["cnnray.search_cost_device_hours"]
    assert unpriced["metric_per_device_hour"] is None  # a loss per device-hour means nothing

    rows = cost_rows(cost, "max")
    assert [r["trial_id"] for r in rows] == ["done", "budget", "asha", "broken"]  # best first
    assert rows[1]["stopped_by"] == "budget" and rows[2]["saved_cpu_h"] == pytest.approx(4.5 / 3600)
    text = format_search_cost(cost, "asha")
    assert "CPU-hours" in text and "val_acc per CPU-hour" in text and "asha scheduler saved" in text
    assert "1 trials stopped early" in text and "at tracking.price_per_device_hour.cpu" in text
    table = cost_table(cost, "max", top=2).splitlines()
    assert table[0].split()[:4] == ["trial_id", "status", "trial_epochs", "cpu_h"] and "2 more trials" in table[-1]


def test_the_summary_says_the_budget_ended_the_search():
    outcomes = [_outcome("a", "stopped_early", 0.7, [_report(1, 2.0, 1.5, 1)])]
    cost = search_cost(outcomes, metric="val_acc", mode="max", max_epochs=3, price=PriceSection(), wall_s=5.0,
                       budget_device_hours=0.001, budget_stopped={"a"})
    r = {"name": "s", "status": "FINISHED", "metric": "val_acc", "scheduler": "fifo", "end_reason": "budget",
         "cost": cost, "cost_table": cost_table(cost, "max")}
    text = format_tune_summary(r)
    assert "tune.budget_device_hours=0.001 ended the search" in text and "1 trials stopped" in text
    assert "cost per trial:" in text and "fifo scheduler stopped no trial early" in text


# --- The budget's rule (cnnray/tune/budget.py), fed reports as Tune's stopper would be.


def _budget(hours, running=("a", "b")):
    from cnnray.tune.budget import DeviceBudget

    marks: list[dict] = []
    lines: list[str] = []
    b = DeviceBudget(hours, on_exhausted=marks.append, on_line=lines.append)
    b.step({t: "RUNNING" for t in running})
    return b, marks, lines


def test_the_budget_stops_before_spent_plus_the_running_epochs_exceed_it():
    # 10 device-seconds a trial-epoch, two trials at a time, a budget of 45 device-seconds.
    b, marks, lines = _budget(45 / 3600)
    assert not b.on_result("a", _report(1, 10.0, 10.0, 1))  # 10 + 2 x 10 <= 45
    assert not b.on_result("b", _report(1, 10.0, 10.0, 2))  # 20 + 2 x 10 <= 45
    assert b.on_result("a", _report(2, 20.0, 10.0, 3))  # 30 + 2 x 10 > 45: a stops at this epoch boundary
    assert b.exhausted and not b.too_small and marks and "no new trials" in lines[-1]
    assert not b.stop_all()  # b is still in its epoch, and a's stop not yet done
    b.ended("a")
    assert not b.stop_all()
    assert b.on_result("b", _report(2, 20.0, 10.0, 4))  # b finished its epoch: stopped too
    b.ended("b")
    assert b.stop_all() and b.stopped == {"a", "b"}
    assert b.spend.device_s == 40.0 <= 45  # within the budget (spent + one epoch alone would have run a 5th)


def test_a_paused_trial_is_not_waited_for():
    b, _, _ = _budget(15 / 3600)
    assert b.on_result("a", _report(1, 10.0, 10.0, 1))  # 10 + 2 x 10 > 15
    b.ended("a")
    assert not b.stop_all()
    b.step({"a": "TERMINATED", "b": "PAUSED"})  # b sits at an epoch boundary
    assert b.stop_all()


def test_a_budget_below_one_trial_epoch_stops_everything_at_once():
    b, marks, _ = _budget(0.0002)
    assert b.on_result("a", _report(1, 12.0, 10.0, 1))
    assert b.stop_all() and marks[0]["too_small"] == b.too_small
    assert "tune.budget_device_hours=0.0002 is smaller than one trial-epoch's measured cost" in b.too_small
    assert "10 device-seconds" in b.too_small


def test_a_resumed_search_checks_its_budget_before_any_work(tmp_path):
    from cnnray.tune.tuning import _check_budget_buys_an_epoch

    ident = SearchIdentity("s", str(tmp_path), str(tmp_path / "s"), resume=True)
    trial = tmp_path / "s" / "t_00000"
    trial.mkdir(parents=True)
    (trial / RESULT_FILE).write_text("\n".join(json.dumps(_report(i, 4.0 * i, 4.0, i)) for i in (1, 2)) + "\n{trunc")
    (tmp_path / "s" / "t_00001").mkdir()  # a trial that never reported
    reports = load_trial_reports(ident)
    assert [(t, r["epochs_done"]) for t, r in reports] == [("t_00000", 1), ("t_00000", 2)]
    _check_budget_buys_an_epoch(0.002, ident)  # 4 device-seconds (0.00111 device-hours) an epoch: fits
    with pytest.raises(ConfigError, match=r"tune\.budget_device_hours=0\.001 is smaller than one trial-epoch"):
        _check_budget_buys_an_epoch(0.001, ident)
    assert load_trial_reports(SearchIdentity("x", str(tmp_path), str(tmp_path / "x"), resume=True)) == []


def test_a_non_positive_budget_is_refused():
    for v in ("0", "-1"):
        with pytest.raises(ConfigError, match=r"tune\.budget_device_hours"):
            load_config(overrides=[f"tune.budget_device_hours={v}"])
