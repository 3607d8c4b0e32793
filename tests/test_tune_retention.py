"""tune.keep_checkpoints_top_k, and what a search of thousands of trials needs: retention by rank (ASHA and PBT
searches of test_tune_search.py assert it on their folders too), resume of a trial whose checkpoints were
deleted, batched MLflow calls per trial, the appended trial table, the settings refused before Ray starts."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from cnnray.config import load_config
from cnnray.errors import ConfigError
from cnnray.tune.retention import kept_trials

TINY = ["data.image_size=16", "model.width=0.125", "train.batch_size=64", "tune.trial_workers=1"]


def _trial(trial_id, best, status="TERMINATED", metric="val_acc"):
    analysis = {metric: {"max": best, "min": best}} if best is not None else {}
    return SimpleNamespace(trial_id=trial_id, status=status, metric_analysis=analysis)


def test_the_best_k_are_kept_and_the_best_that_did_not_fail_always():
    ended = [_trial("a", 0.5), _trial("b", 0.9, "ERROR"), _trial("c", 0.7), _trial("d", None), _trial("e", 0.95, "ERROR")]
    # K=2 by val_acc: e and b (both failed) ... plus c, the best trial that can be registered.
    assert kept_trials(ended, 2, "val_acc", "max") == {"e", "b", "c"}
    assert kept_trials(ended, 3, "val_acc", "max") == {"e", "b", "c"}
    assert kept_trials(ended, 1, "val_acc", "min") == {"a"}  # lowest first for a loss; a did not fail
    assert kept_trials([_trial("d", None)], 5, "val_acc", "max") == set()  # never reported: nothing to keep


def test_settings_that_cannot_keep_enough_are_refused_before_ray_starts(tmp_path):
    from cnnray.tune.tuning import resolve_search

    with pytest.raises(Exception) as e:
        load_config(overrides=["tune.keep_checkpoints_top_k=0"])
    assert "keep_checkpoints_top_k" in str(e.value)
    cfg = load_config(overrides=["tune.scheduler=pbt", "tune.num_samples=8", "tune.keep_checkpoints_top_k=1",
                                 f"scaling.storage_path={tmp_path}"])
    with pytest.raises(ConfigError) as e:
        resolve_search(cfg)
    assert "tune.keep_checkpoints_top_k=1" in str(e.value) and ">= 2" in str(e.value)
    ok = load_config(overrides=["tune.scheduler=pbt", "tune.num_samples=8", "tune.keep_checkpoints_top_k=2",
                                f"scaling.storage_path={tmp_path}"])
    resolve_search(ok)


def _checkpointed(search: Path) -> set[str]:
    return {p.parent.name for p in search.glob("*/checkpoint_*") if p.is_dir()}


def test_a_trial_whose_checkpoints_were_deleted_starts_over_on_resume(ray_local, tmp_path, monkeypatch, capsys):
    """Both trials die in their second epoch (after one checkpoint each); with K=1 the worse one loses its
    checkpoint when it ends. `--resume` retries both: the kept one from its checkpoint, the other from scratch."""
    from cnnray.tune.tuning import run_tune

    monkeypatch.setenv("CNNRAY_TEST_FAIL_AT_EPOCH", "1")
    args = [*TINY, "tune.max_epochs=2", "tune.num_samples=2", "tune.max_concurrent_trials=1", "tune.scheduler=fifo",
            "tune.keep_checkpoints_top_k=1", "scaling.max_failures=0", "tracking.enabled=false",
            "registry.enabled=false", "run.name=pruned", f"scaling.storage_path={tmp_path}"]
    first = run_tune(load_config(overrides=args), on_line=print)
    assert first["status"] == "FAILED" and first["counts"]["failed"] == 2, first
    search = tmp_path / "pruned"
    kept = _checkpointed(search)
    assert len(kept) == 1, kept  # the other trial's checkpoint is gone
    scores = {r["trial_id"]: r["best_val_acc"] for r in first["trials"]}
    assert scores[next(iter(kept))] == max(scores.values())
    (pruned,) = set(scores) - kept
    capsys.readouterr()

    monkeypatch.delenv("CNNRAY_TEST_FAIL_AT_EPOCH")
    resumed = run_tune(load_config(overrides=[f"scaling.storage_path={tmp_path}", "run.name=pruned",
                                              "tune.resume=true"]), on_line=print)
    out = capsys.readouterr().out
    assert resumed["status"] == "FINISHED" and resumed["counts"]["finished"] == 2, resumed
    assert f"[{pruned}] starts over from epoch 1" in out, out[-2000:]

    def epochs(trial_id):
        return [json.loads(s)["epochs_done"] for s in (search / trial_id / "result.json").read_text().splitlines()]

    assert epochs(next(iter(kept))) == [1, 2]  # went on from its checkpoint
    assert epochs(pruned) == [1, 1, 2]  # its first epoch again, from scratch
    # The appended logs: one status line per end (2 failures, 2 finishes), one table row per end.
    assert len((search / "cnnray_trial_ends.jsonl").read_text().splitlines()) == 4
    rows = (search / "trials.csv").read_text().splitlines()
    assert rows[0].startswith("trial_id,status,best_val_acc,epochs_run,ended_at") and len(rows) == 5
    assert _checkpointed(search) == {resumed["best"]["trial_id"]}  # K=1 at the end as well


def test_a_trials_mlflow_calls_are_batched(tmp_path, monkeypatch):
    """A trial's child run: created with its tags, params in batches, closed with a batch of tags; never one
    call per param or tag (at thousands of trials each call is a round trip to the store)."""
    from mlflow.tracking import MlflowClient

    from cnnray import tracking
    from cnnray.data import describe_dataset
    from cnnray.tune.runs import ChildRuns, attach_child_run

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = load_config(overrides=[f"tracking.uri={uri}", "tracking.experiment=batched"])
    calls: dict[str, int] = {}
    for name in ("log_batch", "log_param", "set_tag", "search_runs", "create_run", "log_metric"):
        real = getattr(MlflowClient, name)

        def counted(self, *a, _real=real, _name=name, **k):
            calls[_name] = calls.get(_name, 0) + 1
            return _real(self, *a, **k)

        monkeypatch.setattr(MlflowClient, name, counted)
    parent = tracking.start_run(cfg, "batched", uri=uri, resume=False)
    setup = SimpleNamespace(tracking_uri=uri, tune_name="batched", parent_run_id=parent.run_id,
                            experiment_id=parent.experiment_id, prep=SimpleNamespace(info=describe_dataset(cfg.data)))
    calls.clear()
    ctx, _ = attach_child_run(setup, cfg, "t_00000", None, maybe_exists=False, trial_dir=str(tmp_path / "t"))
    assert calls.get("log_param", 0) == 0 and calls.get("set_tag", 0) == 0
    assert calls.get("search_runs", 0) == 0  # a first start does not look for its run by name
    assert calls["create_run"] == 1 and calls["log_batch"] <= 3  # ~150 params: 100 a batch
    assert (tmp_path / "t" / "mlflow_run_id").read_text() == ctx.run_id
    again, _ = attach_child_run(setup, cfg, "t_00000", None, maybe_exists=True, trial_dir=str(tmp_path / "t"))
    assert again.run_id == ctx.run_id and calls.get("search_runs", 0) == 0  # re-attached by the id it kept
    calls.clear()
    ChildRuns(uri, "batched", parent.experiment_id).close(ctx.run_id, "FINISHED", stopped_early=True)
    assert calls.get("set_tag", 0) == 0 and calls["log_batch"] == 1
    run = MlflowClient(tracking_uri=uri).get_run(ctx.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["stopped_early"] == "true"
    assert run.data.params["optim.lr"] == str(cfg.optim.lr) and run.data.tags["mlflow.parentRunId"] == parent.run_id
