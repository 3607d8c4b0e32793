"""Searches at scale, the careful cases: `cnnray bench tune --scale` at a test size, two searches on one MLflow
store at once, and a disk that fills mid-search (a real tmpfs: the search's storage runs out of space)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TINY = ["data.image_size=16", "model.width=0.125", "train.batch_size=64", "tune.trial_workers=1",
        "tune.max_concurrent_trials=1", "tune.max_epochs=1", "tune.scheduler=fifo", "registry.enabled=false"]


def _tune(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cnnray.cli", "tune", *args, "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)


def _result(proc: subprocess.Popen, timeout: float = 400) -> tuple[int, dict, str]:
    out, err = proc.communicate(timeout=timeout)
    lines = [s for s in out.strip().splitlines() if s.startswith("{")]
    return proc.returncode, json.loads(lines[-1]) if lines else {}, out[-3000:] + err[-3000:]


def test_scale_bench_at_a_test_size(ray_local):
    from cnnray.bench.tune_scale import format_scale_bench, run_scale_bench

    r = run_scale_bench(24, keep=2)
    assert r["trials_ended"] == 24
    assert r["checkpoints"] <= 2 + r["concurrent"] and r["goals"]["checkpoints"]
    assert r["first_10pct_trials_per_min"] > 0 and r["last_10pct_trials_per_min"] > 0
    assert 0 < r["rss_first_mb"] <= r["rss_peak_mb"] and r["mlflow_store_bytes"] > 0
    assert r["tune_state"]["experiment_state_bytes"] > 0 and r["tune_state"]["write_s"] > 0
    assert 0 <= r["overhead_median_s"] <= r["overhead_p95_s"]
    text = format_scale_bench(r)
    for word in ("throughput", "driver RSS", "disk", "Tune state", "MLflow store", "overhead"):
        assert word in text


def test_two_searches_on_one_store_at_once_stay_separate(ray_local, mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    address = ray_local.get_runtime_context().gcs_address
    common = [*TINY, "tune.num_samples=2", f"tracking.uri={mlflow_server}", f"tracking.experiment=two-{tmp_path.name}",
              f"scaling.storage_path={tmp_path / 'ray'}", f"--address={address}"]
    procs = {name: _tune([*common, f"run.name={name}"], tmp_path) for name in ("left", "right")}
    results = {name: _result(p) for name, p in procs.items()}
    client = MlflowClient(tracking_uri=mlflow_server)
    parents = set()
    for name, (rc, r, tail) in results.items():
        assert rc == 0 and r["status"] == "FINISHED", tail
        parent = client.get_run(r["parent_run_id"])
        parents.add(parent.info.run_id)
        children = client.search_runs([parent.info.experiment_id],
                                      filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        # Its own two trials, named after it, none of the other search's.
        assert sorted(c.data.tags["cnnray.trial_id"] for c in children) == sorted(t["trial_id"] for t in r["trials"])
        assert {c.data.tags["cnnray.tune_run"] for c in children} == {name}
        assert all(c.info.run_name.startswith(f"{name}/") and c.info.status == "FINISHED" for c in children)
    assert len(parents) == 2


@pytest.fixture
def small_disk(tmp_path):
    """A 10 MB tmpfs: room for two of the test model's checkpoints (3.8 MB each)."""
    mount = tmp_path / "small"
    mount.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=10m", "tmpfs", str(mount)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {p.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_disk_that_fills_mid_search_ends_it_and_keeps_the_best(ray_local, mlflow_server, small_disk, tmp_path):
    from mlflow.tracking import MlflowClient

    from cnnray.tracking import find_run_by_name

    address = ray_local.get_runtime_context().gcs_address
    experiment = f"full-{tmp_path.name}"
    # K=10 keeps every trial's checkpoint: the third does not fit.
    proc = _tune([*TINY, "tune.num_samples=6", "tune.keep_checkpoints_top_k=10", "run.name=full",
                  f"tracking.uri={mlflow_server}", f"tracking.experiment={experiment}",
                  f"scaling.storage_path={small_disk}", f"--address={address}"], tmp_path)
    rc, r, tail = _result(proc, timeout=300)  # a hang fails here
    assert "no space left on device" in tail.lower(), tail
    assert f"writing a checkpoint to {small_disk}/full/" in tail, tail  # names the search's disk, not a staging folder
    parent = MlflowClient(tracking_uri=mlflow_server).get_run(find_run_by_name(mlflow_server, experiment, "full"))
    assert parent.info.status in ("FINISHED", "FAILED"), parent.info.status
    if r.get("status") == "FINISHED":  # ended with a reason, and the best trial can still be registered
        assert r["end_reason"] == "disk_full" and parent.data.tags["cnnray.end_reason"] == "disk_full"
        assert Path(r["best"]["checkpoint"]).is_dir()
        assert r["counts"]["finished"] >= 1 and r["num_trials"] < 6
    else:
        assert rc != 0 and parent.info.status == "FAILED"
    # Either way the trials that finished kept their checkpoints.
    assert list((small_disk / "full").glob("*/checkpoint_*/state.pt")), tail


def test_bench_tune_variants_are_checked_before_any_work():
    from cnnray.bench.tune_variants import tune_variant
    from cnnray.errors import UserInputError

    assert tune_variant("tune", {"scale": None, "overhead": None}) is None
    assert tune_variant("tune", {"scale": 2000, "overhead": None})[0] == "tune_scale"
    assert tune_variant("tune", {"store_runs": 50})[4] == {"runs": 50}
    for which, values, words in (("train", {"scale": 200}, "`cnnray bench tune`"), ("tune", {"scale": 5}, "N >= 10"),
                                 ("tune", {"scale": 200, "overhead": 4}, "one of")):
        with pytest.raises(UserInputError) as e:
            tune_variant(which, values)
        assert words in str(e.value)
