"""Cost accounting of one training run (`cnnray.run.cost`): the arithmetic, the budget rule, the summary line."""

from __future__ import annotations

import pytest

from cnnray.config.schema import PriceSection
from cnnray.run.cost import (
    CostMeter,
    CostTotals,
    budget_line,
    cost_result,
    device_hours,
    format_cost,
    money,
    over_budget,
    totals_of_report,
)


def test_device_hours_and_money_need_a_price_for_the_kind():
    assert device_hours(7200) == 2.0 and device_hours(0) == 0.0
    assert money(2.0, "cpu", PriceSection()) is None
    assert money(2.0, "gpu", PriceSection(cpu=0.05)) is None  # priced CPUs say nothing about a GPU-hour
    assert money(2.0, "cpu", PriceSection(cpu=0.05)) == pytest.approx(0.1)
    assert money(0.5, "gpu", PriceSection(gpu=3.0)) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="cpu, gpu"):
        money(1.0, "tpu", PriceSection())


def test_totals_sum_over_ranks_and_attempts_and_round_trip():
    a = CostTotals(wall_s=10, cpu_s=18, device_s=18, images=640, startup_s=2, train_s=6, val_s=1, checkpoint_s=0.5,
                   epoch_device_s=9)
    b = CostTotals(wall_s=4, cpu_s=7, device_s=7, images=320, train_s=3, epoch_device_s=7)
    both = a.plus(b)
    assert (both.wall_s, both.cpu_s, both.images, both.epoch_device_s) == (14, 25, 960, 7)  # the newer epoch
    # Two ranks' vectors summed by the all-reduce: the wall is their mean, everything else a sum.
    summed = [x + y for x, y in zip(a.to_vector(), b.to_vector())]
    ranks = CostTotals.from_vector(summed, world=2)
    assert ranks.wall_s == 7 and ranks.cpu_s == 25 and ranks.epoch_device_s == 16
    assert CostTotals.from_meta(a.to_meta("cpu")) == a
    assert CostTotals.from_meta(None) == CostTotals() == CostTotals.from_meta({"wall_s": "x"})
    m = a.metrics()
    assert set(m) == {"cost_wall_s", "cost_cpu_s", "cost_gpu_s", "cost_device_s", "cost_images", "cost_startup_s",
                      "cost_train_s", "cost_val_s", "cost_checkpoint_s", "cost_epoch_device_s"}
    assert all(isinstance(v, float) for v in m.values()) and totals_of_report({**m, "epoch": 3}) == a
    assert totals_of_report({"epoch": 0, "error": "nan"}) is None


def test_the_meter_counts_gpu_seconds_as_wall_times_gpus_and_cpu_seconds_on_cpu():
    ticks = iter([0.0, 1.0, 5.0, 11.0])  # start, training starts, the end of two epochs
    cpu = iter([0.0, 2.0, 9.0, 20.0])
    meter = CostMeter(CostTotals(device_s=100.0), gpus=0.0, clock=lambda: next(ticks), cpu_clock=lambda: next(cpu))
    meter.training_starts()
    first = meter.epoch_end()
    assert first.epoch_device_s == 7.0 and first.device_s == 109.0 and first.startup_s == 1.0  # 100 from before
    second = meter.epoch_end()
    assert second.epoch_device_s == 11.0 and second.cpu_s == 20.0 and second.gpu_s == 0.0 and second.wall_s == 11.0
    ticks = iter([0.0, 2.0, 6.0])
    gpu = CostMeter(CostTotals(), gpus=0.5, clock=lambda: next(ticks), cpu_clock=lambda: 1.0)
    gpu.training_starts()
    t = gpu.epoch_end(reduce=lambda v: [2 * x for x in v], world=2)  # two identical ranks
    assert t.gpu_s == t.device_s == 6.0 and t.epoch_device_s == 4.0 and t.wall_s == 6.0 and gpu.kind == "gpu"


def test_budget_rule_result_and_lines():
    spent = CostTotals(cpu_s=3.0, device_s=3.0, epoch_device_s=1.0, wall_s=2.0)
    assert not over_budget(spent, None)
    assert not over_budget(spent, 4.5 / 3600) and over_budget(spent, 3.9 / 3600)
    cost = cost_result(spent, PriceSection(cpu=36.0), budget_device_hours=3.9 / 3600)
    assert cost["device_kind"] == "cpu" and cost["device_hours"] == pytest.approx(3 / 3600)
    assert cost["money"] == pytest.approx(0.03) and cost["device_s"] == 3.0
    assert format_cost(cost).startswith("cost: 0.000833 CPU-hours = 0.03 at tracking.price_per_device_hour.cpu")
    assert "stopped by train.budget_device_hours" in budget_line(cost)
    tiny = cost_result(spent, PriceSection(), budget_device_hours=1e-6)
    assert tiny["money"] is None and "= " not in format_cost(tiny).split("(")[0]
    line = budget_line(tiny)
    assert "train.budget_device_hours=1e-06 is smaller than one epoch's measured cost (0.000278" in line
    assert budget_line(cost_result(spent, PriceSection())) is None


def test_the_registry_and_the_report_show_the_cost_and_the_search_cost():
    from cnnray.insight.report_html import render_report
    from cnnray.insight.report_model import VersionReport
    from cnnray.serve.tables import cost_cell, registry_table

    row = {"version": "2", "aliases": [], "created": "2026-12-01 10:00:00", "data_fingerprint": "ab", "run_name": "r",
           "decision": None, "cost_device_hours": "0.0123", "cost_device_kind": "cpu"}
    assert cost_cell(row) == "0.0123 cpu" and cost_cell({}) == "-"
    searched = {**row, "cost_money": "0.5", "search_cost_device_hours": "0.09"}
    assert cost_cell(searched) == "0.0123 cpu = 0.5 (search 0.09)"
    assert "0.0123 cpu = 0.5 (search 0.09)" in registry_table([searched]).splitlines()[1]
    base = dict(label="models:/m/2", name="m", version="2", aliases=[], created="", description="",
                architecture="resnet18", class_names=["a"], lineage={}, tune={"search": "s1"})
    page = render_report(VersionReport(**base, cost={"training device-hours": "0.0123", "device kind": "cpu",
                                                     "search device-hours": "0.09"}))
    overview = page.split('<section id="overview">')[1].split("</section>")[0]
    search = page.split('<section id="search">')[1].split("</section>")[0]
    assert "training device-hours" in overview and "0.0123" in overview and "0.0900" in search
    assert "no cost recorded" in render_report(VersionReport(**base))


def test_a_budget_of_zero_exits_2_naming_the_key(capsys):
    from workflows import train

    assert train.main(["train.budget_device_hours=0"]) == 2
    assert "train.budget_device_hours" in capsys.readouterr().err


@pytest.mark.slow
def test_a_budget_ends_the_run_at_an_epoch_boundary_and_a_resume_that_cannot_afford_an_epoch_is_refused(tmp_path):
    """1e-6 device-hours (3.6 ms) is less than one epoch: the run ends FINISHED after epoch 1 of 2, checkpointed
    and tagged; resuming it with that budget exits 2 before any work, naming the key and what was spent."""
    from test_train_local import _client, _result, _train

    from cnnray.run.checkpoints import INDEX_FILE, read_index

    args = ("run.name=budget", "registry.enabled=false", "scaling.num_workers=1", "train.budget_device_hours=1e-6")
    p = _train(tmp_path, *args, "train.epochs=2", "tracking.price_per_device_hour.cpu=0.05")
    assert p.returncode == 0, p.stderr[-3000:]
    r = _result(p)
    assert r["status"] == "FINISHED" and r["epochs_run"] == 1 and r["end_reason"] == "budget", r
    assert r["cost"]["budget_device_hours"] == 1e-6 and r["cost"]["device_kind"] == "cpu"
    assert "train.budget_device_hours=1e-06 is smaller than one epoch's measured cost" in p.stdout
    names, latest = read_index((tmp_path / "runs" / "budget" / INDEX_FILE).read_text())
    assert latest in names and r["checkpoint"].endswith(latest)
    run = _client(tmp_path).get_run(r["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["cnnray.end_reason"] == "budget"
    assert run.data.tags["cnnray.cost_device_kind"] == "cpu"
    assert float(run.data.tags["cnnray.cost_device_hours"]) == pytest.approx(r["cost"]["device_hours"], rel=1e-4)
    assert r["cost"]["money"] == pytest.approx(0.05 * r["cost"]["device_hours"])
    assert float(run.data.tags["cnnray.cost_money"]) == pytest.approx(run.data.metrics["cost_money"], rel=1e-4)
    assert "at tracking.price_per_device_hour.cpu" in p.stdout
    again = _train(tmp_path, *args, "train.epochs=3", "train.resume=true")
    assert again.returncode == 2, again.stderr[-3000:]
    assert "train.budget_device_hours=1e-06" in again.stderr and "already spent" in again.stderr
