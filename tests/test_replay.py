"""`cnnray replay`: a registered version rebuilt from its lineage and judged identical, equivalent or different;
every case it cannot replay refused with exit 2 before any training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnray.errors import UserInputError
from cnnray.loop.determinism import seed_epoch
from cnnray.replay.compare import DIFFERENT, EQUIVALENT, IDENTICAL, judge, paired_test, weights_digest
from cnnray.replay.options import ReplayOptions

REPO = Path(__file__).resolve().parents[1]
# Small enough to train in seconds, converged enough (~98% val by epoch 5) that a replay with another worker
# count lands within what 269 test images can tell apart.
ORIGINAL = ["train.epochs=5", "train.deterministic=true", "scaling.num_workers=2", "scaling.runner=local"]


def _env(uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": uri}


def _cli(tmp: Path, uri: str, workflow: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", f"workflows.{workflow}", *args, "--json"]
    return subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout, env=_env(uri))


def _result(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


class Original:
    """A registered version trained by `cnnray train` on the session's MLflow server."""

    def __init__(self, tmp: Path, uri: str) -> None:
        self.tmp, self.uri = tmp, uri
        self.name, self.experiment = f"replay-{uuid.uuid4().hex[:8]}", f"replay-{uuid.uuid4().hex[:8]}"
        self.keys = [f"tracking.experiment={self.experiment}", f"scaling.storage_path={tmp / 'runs'}"]

    def train(self, *args: str) -> dict:
        proc = _cli(self.tmp, self.uri, "train", *ORIGINAL, f"registry.name={self.name}", *self.keys, *args)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return _result(proc)

    def replay(self, model: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return _cli(self.tmp, self.uri, "replay", model, *self.keys, *args, timeout=timeout)

    def versions(self) -> list:
        return list(_client(self.uri).search_model_versions(f"name='{self.name}'"))


@pytest.fixture(scope="module")
def original(tmp_path_factory, mlflow_server):
    o = Original(tmp_path_factory.mktemp("replay"), mlflow_server)
    o.result = o.train(f"run.name=orig-{uuid.uuid4().hex[:6]}")
    o.label = f"models:/{o.name}/{o.result['version']}"
    return o


# ------------------------------------------------------------------ verdicts

@pytest.mark.slow
def test_replay_on_cpu_with_the_same_workers_is_identical(original):
    before = len(original.versions())
    proc = original.replay(original.label)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = _result(proc)
    assert r["verdict"] == IDENTICAL and r["kind"] == "training run"
    sides = r["side_by_side"]
    assert sides["weights_sha256"]["original"] == sides["weights_sha256"]["replay"]
    assert sides["best_epoch"]["original"] == sides["best_epoch"]["replay"]
    assert abs(sides["test_acc"]["original"] - sides["test_acc"]["replay"]) < 1e-5  # the tag keeps 6 digits
    assert "IDENTICAL" in proc.stdout and "same code, packages" in proc.stdout
    assert len(original.versions()) == before  # nothing registered without --register
    c = _client(original.uri)
    run = c.get_run(r["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["cnnray.replay_of"] == original.label
    assert run.data.tags["cnnray.replay_verdict"] == IDENTICAL
    assert {"replay_curves.png", "replay.json", "config.yaml"} <= {a.path for a in c.list_artifacts(r["run_id"])}


@pytest.mark.slow
def test_replay_with_another_worker_count_is_equivalent_and_registers_on_request(original):
    proc = original.replay(original.label, "scaling.num_workers=1", "--register")
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = _result(proc)
    assert r["verdict"] == EQUIVALENT, r["reason"]
    assert r["side_by_side"]["weights_sha256"]["original"] != r["side_by_side"]["weights_sha256"]["replay"]
    assert r["paired_test"]["p_value"] >= 0.05 and r["paired_test"]["split"] == "test"
    assert {"key": "workers", "original": "2", "replay": "1"} in r["differences"]
    assert "workers" in proc.stdout.split("epoch")[0]  # printed before training started
    mv = _client(original.uri).get_model_version(original.name, r["version"])
    assert mv.tags["cnnray.replay_of"] == original.label
    assert mv.tags["cnnray.replay_verdict"] == EQUIVALENT
    assert mv.tags["cnnray.replay_diff.workers"] == "2 -> 1"
    assert not _client(original.uri).get_registered_model(original.name).aliases.get("champion")
    from cnnray.serve.tables import registry_table
    from cnnray.tracking.listing import list_versions

    row = next(line for line in registry_table(list_versions(original.uri, original.name)).splitlines()
               if line.strip().startswith(str(r["version"]) + " "))
    assert f"={original.result['version']} equivalent" in row


@pytest.mark.slow
def test_a_killed_replay_ends_killed_and_registers_nothing(original):
    before = len(original.versions())
    cmd = [sys.executable, "-m", "workflows.replay", original.label, *original.keys, "--register",
           "run.name=killed-replay"]
    proc = subprocess.Popen(cmd, cwd=original.tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_env(original.uri))
    c = _client(original.uri)
    exp = c.get_experiment_by_name(original.experiment)
    deadline, run = time.time() + 120, None
    while time.time() < deadline and run is None:  # the replay's run exists and has logged an epoch
        found = c.search_runs([exp.experiment_id], "tags.`cnnray.run_name` = 'killed-replay'")
        if found and c.get_metric_history(found[0].info.run_id, "train_loss"):
            run = found[0]
        time.sleep(0.5)
    assert run is not None, "the replay never logged an epoch"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    assert proc.returncode != 0
    assert c.get_run(run.info.run_id).info.status == "KILLED"
    assert len(original.versions()) == before


@pytest.mark.slow
def test_a_fine_tune_replays_from_the_version_it_started_from(original):
    # The alias moves after the fine-tune trained: the replay starts from the recorded parent version anyway.
    child = original.train(f"model.init_from=models:/{original.name}@challenger", "train.epochs=1",
                           f"run.name=child-{uuid.uuid4().hex[:6]}")
    proc = original.replay(f"models:/{original.name}/{child['version']}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = _result(proc)
    assert r["kind"] == "fine-tune" and r["verdict"] == IDENTICAL
    tags = _client(original.uri).get_run(r["run_id"]).data.tags
    assert tags["cnnray.parent_version"] == f"{original.name}/{original.result['version']}"


@pytest.mark.slow
def test_data_altered_after_fingerprinting_is_refused_before_training(tmp_path, mlflow_server):
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for c in range(3):  # three classes of 24 noisy 8x8 images, each class its own brightness
        (root / f"c{c}").mkdir(parents=True)
        for i in range(24):
            px = np.clip(rng.normal(60 + 70 * c, 20, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(px, "L").save(root / f"c{c}" / f"{i}.png")
    o = Original(tmp_path, mlflow_server)
    r = o.train("data.source=imagefolder", f"data.path={root}", "data.image_size=8", "data.channels=1",
                "train.epochs=1", "train.batch_size=8", "model.width=0.125", "run.name=folder-orig")
    Image.fromarray(np.zeros((8, 8), np.uint8), "L").save(root / "c1" / "3.png")  # one image changed
    c = _client(mlflow_server)
    runs_before = len(c.search_runs([c.get_experiment_by_name(o.experiment).experiment_id]))
    proc = o.replay(f"models:/{o.name}/{r['version']}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "data changed" in proc.stderr and "data.source=imagefolder" in proc.stderr and str(root) in proc.stderr
    assert r["data_fingerprint"] in proc.stderr  # both fingerprints named
    assert len(c.search_runs([c.get_experiment_by_name(o.experiment).experiment_id])) == runs_before


# ------------------------------------------------------------------ refused before any work

def _bare_version(uri: str, name: str, config_yaml: str | None, tags: dict[str, str] | None = None) -> str:
    """A registered version whose run holds only what is given (a config, or nothing)."""
    c = _client(uri)
    exp = c.get_experiment_by_name("cnnray-replay-bare")
    exp_id = exp.experiment_id if exp else c.create_experiment("cnnray-replay-bare")
    run = c.create_run(exp_id)
    if config_yaml is not None:
        c.log_text(run.info.run_id, config_yaml, "config.yaml")
    c.set_terminated(run.info.run_id, "FINISHED")
    try:
        c.create_registered_model(name)
    except Exception:  # noqa: BLE001 - exists already
        pass
    mv = c.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id, tags=tags or {})
    return f"models:/{name}/{mv.version}"


def _replay_exit(tmp: Path, uri: str, *args: str) -> subprocess.CompletedProcess:
    proc = _cli(tmp, uri, "replay", *args, timeout=120)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    return proc


def test_a_version_whose_run_lost_its_config_is_refused(tmp_path, mlflow_server):
    label = _bare_version(mlflow_server, f"bare-{uuid.uuid4().hex[:6]}", None)
    proc = _replay_exit(tmp_path, mlflow_server, label)
    assert "no config.yaml artifact" in proc.stderr


def test_a_version_whose_run_is_deleted_is_refused(tmp_path, mlflow_server):
    label = _bare_version(mlflow_server, f"bare-{uuid.uuid4().hex[:6]}", "train:\n  epochs: 1\n")
    c = _client(mlflow_server)
    name, version = label[len("models:/"):].split("/")
    c.delete_run(c.get_model_version(name, version).run_id)
    proc = _replay_exit(tmp_path, mlflow_server, label)
    assert "deleted" in proc.stderr


def test_a_config_from_an_older_cnnray_names_the_keys_that_changed(tmp_path, mlflow_server):
    old = "train:\n  epochs: 1\n  warmup_steps: 10\nmodel:\n  name: resnet18\n"
    label = _bare_version(mlflow_server, f"bare-{uuid.uuid4().hex[:6]}", old, {"cnnray.version.cnnray": "0.0.9"})
    proc = _replay_exit(tmp_path, mlflow_server, label)
    assert "trained by cnnray 0.0.9" in proc.stderr and "train.warmup_steps" in proc.stderr


def test_a_run_uri_without_a_registered_version_is_refused(tmp_path, mlflow_server):
    c = _client(mlflow_server)
    exp = c.get_experiment_by_name("cnnray-replay-bare") or c.get_experiment(c.create_experiment("cnnray-replay-bare"))
    run = c.create_run(exp.experiment_id)
    proc = _replay_exit(tmp_path, mlflow_server, f"runs:/{run.info.run_id}/model")
    assert "has no registered version" in proc.stderr


@pytest.mark.parametrize("args,says", [
    ([], "name the version to replay"),
    (["not-a-uri"], "not a model URI"),
    (["models:/m/1", "train.epochs=3"], "cannot change in a replay"),
    (["models:/m/1", "train.resume=true"], "cannot continue a run"),
    (["models:/m/1", "scaling.num_workers=0"], "scaling.num_workers"),
    (["models:/m/1", "--alpha", "0.7"], "--alpha"),
])
def test_bad_arguments_exit_2_before_mlflow_is_asked(tmp_path, args, says):
    # An unreachable store: these are refused from the arguments alone.
    proc = _replay_exit(tmp_path, "http://127.0.0.1:9", *args)
    assert says in proc.stderr


@pytest.mark.slow
def test_a_run_name_in_use_is_refused(original):
    (original.tmp / "runs" / "taken").mkdir(parents=True, exist_ok=True)
    proc = original.replay(original.label, "run.name=taken", timeout=120)
    assert proc.returncode == 2 and "already exists" in proc.stderr


# ------------------------------------------------------------------ the parts, without training

def test_weights_digest_sees_one_bit_and_the_dtype():
    w = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(2)}
    same = {"b": torch.ones(2), "a": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    assert weights_digest(w) == weights_digest(same)
    flipped = {**w, "a": w["a"].clone()}
    flipped["a"].view(torch.int32)[0, 1] ^= 1  # the last bit of one float
    assert weights_digest(flipped) != weights_digest(w)
    assert weights_digest({**w, "b": torch.ones(2, dtype=torch.float64)}) != weights_digest(w)
    assert weights_digest({**w, "a": w["a"].t().contiguous().t()}) == weights_digest(w)  # layout is not content


def _preds(n: int, wrong_a: int, wrong_b: int, shared_wrong: int = 0):
    labels = np.zeros(n, np.int64)
    a, b = labels.copy(), labels.copy()
    a[:shared_wrong + wrong_a] = 1
    b[:shared_wrong] = 1
    b[shared_wrong + wrong_a:shared_wrong + wrong_a + wrong_b] = 1
    return labels, a, b


def test_verdicts_from_the_paired_test():
    sides = {"weights_sha256": "x" * 64, "test_acc": 0.9}
    assert judge(sides, dict(sides), None).verdict == IDENTICAL
    other = {**sides, "weights_sha256": "y" * 64}
    assert judge(sides, other, None).verdict == DIFFERENT  # differ, and nothing to test them on
    labels, a, b = _preds(300, 3, 2, shared_wrong=5)
    t = paired_test(labels, a, b, a == labels, b == labels, 2, "test", 0.05)
    v = judge(sides, other, t)
    assert v.verdict == EQUIVALENT and t["discordant"] == [3, 2] and "McNemar" in v.reason
    labels, a, b = _preds(300, 40, 2)  # the replay is right on 40 images the original got wrong
    t = paired_test(labels, a, b, a == labels, b == labels, 2, "test", 0.05)
    assert judge(sides, other, t).verdict == DIFFERENT and t["p_value"] < 1e-6


def test_epoch_streams_depend_only_on_seed_epoch_and_rank():
    seed_epoch(7, 3, 1)
    first = (torch.rand(4), np.random.rand(2))
    torch.rand(100)  # whatever ran before
    seed_epoch(7, 3, 1)
    again = (torch.rand(4), np.random.rand(2))
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    seed_epoch(7, 4, 1)
    assert not torch.equal(torch.rand(4), first[0])
    seed_epoch(7, 3, 0)
    assert not torch.equal(torch.rand(4), first[0])


def test_options_keep_only_what_a_replay_may_change():
    opts = ReplayOptions("models:/m@champion", ("scaling.num_workers=1", "data.path=/d"), address="ray://h:10001")
    keys = opts.validate().keys
    assert keys == {"scaling.num_workers": "1", "data.path": "/d", "run.address": "ray://h:10001"}
    with pytest.raises(UserInputError, match="model.width"):
        ReplayOptions("models:/m/1", ("model.width=0.5",)).validate()


def test_deterministic_with_compile_is_refused():
    from cnnray.config import load_config
    from cnnray.errors import ConfigError
    from cnnray.run.plan import prepare_run

    cfg = load_config(overrides=["train.deterministic=true", "train.compile=true", "tracking.enabled=false"])
    with pytest.raises(ConfigError, match="train.compile=false"):
        prepare_run(cfg)


@pytest.mark.slow
def test_submit_checks_a_replay_locally_and_pins_where_it_runs(original, monkeypatch):
    from cnnray.jobs.validate import check_submission

    monkeypatch.chdir(original.tmp)
    checked = check_submission("replay", [original.label, *original.keys], env_uri=original.uri)
    assert checked.module == "workflows.replay" and checked.run_name.startswith(f"replay-{original.name}-v")
    assert f"tracking.uri={original.uri}" in checked.args and f"run.name={checked.run_name}" in checked.args
    with pytest.raises(UserInputError, match="cannot change in a replay"):
        check_submission("replay", [original.label, "optim.lr=0.1"], env_uri=original.uri)
    with pytest.raises(UserInputError, match="no registered model"):
        check_submission("replay", [f"models:/{original.name}-missing/1"], env_uri=original.uri)


@pytest.mark.slow
def test_a_deterministic_run_restarted_after_a_crash_ends_with_the_uninterrupted_weights(tmp_path):
    # Dropout and mixup draw from the global stream: reseeded per epoch, a restart from the epoch-1
    # checkpoint draws what the uninterrupted run drew.
    keys = ["data.image_size=16", "model.width=0.125", "train.batch_size=64", "scaling.num_workers=2",
            "train.epochs=3", "train.deterministic=true", "tracking.enabled=false", "model.drop_rate=0.2",
            "data.augment.mixup_alpha=0.2", f"scaling.storage_path={tmp_path / 'runs'}", "scaling.runner=local"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(REPO)}
    best = {}
    for name, extra in (("straight", {}), ("crashed", {"CNNRAY_TEST_FAIL_AT_EPOCH": "1"})):
        proc = subprocess.run([sys.executable, "-m", "workflows.train", *keys, f"run.name={name}", "--json"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=600, env={**env, **extra})
        assert proc.returncode == 0, proc.stderr[-3000:]
        r = _result(proc)
        best[name] = torch.load(Path(r["checkpoint"]) / "best_model.pt", weights_only=True)
    assert (tmp_path / "runs" / "crashed" / ".fail_marker").exists()  # it did crash and restart
    assert weights_digest(best["straight"]) == weights_digest(best["crashed"])
