"""`cnnray tune` end to end on the real local Ray cluster and MLflow server: ASHA, resume, PBT,
HyperBand + Optuna, median stopping + grid search + time budget."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnray.config import load_config
from cnnray.tune.trial_tables import format_tune_summary

# 16x16 digits, a narrow ResNet-18, one worker per trial, two trials at a time: fits 2 cores.
TINY = ["data.image_size=16", "model.width=0.125", "train.batch_size=64", "tune.trial_workers=1",
        "tune.max_concurrent_trials=2", "tune.max_epochs=2"]


def _args(tmp_path, uri, *extra):
    return TINY + [f"tracking.uri={uri}", f"scaling.storage_path={tmp_path / 'ray'}",
                   f"tracking.experiment=tune-{tmp_path.name}", *extra]


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _children(uri, parent):
    client = _client(uri)
    return client.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")


def _steps(uri, run_id, key="val_acc"):
    return sorted(m.step for m in _client(uri).get_metric_history(run_id, key))


def test_asha_search_tracks_every_trial_and_registers_the_challenger(ray_local, mlflow_server, tmp_path,
                                                                     split_audit_guard):
    from cnnray.tune.tuning import run_tune

    lines: list[str] = []
    # As Ray Train runs (the other searches here train in the trial's actor): stopped trials abort their runs.
    cfg = load_config(overrides=_args(tmp_path, mlflow_server, "run.name=asha", "tune.num_samples=3",
                                      "registry.name=tune-asha", "tune.trial_runner=train",
                                      "tune.keep_checkpoints_top_k=1",
                                      f"tracking.price_per_device_hour.cpu={CPU_PRICE}"))
    result = run_tune(cfg, on_line=lines.append)
    assert result["status"] == "FINISHED", result
    assert any("trials in Ray Train runs" in line for line in lines)
    assert list((tmp_path / "ray" / "asha" / "train").iterdir())  # a Train run folder per trial start
    assert result["num_trials"] == 3 and result["counts"]["failed"] == 0
    assert result["counts"]["finished"] >= 1  # ASHA lets the best run to the end
    client = _client(mlflow_server)
    parent = client.get_run(result["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.params["tune.scheduler"] == "asha" and parent.data.params["tune.num_samples"] == "3"
    children = _children(mlflow_server, parent)
    assert len(children) == 3
    rows = {r["trial_id"]: r for r in result["trials"]}
    assert {c.data.tags["cnnray.trial_id"] for c in children} == set(rows)
    for child in children:
        row = rows[child.data.tags["cnnray.trial_id"]]
        assert child.info.status == "FINISHED"
        assert child.data.tags["stopped_early"] == str(row["status"] == "stopped_early").lower()
        # Every epoch the trial ran reached MLflow, stopped trials included, each once.
        assert _steps(mlflow_server, child.info.run_id) == list(range(row["epochs_run"]))
        assert float(child.data.params["optim.lr"]) == row["optim.lr"]
        assert child.data.params["train.epochs"] == "2"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "trials.txt", "best_so_far.png", "metric_vs_params.png", "top_trials.png",
            "search_space.yaml"} <= artifacts
    best = result["best"]
    assert best["value"] == max(r["best_val_acc"] for r in result["trials"])
    assert parent.data.metrics["best_val_acc"] == best["value"]
    # tune.keep_checkpoints_top_k=1: only the winner's checkpoint (and Train run folders) are left on disk.
    folder = tmp_path / "ray" / "asha"
    assert {p.parent.name for p in folder.glob("*/checkpoint_*")} == {best["trial_id"]}
    assert len(list(folder.glob(f"{best['trial_id']}/checkpoint_*"))) == 1  # its latest only
    assert {p.name.rsplit("-", 1)[0] for p in (folder / "train").iterdir()} == {best["trial_id"]}
    rows_csv = (folder / "trials.csv").read_text().splitlines()  # appended as each trial ended
    assert len(rows_csv) == 4 and {r.split(",")[0] for r in rows_csv[1:]} == set(rows)
    mv = client.get_model_version_by_alias("tune-asha", "challenger")
    assert mv.version == result["version"] and mv.run_id == best["run_id"]
    assert mv.tags["cnnray.tune_run"] == "asha" and mv.tags["cnnray.trial_id"] == best["trial_id"]
    assert mv.tags["cnnray.tune_parent_run_id"] == parent.info.run_id
    _assert_search_cost(client, result, parent, children, artifacts, mv, max_epochs=2)
    assert any("stopped by the scheduler" in line for line in lines) == (result["counts"]["stopped_early"] > 0)
    # Three trials trained and one won on val; the test images were read once, for the winner's version.
    (read,) = split_audit_guard.lines()
    assert "cnnray.run.held_out:evaluate_held_out" in read["stack"] and "cnnray.tune." in read["stack"]
    # `cnnray report` of the tuned version shows its search: the parent's plots and trials table.
    from cnnray.insight.report_version import report_version
    from cnnray.tracking.uri import parse_model_uri

    page = report_version(parse_model_uri("models:/tune-asha@challenger"), mlflow_server, tmp_path, log=False)
    assert page["tuned"] and page["figures"]["search"] == 3 and "search" not in page["missing"]
    search = Path(page["path"]).read_text().split('<section id="search">')[1].split("</section>")[0]
    assert parent.info.run_id in search and best["trial_id"] in search and "Trials, best first" in search
    _assert_resources_released(ray_local)
    # `cnnray replay` of the winner trains its trial's config (here on Ray Train, as the trial did): bit for bit.
    from cnnray.replay.options import ReplayOptions
    from cnnray.replay.replay_command import run_replay

    opts = ReplayOptions("models:/tune-asha@challenger", (f"tracking.uri={mlflow_server}",
                                                          f"scaling.storage_path={tmp_path / 'replay'}")).validate()
    replay = run_replay(opts, on_line=lines.append)
    assert replay["kind"] == "Tune trial" and replay["verdict"] == "identical", replay
    assert client.get_run(replay["run_id"]).data.tags["cnnray.replay_of"] == f"models:/tune-asha/{result['version']}"
    _assert_resources_released(ray_local)


CPU_PRICE = 0.5  # per CPU-hour, so that the cost has money too


def _assert_search_cost(client, result, parent, children, artifacts, mv, *, max_epochs):
    """Every child run has its cost figures; the parent's are their sums, its saving the formula over them."""
    cost = result["cost"]
    assert cost["device_kind"] == "cpu" and len(cost["trials"]) == len(children) and cost["wall_s"] > 0
    finals = [c.data.metrics for c in children]
    for m in finals:
        assert {"cost_device_s", "cost_cpu_s", "cost_wall_s", "cost_images", "cost_train_s", "cost_epoch_device_s",
                "cost_device_hours"} <= set(m)
    pm = parent.data.metrics
    assert pm["cost_device_s"] == pytest.approx(sum(m["cost_device_s"] for m in finals), rel=1e-6)
    assert pm["cost_images"] == pytest.approx(sum(m["cost_images"] for m in finals))
    assert pm["cost_device_hours"] == pytest.approx(pm["cost_device_s"] / 3600, rel=1e-6)
    assert pm["cost_money"] == pytest.approx(CPU_PRICE * pm["cost_device_hours"], rel=1e-6)
    assert pm["cost_wall_s"] >= cost["trials_wall_s"] / 2  # two trials at a time
    saved = 0.0
    for child in children:
        epochs = [h.value for h in client.get_metric_history(child.info.run_id, "cost_epoch_device_s")]
        if child.data.tags["stopped_early"] == "true":
            saved += (max_epochs - len(epochs)) * sum(epochs) / len(epochs)
    assert pm["cost_saved_device_hours"] == pytest.approx(saved / 3600, rel=1e-6, abs=1e-12)
    assert (pm["cost_saved_device_hours"] > 0) == (result["counts"]["stopped_early"] > 0)
    assert {"cost.txt", "cost.csv"} <= artifacts
    assert mv.tags["cnnray.search_cost_device_hours"] == f"{cost['device_hours']:.6g}"
    assert mv.tags["cnnray.search_cost_money"] == f"{cost['money']:.6g}"
    assert "cnnray.end_reason" not in parent.data.tags and "end_reason" not in result


def _assert_resources_released(ray, timeout_s: float = 60.0) -> None:
    """Stopped trials must give back their Train workers' CPUs, or a long search starves."""
    total = ray.cluster_resources().get("CPU")
    deadline = time.time() + timeout_s
    while ray.available_resources().get("CPU") != total and time.time() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU") == total, (ray.available_resources(), total)


def test_interrupted_search_resumes_with_every_trial_once(ray_local, mlflow_server, tmp_path):
    from cnnray.tracking import find_run_by_name

    address = ray_local.get_runtime_context().gcs_address
    # One trial at a time: when the first trial has finished, two more still have to run, so the signal below
    # cannot race the end of the whole search (with two at a time, both others could finish first).
    args = ["tune", *_args(tmp_path, mlflow_server, "run.name=intr", "tune.num_samples=3", "tune.scheduler=fifo",
                           "tune.max_concurrent_trials=1", "registry.name=tune-intr"), f"--address={address}", "--json"]
    proc = subprocess.Popen([sys.executable, "-m", "cnnray.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    experiment = f"tune-{tmp_path.name}"
    deadline, parent_id, first = time.time() + 300, None, None
    while time.time() < deadline and proc.poll() is None:
        parent_id = parent_id or find_run_by_name(mlflow_server, experiment, "intr")
        if parent_id:
            done = [c for c in _children(mlflow_server, _client(mlflow_server).get_run(parent_id))
                    if c.info.status == "FINISHED"]
            if done:
                first = done[0].data.tags["cnnray.trial_id"]
                break
        time.sleep(0.5)
    if not first or proc.poll() is not None:
        proc.kill()
        raise AssertionError(f"no trial finished while the search ran:\n{proc.communicate()[0][-3000:]}")
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=180)[0]
    assert proc.returncode != 0, out[-3000:]
    assert _client(mlflow_server).get_run(parent_id).info.status == "KILLED"

    again = subprocess.run([sys.executable, "-m", "cnnray.cli", *args], capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    resumed = subprocess.run([sys.executable, "-m", "cnnray.cli", "tune", "--resume", "intr",
                              f"scaling.storage_path={tmp_path / 'ray'}", f"--address={address}", "--json"],
                             capture_output=True, text=True, cwd=tmp_path, timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    result = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert result["parent_run_id"] == parent_id and result["num_trials"] == 3
    # What the whole search cost, the epochs before the interrupt included.
    cost = result["cost"]
    assert cost["trial_epochs"] == result["trial_epochs"] and len(cost["trials"]) == 3 and cost["device_s"] > 0
    assert all(t["epochs"] >= 1 and t["device_hours"] > 0 for t in cost["trials"]) and "cost_table" not in result
    assert _client(mlflow_server).get_run(parent_id).data.metrics["cost_device_s"] == pytest.approx(cost["device_s"])
    assert result["counts"]["finished"] == 3
    parent = _client(mlflow_server).get_run(parent_id)
    assert parent.info.status == "FINISHED"
    children = _children(mlflow_server, parent)
    ids = [c.data.tags["cnnray.trial_id"] for c in children]
    assert sorted(ids) == sorted({r["trial_id"] for r in result["trials"]}) and len(ids) == 3  # no duplicates
    for child in children:
        assert child.info.status == "FINISHED"
        assert _steps(mlflow_server, child.info.run_id) == [0, 1]
    # The trial that had finished before the interrupt was not run again: Tune holds its two epochs, once each.
    reports = (tmp_path / "ray" / "intr" / first / "result.json").read_text().splitlines()
    assert [json.loads(line)["epochs_done"] for line in reports] == [1, 2]
    assert result["version"]


def test_pbt_exploit_restores_another_trials_checkpoint(ray_local, mlflow_server, tmp_path):
    from cnnray.tune.tuning import run_tune

    space = tmp_path / "pbt.yaml"
    # One hopeless lr and one good one: the bad trial must copy the good one. The seed is one whose draws are
    # exactly those two lrs (found with the search's own seeded sampler), not a seed that happened to work once.
    space.write_text("params:\n  optim.lr: [1.0e-6, 3.0e-3]\n  train.label_smoothing: {type: uniform, low: 0.0, high: 0.1}\n")
    # 5 epochs: asynchronous PBT exploits only when the bad trial reports after the good one has a score; on a
    # loaded machine the bad one can lead at every one of 2 perturbation points, rarely at all 4.
    overrides = _args(tmp_path, mlflow_server, "run.name=pbt", "tune.scheduler=pbt", "tune.num_samples=2",
                      "tune.max_epochs=5", "registry.enabled=false", "tune.keep_checkpoints_top_k=1")
    seed = _seed_drawing(overrides, space, "optim.lr", {1.0e-6, 3.0e-3})
    cfg = load_config(overrides=[*overrides, f"tune.seed={seed}"])
    result = run_tune(cfg, space_ref=str(space), on_line=lambda s: None)
    assert result["status"] == "FINISHED", result
    restored = [r for r in result["trials"] if r.get("restored_from")]
    assert restored, result["table"]
    ids = {r["trial_id"] for r in result["trials"]}
    for r in restored:
        source = r["restored_from"].split("@")[0]
        assert source in ids and source != r["trial_id"]  # another trial's checkpoint
        assert r["epochs_run"] == 5  # and it carried on from that checkpoint to the end
    children = _children(mlflow_server, _client(mlflow_server).get_run(result["parent_run_id"]))
    assert len(children) == 2  # a restarted trial re-attaches its run
    tagged = [c for c in children if "cnnray.restored_from" in c.data.tags]
    # Every trial that trained on from another trial's checkpoint says so on its run (a clone at the last
    # epoch, with nothing left to train, is tagged too).
    assert {r["trial_id"] for r in restored} <= {c.data.tags["cnnray.trial_id"] for c in tagged}
    assert all(c.info.status == "FINISHED" for c in children), [(c.data.tags["cnnray.trial_id"], c.info.status) for c in children]
    # Running PBT trials kept every checkpoint (one may be cloned); once both ended, K=1 left the best's alone.
    folder = tmp_path / "ray" / "pbt"
    assert {p.parent.name for p in folder.glob("*/checkpoint_*")} == {result["best"]["trial_id"]}
    _assert_resources_released(ray_local)


@pytest.mark.parametrize("workers", [1, 2])
def test_actor_trial_killed_mid_epoch_restarts_from_its_checkpoint(workers, ray_local, mlflow_server, tmp_path, monkeypatch):
    """A trial trained in its own actor has no Train run to retry it: Tune restarts it from its last checkpoint.
    One worker: the trial's actor dies. Two: its rank-1 actor dies, and rank 0's collectives fail with it."""
    from cnnray.tune.tuning import run_tune

    monkeypatch.setenv("CNNRAY_TEST_FAIL_AT_EPOCH", "1")  # rank 1 (or 0 alone) exits half-way through epoch 2
    lines: list[str] = []
    cfg = load_config(overrides=_args(tmp_path, mlflow_server, "run.name=crash", "tune.scheduler=fifo",
                                      "tune.num_samples=1", "scaling.max_failures=1", "registry.enabled=false",
                                      f"tune.trial_workers={workers}"))
    result = run_tune(cfg, on_line=lines.append)
    assert result["status"] == "FINISHED", result
    assert any("trials in their own actors" in line for line in lines)
    assert not (tmp_path / "ray" / "crash" / "train").exists()  # no Train run was started
    (row,) = result["trials"]
    assert row["status"] == "finished" and row["epochs_run"] == 2
    trial_dir = tmp_path / "ray" / "crash" / row["trial_id"]
    marker = next(trial_dir.rglob(".fail_marker")).read_text()
    assert f"rank {min(1, workers - 1)} killed itself" in marker  # it really died
    # Epoch 1 once, from before the crash; epoch 2 from the restarted process, which began at the checkpoint.
    reports = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
    assert [r["epochs_done"] for r in reports] == [1, 2]
    assert {r["world_size"] for r in reports} == {workers}
    (child,) = _children(mlflow_server, _client(mlflow_server).get_run(result["parent_run_id"]))
    assert child.info.status == "FINISHED" and _steps(mlflow_server, child.info.run_id) == [0, 1]
    o = result["trial_overhead"]
    assert o["trials"] == 1 and o["mean_work_s"] > 0 and o["median_s"] >= 0
    _assert_resources_released(ray_local)


def test_two_worker_actor_trials_stop_together_and_keep_their_group(ray_local, mlflow_server, tmp_path,
                                                                    digits_model):
    """DDP trials without Train runs: each trial's actor is rank 0 of rank actors it keeps for the next trial;
    a scheduler's stop reaches every rank (the next trial in that group would hang otherwise). Every trial
    starts from the same model.init_from weights (the shared trained fixture's), staged once under the search;
    the backbone stays frozen here, so each trial's backbone is still the file's while the heads, trained at
    the trials' own learning rates, differ (from a random frozen backbone they all tie, and ASHA stops none)."""
    import torch

    from cnnray.run.outcome import load_best
    from cnnray.tune.tuning import run_tune

    init = tmp_path / "init.pt"
    src = digits_model.weights  # a plain ResNet-18/8: fits the space's attn none and cbam (near identity)
    torch.save(src, init)
    lines: list[str] = []
    cfg = load_config(overrides=_args(tmp_path, mlflow_server, "run.name=ddp", "tune.scheduler=asha",
                                      "tune.num_samples=4", "tune.max_concurrent_trials=1", "tune.trial_workers=2",
                                      "registry.enabled=false", "tune.seed=3", f"model.init_from={init}",
                                      "train.freeze_backbone_epochs=2", "train.ema=false"))
    result = run_tune(cfg, on_line=lines.append)
    assert result["status"] == "FINISHED", result
    assert any("trials in their own actors" in line for line in lines)
    assert any(line.startswith("initial weights: init.pt") for line in lines), lines
    assert (tmp_path / "ray" / "ddp" / "init" / "weights.pt").is_file()
    assert not (tmp_path / "ray" / "ddp" / "train").exists()  # no Train run was started
    counts = result["counts"]
    assert counts["failed"] == 0 and counts["finished"] >= 1 and counts["stopped_early"] >= 1, counts
    for row in result["trials"]:  # every trial trained as 2 DDP ranks, a stopped one before the next began
        reports = [json.loads(line) for line in (tmp_path / "ray" / "ddp" / row["trial_id"] / "result.json")
                   .read_text().splitlines()]
        assert [r["world_size"] for r in reports] == [2] * row["epochs_run"] and row["epochs_run"] >= 1
        (ckpt,) = sorted((tmp_path / "ray" / "ddp" / row["trial_id"]).glob("checkpoint_*"))[-1:]
        weights, _ = load_best(str(ckpt))
        for k in ("conv1.weight", "layer2.1.conv2.weight", "layer3.0.bn1.running_var"):
            assert torch.equal(weights[k], src[k]), (row["trial_id"], k)
    children = _children(mlflow_server, _client(mlflow_server).get_run(result["parent_run_id"]))
    assert len(children) == 4 and {c.info.status for c in children} == {"FINISHED"}
    _assert_resources_released(ray_local)


def _draws(cfg, space_path):
    """The parameter sets the search's own (seeded) sampler gives its trials, in order, without running any."""
    from ray import tune

    from cnnray.tune.search import build_search
    from cnnray.tune.space import load_space

    tune.register_trainable("cnnray-test-draws", lambda config: None)
    search_alg, params, num_samples = build_search(cfg.tune, load_space(str(space_path)))
    search_alg.add_configurations({"draws": {"run": "cnnray-test-draws", "config": params, "num_samples": num_samples}})
    return [search_alg.next_trial().config for _ in range(num_samples)]


def _seed_drawing(overrides, space_path, key, values):
    """The first tune.seed whose trials draw exactly `values` for `key` (deterministic: the sampler is seeded)."""
    for seed in range(50):
        cfg = load_config(overrides=[*overrides, f"tune.seed={seed}"])
        first = [d[key] for d in _draws(cfg, space_path)]
        if set(first) == values and first == [d[key] for d in _draws(cfg, space_path)]:  # and draws repeat
            return seed
    raise AssertionError(f"no tune.seed in 0..49 draws {sorted(values)} for {key}")


def test_hyperband_scheduler_with_optuna_search(ray_local, mlflow_server, tmp_path):
    from cnnray.tune.tuning import run_tune

    space = tmp_path / "small.yaml"
    space.write_text("params:\n  optim.lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}\n"
                     "  train.label_smoothing: {type: uniform, low: 0.0, high: 0.1}\n")
    cfg = load_config(overrides=_args(tmp_path, mlflow_server, "run.name=hb", "tune.scheduler=hyperband",
                                      "tune.search=optuna", "tune.num_samples=2", "registry.enabled=false"))
    lines: list[str] = []
    result = run_tune(cfg, space_ref=str(space), on_line=lines.append)
    assert result["status"] == "FINISHED", result
    assert (result["scheduler"], result["search"]) == ("hyperband", "optuna")
    assert result["num_trials"] == 2 and result["counts"]["failed"] == 0 and result["counts"]["unfinished"] == 0
    assert result["counts"]["finished"] >= 1, result["table"]  # HyperBand runs the best of each bracket to max_t
    lrs = [r["optim.lr"] for r in result["trials"]]
    assert all(1.0e-3 <= lr <= 1.0e-2 for lr in lrs) and len(set(lrs)) == 2  # optuna's draws, from the space
    for r in result["trials"]:
        assert 1 <= r["epochs_run"] <= 2
        assert (r["epochs_run"] == 2) == (r["status"] == "finished"), r
    assert result["best"]["value"] == max(r["best_val_acc"] for r in result["trials"])
    parent = _client(mlflow_server).get_run(result["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.params["tune.scheduler"] == "hyperband" and parent.data.params["tune.search"] == "optuna"
    children = _children(mlflow_server, parent)
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
    for child in children:
        assert float(child.data.params["optim.lr"]) in lrs
    _assert_resources_released(ray_local)


GRID = [round(1.0e-3 * (1 + i), 4) for i in range(36)]  # 36 learning rates, 1e-3 .. 3.6e-2
BUDGET_S = 30  # trial actors start and train a first epoch inside it, even beside another test file (15 s did not)


@pytest.fixture(scope="module")
def budget_search(ray_local, mlflow_server, tmp_path_factory):
    """A median-stopping grid search that would take minutes, stopped by tune.time_budget_s (run once)."""
    from cnnray.tune.tuning import run_tune

    tmp_path = tmp_path_factory.mktemp("timecap")
    space = tmp_path / "grid.yaml"
    space.write_text("params:\n  optim.lr: [" + ", ".join(map(str, GRID)) + "]\n")
    # 36 grid points of up to 3 epochs, two at a time, would take minutes; the budget stops the search after 30 s.
    cfg = load_config(overrides=_args(tmp_path, mlflow_server, "run.name=timecap", "tune.scheduler=median",
                                      "tune.search=grid", "tune.grace_period=1", f"tune.time_budget_s={BUDGET_S}",
                                      "tune.max_epochs=3", "registry.enabled=false"))
    lines: list[str] = []
    result = run_tune(cfg, space_ref=str(space), on_line=lines.append)
    return result, lines


def test_median_scheduler_with_grid_search_stops_at_the_time_budget(budget_search, ray_local, mlflow_server):
    result, _ = budget_search
    # Spending the budget is the search's normal end, not an interruption: FINISHED with the trials it got through.
    assert result["status"] == "FINISHED", result
    assert "error" not in result, result
    assert (result["scheduler"], result["search"]) == ("median", "grid")
    ran = [r for r in result["trials"] if r["epochs_run"] > 0]
    assert ran and len(ran) < len(GRID), result["table"]
    assert result["counts"]["failed"] == 0
    # Grid search: each point at most once, and only points of the grid.
    lrs = [r["optim.lr"] for r in result["trials"]]
    assert len(lrs) == len(set(lrs)) and set(lrs) <= set(GRID)
    # It stopped because of the budget: well before the grid could have been run through.
    assert BUDGET_S <= result["wall_seconds"] < BUDGET_S + 120, result["wall_seconds"]
    parent = _client(mlflow_server).get_run(result["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.params["tune.time_budget_s"] == str(float(BUDGET_S))
    assert parent.data.params["tune.scheduler"] == "median" and parent.data.params["tune.search"] == "grid"
    # Trials cut by the budget give their CPUs back.
    _assert_resources_released(ray_local)


def test_the_search_result_says_the_time_budget_ended_it(budget_search):
    from cnnray.tune.trial_tables import format_tune_summary

    result, lines = budget_search
    assert result.get("stopped_by") == "time_budget", result
    assert "time budget (tune.time_budget_s) ended the search" in format_tune_summary(result)


def test_a_device_budget_ends_the_search_at_an_epoch_boundary(budget_search, ray_local, mlflow_server, tmp_path):
    """tune.budget_device_hours of 2.5 trial-epochs (as the grid search above measured them): one trial at a time,
    the first stops after its 2nd epoch of 3 and the second never starts; FINISHED, and the winner registered."""
    from cnnray.tune.tuning import run_tune

    per_epoch = budget_search[0]["cost"]["mean_epoch_device_s"]
    budget_h = round(2.5 * per_epoch / 3600, 9)
    cfg = load_config(overrides=_args(tmp_path, mlflow_server, "run.name=devbudget", "tune.scheduler=fifo",
                                      "tune.num_samples=2", "tune.max_concurrent_trials=1", "tune.max_epochs=3",
                                      f"tune.budget_device_hours={budget_h}", "registry.name=tune-budget"))
    lines: list[str] = []
    result = run_tune(cfg, on_line=lines.append)
    assert result["status"] == "FINISHED" and result["end_reason"] == "budget", result
    assert 1 <= result["trial_epochs"] < 2 * 3, result["table"]  # without the budget: every epoch of both trials
    assert any("would exceed it: no new trials" in line for line in lines), lines
    cost = result["cost"]
    assert cost["budget_device_hours"] == budget_h and cost["device_hours"] < 2 * budget_h
    assert all(t["saved_device_hours"] == 0 for t in cost["trials"])  # the budget's stops are no scheduler saving
    assert "ended the search" in format_tune_summary(result)
    client = _client(mlflow_server)
    parent = client.get_run(result["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["cnnray.end_reason"] == "budget"
    assert parent.data.metrics["cost_device_s"] == pytest.approx(cost["device_s"])
    mv = client.get_model_version("tune-budget", result["version"])
    assert mv.tags["cnnray.search_cost_device_hours"] == f"{cost['device_hours']:.6g}"
    assert {c.info.status for c in _children(mlflow_server, parent)} == {"FINISHED"}
    _assert_resources_released(ray_local)


def test_a_device_budget_below_one_trial_epoch_exits_2(ray_local, mlflow_server, tmp_path, capsys):
    from cnnray.console import EXIT_BAD_INPUT, run_workflow
    from cnnray.tracking import find_run_by_name
    from cnnray.tune.tuning import run_tune

    cfg = load_config(overrides=_args(tmp_path, mlflow_server, "run.name=tinybudget", "tune.scheduler=fifo",
                                      "tune.num_samples=1", "tune.budget_device_hours=1e-9", "registry.enabled=false"))
    assert run_workflow(lambda: run_tune(cfg, on_line=lambda s: None)) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "tune.budget_device_hours=1e-09 is smaller than one trial-epoch's measured cost (" in err, err
    assert "device-seconds" in err
    parent = _client(mlflow_server).get_run(find_run_by_name(mlflow_server, f"tune-{tmp_path.name}", "tinybudget"))
    assert parent.info.status == "FAILED" and parent.data.tags["cnnray.end_reason"] == "budget"
    _assert_resources_released(ray_local)
