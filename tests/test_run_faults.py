"""Failures a restart cannot fix end the run at once; failures it can fix carry the failed rank's stack.

Real `cnnray train` processes (local runner, 2 ranks) on a tiny model; a real tmpfs for the full disk.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cnnray.errors import ConfigError, StorageFullError
from cnnray.run.failures import RankFailure, is_fatal, is_storage_full, repeated_kill, signal_name
from cnnray.run.checkpoints import INDEX_FILE, read_index

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.image_size=16", "model.name=resnet18", "model.width=0.125", "train.batch_size=64",
        "train.precision=fp32", "train.ema=false", "scaling.num_workers=2", "registry.enabled=false"]


def _train(tmp: Path, storage: Path, *args: str, fault: str | None = None, timeout: float = 300):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(REPO)
    if fault:
        env["CNNRAY_TEST_FAULT_AT_STEP"] = fault
    cmd = [sys.executable, "-m", "workflows.train", *TINY, f"scaling.storage_path={storage}",
           f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}", *args, "--json"]
    return subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout, env=env)


def _result(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run(tmp: Path, run_id: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}").get_run(run_id)


# ---------------------------------------------------------------- the classification, in-process

def test_what_a_restart_cannot_fix():
    full = OSError(errno.ENOSPC, "No space left on device", "/runs/x/state.pt")
    wrapped = RuntimeError("copy failed")
    wrapped.__cause__ = full
    assert is_storage_full(full) and is_storage_full(wrapped) and is_fatal(wrapped)
    # shutil.copytree gathers its errors as text in one shutil.Error: still a full disk
    assert is_storage_full(shutil.Error([("a", "b", "[Errno 28] No space left on device")]))
    assert is_fatal(ConfigError("model.name: bad")) and is_fatal(StorageFullError("/r", 10, 1))
    assert not is_fatal(RuntimeError("gloo: connection reset by peer"))
    assert not is_fatal(OSError(errno.EIO, "I/O error"))
    assert signal_name(-9) == "SIGKILL" and signal_name(-6) == "SIGABRT" and signal_name(1) == ""


def test_only_the_same_rank_killed_twice_at_one_step_is_final():
    first = RankFailure(rank=1, returncode=-9, step=7)
    assert repeated_kill(first, RankFailure(1, -9, 7))
    assert not repeated_kill(None, first)
    assert not repeated_kill(first, RankFailure(1, -9, 8))  # it got further: worth another try
    assert not repeated_kill(first, RankFailure(2, -9, 7))
    assert not repeated_kill(RankFailure(1, 1, 7), RankFailure(1, 1, 7))  # a crash, not a kill


def test_the_full_disk_message_names_path_and_bytes():
    e = StorageFullError("/mnt/runs/r", 3_700_000, 2_100_000, "checkpoint_1")
    assert "/mnt/runs/r" in str(e) and "3,700,000" in str(e) and "2,100,000" in str(e)
    assert "checkpoint_1" in str(e) and "train.resume=true" in str(e)
    import pickle

    assert str(pickle.loads(pickle.dumps(e))) == str(e)  # Ray ships worker errors pickled


# ---------------------------------------------------------------- a real full disk

@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs: one checkpoint of the tiny model (2.95 MB: weights, AdamW state, best weights) fits, two do not."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_the_run_at_once_and_resume_continues_once_space_is_freed(tmp_path, small_disk):
    p = _train(tmp_path, small_disk, "train.epochs=3", "run.name=full")
    assert p.returncode == 1, p.stderr[-3000:]
    r = _result(p)
    assert r["status"] == "FAILED"
    assert "restart" not in p.stdout, p.stdout[-2000:]  # a full disk is not a worker fault
    err = [s for s in p.stderr.splitlines() if s.strip()]
    assert len(err) == 1, p.stderr[-3000:]  # one line, naming the path and the bytes
    assert "no space left on device" in err[0] and str(small_disk / "full") in err[0]
    assert "bytes are free" in err[0] and "needs about" in err[0] and "train.resume=true" in err[0]
    run_dir = small_disk / "full"
    assert not list(run_dir.glob(".checkpoint_*")), list(run_dir.iterdir())  # the partial folder is gone
    names, latest = read_index((run_dir / INDEX_FILE).read_text())
    assert names == [latest] and (run_dir / latest / "state.pt").is_file()  # epoch 1's checkpoint is whole
    mlflow_run = _run(tmp_path, r["run_id"])
    assert mlflow_run.info.status == "FAILED" and "no space left" in mlflow_run.data.tags["cnnray.error"]

    subprocess.run(["mount", "-o", "remount,size=40m", str(small_disk)], check=True)  # space freed
    p = _train(tmp_path, small_disk, "train.epochs=3", "run.name=full", "train.resume=true")
    assert p.returncode == 0, p.stderr[-3000:]
    r = _result(p)
    assert r["status"] == "FINISHED" and r["epochs_run"] == 3
    assert "after epoch 1" in _run(tmp_path, r["run_id"]).data.tags["cnnray.resumed_from"]


# ---------------------------------------------------------------- rank faults

def test_a_rank_killed_twice_at_one_step_ends_the_run_after_one_restart(tmp_path):
    p = _train(tmp_path, tmp_path / "runs", "train.epochs=1", "run.name=oom", "scaling.max_failures=3",
               "tracking.enabled=false", fault="kill@3")
    assert p.returncode == 1, p.stderr[-3000:]
    assert p.stdout.count("restarting from") == 1, p.stdout[-3000:]
    assert "killed by SIGKILL twice at step 3" in p.stderr and "train.batch_size" in p.stderr, p.stderr[-3000:]


def test_a_config_error_inside_a_rank_is_not_retried(tmp_path):
    p = _train(tmp_path, tmp_path / "runs", "train.epochs=1", "run.name=cfg", "scaling.max_failures=3",
               "tracking.enabled=false", fault="config@2")
    assert p.returncode == 1, p.stderr[-3000:]
    assert "restarting from" not in p.stdout, p.stdout[-3000:]
    assert "model.test_fault" in p.stderr, p.stderr[-3000:]


def test_a_native_crash_of_a_rank_carries_its_stack_into_the_restart_and_the_mlflow_run(tmp_path):
    p = _train(tmp_path, tmp_path / "runs", "train.epochs=2", "run.name=abort", fault="abort@2")
    assert p.returncode == 0, p.stderr[-3000:]
    r = _result(p)
    assert r["status"] == "FINISHED"
    restart = p.stdout[p.stdout.index("worker failure"):]
    assert "killed by SIGABRT" in restart and "Fatal Python error: Aborted" in restart, restart[:3000]
    assert "_fault_at_step" in restart  # faulthandler's Python stack of the crashed rank
    tags = _run(tmp_path, r["run_id"]).data.tags
    assert tags["cnnray.restarts"] == "1" and "Fatal Python error: Aborted" in tags["cnnray.failure_1"]


def test_the_summary_names_the_uris_later_commands_take():
    from cnnray.run.outcome import format_train_summary

    r = {"status": "FINISHED", "wall_seconds": 12.0, "best_epoch": 1, "best_metrics": {"val_acc": 0.99, "val_loss": 0.1},
         "run_name": "r", "run_id": "abc", "checkpoint": "/c", "registered_name": "digits", "version": "3",
         "alias": "challenger", "model_uri": "models:/m-0123456789"}
    last = format_train_summary(r).splitlines()[-1]
    assert last == "registered digits version 3 as @challenger: models:/digits/3 (or models:/digits@challenger)"
    assert "m-0123456789" not in last
