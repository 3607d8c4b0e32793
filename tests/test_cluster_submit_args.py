"""`cnnray submit`'s argument handling and local checks, without a cluster (no Ray started)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from cnnray.errors import UserInputError
from cnnray.jobs import submit as js
from cnnray.jobs import validate
from cnnray.jobs.client import Target, _normalize, resolve_target
from workflows.submit import split_args


def test_split_args_takes_submit_flags_anywhere_and_leaves_the_rest_to_the_workflow():
    own, wf, rest = split_args(["--address", "http://h:8265", "train", "train.epochs=3", "--json", "--no-wait",
                                "--env=FOO=1", "--config", "c.yaml"])
    assert wf == "train" and rest == ["train.epochs=3", "--config", "c.yaml"]
    assert own["--address"] == ["http://h:8265"] and own["--env"] == ["FOO=1"] and "--json" in own and "--no-wait" in own
    with pytest.raises(UserInputError, match="--address needs a value"):
        split_args(["train", "--address"])


def test_addresses_normalize_and_ray_client_addresses_are_refused(monkeypatch, tmp_path):
    assert _normalize("127.0.0.1:8265/") == "http://127.0.0.1:8265"
    assert _normalize("https://ray.example:443") == "https://ray.example:443"
    with pytest.raises(UserInputError, match="Ray Client"):
        _normalize("ray://head:10001")
    monkeypatch.setenv("CNNRAY_CLUSTER_DIR", str(tmp_path))
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:8265")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "tok")
    assert resolve_target(None) == Target("http://10.0.0.5:8265", "tok", False)
    monkeypatch.delenv("RAY_ADDRESS")
    with pytest.raises(UserInputError, match="cnnray cluster up"):
        resolve_target(None)


def test_train_submission_pins_paths_and_run_name_to_their_meaning_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checked = validate.check_submission("train", ["data.source=synthetic", "data.image_size=8", "model.width=0.125",
                                       "train.batch_size=16", "scaling.storage_path=rel"], None)
    assert checked.module == "workflows.train" and checked.run_name
    pins = dict(a.split("=", 1) for a in checked.args if "=" in a)
    assert pins["scaling.storage_path"] == str(tmp_path / "rel")
    assert pins["tracking.uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert pins["run.name"] == checked.run_name
    assert any("shared storage" in n for n in checked.notes)


def test_an_existing_run_name_is_refused_like_cnnray_train_does(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ray_results" / "taken").mkdir(parents=True)
    with pytest.raises(UserInputError, match="already exists"):
        validate.check_submission("train", ["run.name=taken"], None)


def test_entrypoint_ships_config_files_and_runs_the_workflow_module(tmp_path):
    conf = tmp_path / "my.yaml"
    conf.write_text("train:\n  epochs: 1\n")
    checked = validate.check_submission("evaluate", ["--model", "models:/m@champion", "--config", str(conf), "data.image_size=8"], None)
    work = tmp_path / "work"
    work.mkdir()
    entry, env = js.build(checked, work, {"A": "1"}, want_json=True)
    assert shlex.split(entry) == ["python", "-m", "workflows.evaluate", "--model", "models:/m@champion", "--config",
                                  "config-0.yaml", "data.image_size=8", "--json"]
    assert (work / "config-0.yaml").read_text() == conf.read_text()
    assert env["working_dir"] == str(work) and env["env_vars"] == {"A": "1"}
    assert [Path(p).name for p in env["py_modules"]] == ["cnnray", "workflows"] and ".venv" in env["excludes"]


def test_job_env_forwards_mlflow_credentials_and_extra_values(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "u")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "p")
    monkeypatch.setenv("SECRETISH", "s")
    env = js.job_env(js.parse_env(["SECRETISH", "B=2"]), "http://mlflow:5000")
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000" and env["MLFLOW_TRACKING_USERNAME"] == "u"
    assert env["MLFLOW_TRACKING_PASSWORD"] == "p" and env["SECRETISH"] == "s" and env["B"] == "2"
    with pytest.raises(UserInputError, match="not set"):
        js.parse_env(["NOT_SET_ANYWHERE_42"])


@pytest.mark.parametrize("summary, code", [
    ({"status": "SUCCEEDED", "driver_exit_code": 0}, 0),
    ({"status": "FAILED", "driver_exit_code": 1}, 1),
    ({"status": "FAILED", "driver_exit_code": 2}, 2),
    ({"status": "STOPPED", "driver_exit_code": None}, 1),
])
def test_exit_code_is_the_jobs_outcome(summary, code):
    assert js.exit_code(summary) == code


def test_last_json_line_is_the_workflow_result():
    assert js.last_json(["epoch 1", '{"status": "FINISHED"}', "WebSocket closed"]) == {"status": "FINISHED"}
    assert js.last_json(["no json here"]) is None


def test_actor_nodes_match_plain_and_qualified_class_names():
    from cnnray.jobs import placement

    actors = [{"class_name": "wrap_function.<locals>.ImplicitFunc", "node_id": "a"},
              {"class_name": "ImplicitFunc", "node_id": "b"}, {"class_name": "TrialRank", "node_id": "c"},
              {"class_name": "NotImplicitFunc", "node_id": "d"}, {"class_name": None, "node_id": "e"}]
    assert placement.worker_nodes(actors, placement.TRIAL_ACTOR) == ["a", "b"]
