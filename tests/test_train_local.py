"""`scaling.runner=local`: `cnnray train` without Ray — runner choice, checkpoints, crashes, kills, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnray.config import load_config
from cnnray.errors import ConfigError
from cnnray.cluster.watchdog import descendants, start_time
from cnnray.run.local_host import choose_runner
from cnnray.run.checkpoints import INDEX_FILE, CheckpointStore, read_index
from procwatch import new_marker, wait_gone

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.image_size=16", "model.width=0.125", "train.batch_size=64", "scaling.num_workers=2"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def _train(tmp: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300):
    cmd = [sys.executable, "-m", "workflows.train", *TINY, f"scaling.storage_path={tmp / 'runs'}",
           f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}", *args, "--json"]
    return subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout, env=env or _env())


def _result(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _client(tmp: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")


# ---------------------------------------------------------------- which runner

@pytest.mark.parametrize("overrides,loader,ray_up,expected", [
    ([], "memory", False, "local"),
    ([], "memory", True, "ray"),  # the caller connected to Ray itself
    (["run.address=ray://10.0.0.1:10001"], "memory", False, "ray"),
    ([], "streaming", False, "ray"),
    (["scaling.num_workers=[1,2]"], "memory", False, "ray"),
    (["scaling.storage_path=s3://bucket/runs"], "memory", False, "ray"),
    (["scaling.runner=ray"], "memory", False, "ray"),
    (["scaling.runner=local"], "memory", True, "local"),
])
def test_auto_runs_locally_unless_something_needs_ray(monkeypatch, overrides, loader, ray_up, expected):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert choose_runner(load_config(overrides=overrides), loader, ray_up=ray_up) == expected


def test_ray_address_in_the_environment_means_ray(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert choose_runner(load_config(), "memory", ray_up=False) == "ray"


@pytest.mark.parametrize("overrides,loader,words", [
    (["run.address=127.0.0.1:6379"], "memory", "cluster address"),
    ([], "streaming", "Ray Data"),
    (["scaling.num_workers=[1,2]"], "memory", "elastic"),
])
def test_local_runner_refuses_what_needs_ray(monkeypatch, overrides, loader, words):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ConfigError, match="scaling.runner=local") as e:
        choose_runner(load_config(overrides=["scaling.runner=local", *overrides]), loader)
    assert words in str(e.value)


@pytest.mark.slow
def test_bad_runner_and_local_with_an_address_exit_2_and_leave_no_rank_behind(tmp_path):
    mark = new_marker()  # this test's processes only: other test files may be training at the same time
    for args, words in ((["scaling.runner=nowhere"], "scaling.runner"),
                        (["scaling.runner=local", "run.address=127.0.0.1:1"], "scaling.runner=local"),
                        (["data.source=imagefolder", f"data.path={tmp_path / 'missing'}"], "missing")):
        p = _train(tmp_path, *args, timeout=120, env=_env(**mark))
        assert p.returncode == 2 and words in p.stderr, (args, p.stderr[-1500:])
    left = wait_gone(mark, "cnnray.run.local_rank", timeout_s=10)
    assert not left, f"prestarted rank processes outlived a refused command: {left}"


# ---------------------------------------------------------------- checkpoints in the run folder

def _fake_checkpoint(tmp: Path, value: int) -> Path:
    d = tmp / f"src{value}"
    d.mkdir()
    (d / "meta.json").write_text(json.dumps({"v": value}))
    return d


def test_store_keeps_the_best_and_the_latest_and_writes_its_index_atomically(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    store = CheckpointStore(str(run), keep=2, monitor="val_acc", mode="max")
    paths = [store.add(_fake_checkpoint(tmp_path, i), {"epoch": i, "val_acc": acc})
             for i, acc in enumerate([0.5, 0.9, 0.7, 0.6])]
    names, latest = read_index((run / INDEX_FILE).read_text())
    assert latest == Path(paths[-1]).name
    assert names == [Path(paths[1]).name, Path(paths[3]).name]  # best (0.9) and latest, oldest first
    on_disk = sorted(p.name for p in run.iterdir() if p.name.startswith("checkpoint_"))
    assert on_disk == sorted(names) and not list(run.glob(".*tmp"))
    again = CheckpointStore(str(run), keep=2, monitor="val_acc", mode="max")  # a resumed run sees them
    assert again.latest_dir() == paths[-1]
    assert read_index("{not json") is None and read_index('{"checkpoints": 3}') is None


def test_store_ranks_by_the_minimum_for_val_loss(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    store = CheckpointStore(str(run), keep=2, monitor="val_loss", mode="min")
    paths = [store.add(_fake_checkpoint(tmp_path, i), {"epoch": i, "val_loss": v})
             for i, v in enumerate([0.3, 0.1, 0.2])]
    assert read_index((run / INDEX_FILE).read_text())[0] == [Path(paths[1]).name, Path(paths[2]).name]


# ---------------------------------------------------------------- real runs

@pytest.mark.slow
def test_default_shaped_run_trains_locally_records_and_registers(tmp_path, split_audit_guard):
    """Two local DDP ranks, no Ray: FINISHED, every epoch in MLflow, checkpoints in the run folder, registered;
    the test images were read once, by the held-out evaluation of the chosen weights."""
    p = _train(tmp_path, "train.epochs=2", "run.name=loc", "registry.name=loc-model")
    assert p.returncode == 0, p.stderr[-3000:]
    r = _result(p)
    assert r["status"] == "FINISHED" and r["version"] and r["epochs_run"] == 2
    assert r["startup_s"]["first_step"] > 0
    run_dir = tmp_path / "runs" / "loc"
    assert (run_dir / INDEX_FILE).exists() and not (run_dir / "checkpoint_manager_snapshot.json").exists()
    assert not list(run_dir.glob(".rendezvous-*")), "the rendezvous file outlived the run"
    assert Path(r["checkpoint"]).parent == run_dir
    run = _client(tmp_path).get_run(r["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["cnnray.runner"] == "local"
    assert run.data.params["scaling.num_workers"] == "2"
    history = _client(tmp_path).get_metric_history(r["run_id"], "val_acc")
    assert sorted(m.step for m in history) == [0, 1]
    assert max(m.value for m in history) == pytest.approx(r["best_metrics"]["val_acc"])
    (read,) = split_audit_guard.lines()
    assert "cnnray.run.held_out:evaluate_held_out" in read["stack"] and read["n"] == r["test_n"]
    _check_cost(tmp_path, r, run, epochs=2, workers=2)


def _check_cost(tmp: Path, r: dict, run, *, epochs: int, workers: int) -> None:
    """The run's cost: in its metrics, tags, result and registry listing; CPU-seconds on CPU; the images trained."""
    from cnnray.data import describe_dataset
    from cnnray.data.memory_loader import MemoryLoader
    import torch

    cost, m = r["cost"], run.data.metrics
    for key in ("wall_s", "cpu_s", "device_s", "images", "startup_s", "train_s", "val_s", "checkpoint_s",
                "epoch_device_s"):
        assert m[f"cost_{key}"] > 0 and cost[key] > 0, key
    assert m["cost_gpu_s"] == 0 and m["cost_device_s"] == m["cost_cpu_s"] and cost["device_kind"] == "cpu"
    assert m["cost_device_hours"] == pytest.approx(m["cost_device_s"] / 3600)
    parts = sum(m[f"cost_{k}"] for k in ("startup_s", "train_s", "val_s", "checkpoint_s"))
    assert parts <= m["cost_wall_s"] * workers
    n = describe_dataset(load_config(overrides=TINY).data).num_train  # drop_last: full batches of each rank only
    per_rank = len(MemoryLoader(torch.zeros(n, 1), torch.zeros(n), 64, world_size=workers)) * 64
    assert m["cost_images"] == epochs * per_rank * workers
    assert run.data.tags["cnnray.cost_device_kind"] == "cpu" and "cnnray.cost_money" not in run.data.tags
    assert float(run.data.tags["cnnray.cost_device_hours"]) == pytest.approx(cost["device_hours"], rel=1e-4)
    assert run.data.tags["cnnray.end_reason"] == r["end_reason"] == "epochs"
    if r.get("version"):
        from cnnray.serve.tables import registry_table
        from cnnray.tracking.listing import list_versions

        (row,) = list_versions(f"sqlite:///{tmp / 'mlflow.db'}", r["registered_name"])
        assert row["tags"]["cnnray.cost_device_hours"] == run.data.tags["cnnray.cost_device_hours"]
        table = registry_table([row])
        assert "cost (device-hours)" in table.splitlines()[0]
        assert f"{float(row['cost_device_hours']):.3g} cpu" in table.splitlines()[1]


@pytest.mark.slow
def test_a_rank_that_dies_is_restarted_from_the_latest_checkpoint(tmp_path):
    """Rank 1 kills itself half-way through epoch 1 (a real crash): the run restarts every rank from the
    epoch-0 checkpoint and finishes, each epoch logged once, the restart tagged."""
    p = _train(tmp_path, "train.epochs=3", "run.name=crash", "registry.enabled=false", "scaling.max_failures=1",
               env=_env(CNNRAY_TEST_FAIL_AT_EPOCH="1"))
    assert p.returncode == 0, p.stderr[-3000:]
    r = _result(p)
    assert r["status"] == "FINISHED" and r["epochs_run"] == 3
    assert "worker failure" in p.stdout and "restarting from checkpoint_" in p.stdout
    assert (tmp_path / "runs" / "crash" / ".fail_marker").exists()
    run = _client(tmp_path).get_run(r["run_id"])
    assert run.data.tags["cnnray.restarts"] == "1"
    steps = [m.step for m in _client(tmp_path).get_metric_history(r["run_id"], "val_acc")]
    assert sorted(steps) == [0, 1, 2]


@pytest.mark.slow
def test_a_crash_beyond_max_failures_fails_the_run_and_keeps_its_checkpoints(tmp_path):
    p = _train(tmp_path, "train.epochs=3", "run.name=nomore", "registry.enabled=false", "scaling.max_failures=0",
               env=_env(CNNRAY_TEST_FAIL_AT_EPOCH="1"))
    assert p.returncode == 1, p.stderr[-3000:]
    r = _result(p)
    assert r["status"] == "FAILED" and "rank 1 exited" in r["error"]
    assert _client(tmp_path).get_run(r["run_id"]).info.status == "FAILED"
    names, latest = read_index((tmp_path / "runs" / "nomore" / INDEX_FILE).read_text())
    assert latest in names  # epoch 0's checkpoint survived the failure


@pytest.mark.slow
def test_sigkill_marks_the_run_killed_leaves_no_rank_and_resume_continues(tmp_path):
    """SIGKILL of the command mid-run: its ranks die with it, the watchdog marks the MLflow run KILLED, and
    `train.resume=true` continues from the last checkpoint to the end."""
    cmd = [sys.executable, "-m", "workflows.train", *TINY, f"scaling.storage_path={tmp_path / 'runs'}",
           f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", "run.name=kill", "registry.enabled=false",
           "train.epochs=30"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    index = tmp_path / "runs" / "kill" / INDEX_FILE
    client = _client(tmp_path)
    deadline = time.time() + 180
    while not (index.exists() and (exp := client.get_experiment_by_name("cnnray"))
               and client.search_runs([exp.experiment_id])):  # a checkpoint written and the MLflow run open
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-3000:] if proc.poll() else "slow"
        time.sleep(0.3)
    tree = descendants(proc.pid)
    cmds = {p: Path(f"/proc/{p}/cmdline").read_text(errors="ignore") for p in tree}
    ranks = {p: st for p, st in tree.items() if "cnnray.run.local_rank" in cmds[p]}
    assert len(ranks) == 1 and not any("raylet" in c for c in cmds.values()), cmds
    from test_safety import _loopback, listening_sockets

    socks = listening_sockets({proc.pid, *tree})
    assert not [s for s in socks if not _loopback(s[2].rsplit(":", 1)[0])], f"listening beyond loopback: {socks}"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    deadline = time.time() + 10
    while time.time() < deadline and any(start_time(p) == st for p, st in ranks.items()):
        time.sleep(0.2)
    assert not any(start_time(p) == st for p, st in ranks.items()), "a rank outlived its SIGKILLed command"
    deadline = time.time() + 30
    while time.time() < deadline:
        (run,) = client.search_runs([exp.experiment_id])
        if run.info.status != "RUNNING":
            break
        time.sleep(0.5)
    assert run.info.status == "KILLED", run.info.status
    done = json.loads(index.read_text())["checkpoints"][-1]["epoch"] + 1
    p = _train(tmp_path, "run.name=kill", "registry.enabled=false", "train.resume=true", f"train.epochs={done + 1}")
    assert p.returncode == 0, p.stderr[-3000:]
    r = _result(p)
    assert r["status"] == "FINISHED" and r["epochs_run"] == done + 1 and r["run_id"] == run.info.run_id
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
    assert sorted(set(steps)) == list(range(done + 1))


def test_a_local_run_resumes_on_ray_train_and_back(ray_local, tmp_path):
    """Checkpoints are the same files under both runners: 1 epoch locally, the 2nd on Ray Train, the 3rd locally.
    The first ran with tracking off: the resume logs its epoch from the checkpoint's history, so the curve is whole."""
    from cnnray.run.training import run_training

    base = [*TINY, "scaling.num_workers=1", f"scaling.storage_path={tmp_path / 'runs'}", "run.name=both",
            "registry.enabled=false", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"]
    first = run_training(load_config(overrides=[*base, "train.epochs=1", "scaling.runner=local",
                                                "tracking.enabled=false"]), on_line=print)
    assert first["status"] == "FINISHED" and not first.get("run_id"), first
    second = run_training(load_config(overrides=[*base, "train.epochs=2", "train.resume=true"]), on_line=print)
    assert second["status"] == "FINISHED" and second["epochs_run"] == 2, second
    assert (tmp_path / "runs" / "both" / "checkpoint_manager_snapshot.json").exists()  # Ray Train wrote this one
    third = run_training(load_config(overrides=[*base, "train.epochs=3", "train.resume=true", "scaling.runner=local"]),
                         on_line=print)
    assert third["status"] == "FINISHED" and third["epochs_run"] == 3, third
    history = _client(tmp_path).get_metric_history(second["run_id"], "val_acc")
    assert sorted(m.step for m in history) == [0, 1, 2] and second["run_id"] == third["run_id"]
    # Each attempt's cost adds to the checkpoint's: 3 epochs of images, whichever runner trained them.
    costs = [x["cost"] for x in (first, second, third)]
    assert [c["images"] for c in costs] == [costs[0]["images"] * k for k in (1, 2, 3)]
    assert costs[0]["device_s"] < costs[1]["device_s"] < costs[2]["device_s"]
    assert [m.value for m in history if m.step == 0] == [pytest.approx(first["best_metrics"]["val_acc"])]


@pytest.mark.slow
def test_a_handler_that_stops_the_run_is_not_retried(tmp_path):
    """A report handler's StopRun (the MLflow store failed) ends the run at once: no restart, no second attempt."""
    from cnnray.run.local_host import StopRun, run_local
    from cnnray.run.plan import prepare_run
    from cnnray.run.plan import make_loop_config

    cfg = load_config(overrides=[*TINY, "scaling.num_workers=1", "train.epochs=3", "scaling.max_failures=2",
                                 f"scaling.storage_path={tmp_path}", "run.name=stop"])
    prep = prepare_run(cfg)
    Path(prep.run_dir).mkdir(parents=True)
    seen, lines = [], []

    def handler(metrics, checkpointed):
        seen.append(metrics["epoch"])
        raise StopRun("MLflow: the store went away")

    with pytest.raises(StopRun, match="store went away"):
        run_local(prep.cfg, make_loop_config(prep), prep.run_dir, start_from=None, on_report=handler,
                  on_line=lines.append)
    assert seen == [0] and not lines  # one epoch, no "restarting" line
