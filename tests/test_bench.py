"""`cnnray bench`: each benchmark runs end to end at a tiny size and reports consistent ratios (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_unknown_benchmark_exits_2():
    proc = subprocess.run([sys.executable, "-m", "cnnray.cli", "bench", "nonsense"], capture_output=True, text=True)
    assert proc.returncode == 2 and "nonsense" in proc.stderr


def test_precision_bench_measures_both_engines():
    from cnnray.bench.train import precision_throughput

    rates = precision_throughput(rounds=1, width=0.125, batch=8, steps=2, threads=1)
    assert set(rates) == {"fp32_nchw", "bf16_channels_last"} and all(v > 0 for v in rates.values())


def test_train_bench_report_names_every_figure():
    from cnnray.bench.train import PRECISION_BATCHES, format_train_bench

    r = {"plain_images_per_s": 100.0, "ray_images_per_s": 98.0, "ray_over_plain": 0.98,
         "time_to_99_cnnray_s": 50.0, "time_to_99_lean_s": 60.0, "time_to_99_speedup": 1.2,
         "time_to_99_tutorial_s": 80.0, "time_to_99_plain_s": None, "time_to_99_tutorial_speedup": None}
    for batch in PRECISION_BATCHES:
        sfx = "" if batch == PRECISION_BATCHES[-1] else f"_b{batch}"
        r.update({f"fp32_nchw_images_per_s{sfx}": 10.0, f"bf16_channels_last_images_per_s{sfx}": 25.0,
                  f"bf16_cl_over_fp32{sfx}": 2.5})
    text = format_train_bench(r)
    assert "0.980" in text and "2.50x" in text and "not reached" in text and "1.20x faster" in text
    assert all(f"batch {b}" in text for b in PRECISION_BATCHES)


@pytest.mark.timeout(300)
def test_data_bench_runs_all_three_pipelines(ray_local):
    from cnnray.bench.data import format_data_bench, run_data_bench

    r = run_data_bench(num_images=200, image_size=16, batch_size=32, epochs=1)
    assert r["num_images"] == 200
    for kind in ("memory", "streaming", "baseline"):
        assert r[f"{kind}_imgs_per_s"] > 0
    assert r["memory_vs_baseline"] == pytest.approx(r["memory_imgs_per_s"] / r["baseline_imgs_per_s"], rel=0.02)
    assert "streaming (Ray Data, raw parquet shards)" in format_data_bench(r)


def test_overhead_bench_needs_the_tune_bench_and_a_positive_count():
    for args in (["bench", "train", "--overhead", "4"], ["bench", "tune", "--overhead", "0"]):
        proc = subprocess.run([sys.executable, "-m", "cnnray.cli", *args], capture_output=True, text=True)
        assert proc.returncode == 2 and "--overhead N" in proc.stderr, proc.stderr


@pytest.mark.timeout(300)
def test_overhead_bench_measures_actor_trials(ray_local):
    from cnnray.bench.tune import format_overhead_bench, run_overhead_bench

    r = run_overhead_bench(2, ["actor, 2 workers"])
    v = r["variants"]["actor, 2 workers"]
    assert v["trials"] == 2 and v["mean_work_s"] > 0 and 0 <= v["median_s"] <= v["max_s"]
    assert v["trials_per_minute"] > 0
    assert "actor, 2 workers" in format_overhead_bench(r) and "goal <= 5s" in format_overhead_bench(r)


def test_tune_bench_report_says_ashas_saving_in_device_hours():
    from cnnray.bench.tune import format_tune_bench

    search = {"best_val_acc": 0.9, "wall_seconds": 30.0, "stopped_early": 6, "device_kind": "cpu"}
    r = {"space": "default", "num_samples": 8, "max_epochs": 6, "seed": 0, "acc_gap_points": 0.2,
         "trial_epoch_ratio": 0.25, "wall_ratio": 0.4, "device_hour_ratio": 0.3, "goal_met": True,
         "saved_device_hours_measured": 0.0056,
         "asha": {**search, "trial_epochs": 12, "device_hours": 0.0024, "saved_device_hours": 0.005},
         "fifo": {**search, "trial_epochs": 48, "device_hours": 0.008, "saved_device_hours": 0.0}}
    text = format_tune_bench(r)
    assert "trial-epochs x0.25" in text and "FIFO 0.008 CPU-hours, ASHA 0.0024 CPU-hours (x0.30)" in text
    assert "ASHA saved 0.005 CPU-hours by its own estimate" in text and "0.0056 CPU-hours measured" in text
