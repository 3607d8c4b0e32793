"""`cnnray replay` of a compressed version: the source's replay, then the compression command recorded on the
version (cnnray.compress.command) run again on the replayed source, judged against the version; a compressed version
that records no command is refused with exit 2 before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from compress_cli import run_compress, versions

from cnnray.replay.compare import IDENTICAL

REPO = Path(__file__).resolve().parents[1]
# A 2-epoch deterministic digits run on one local rank: a few seconds, and bit for bit the same when replayed on CPU.
SOURCE = ["data.image_size=16", "model.name=resnet18", "model.width=0.125", "train.batch_size=64",
          "train.precision=fp32", "train.ema=false", "train.epochs=2", "train.deterministic=true",
          "scaling.num_workers=1", "scaling.runner=local"]


def _replay(capsys, *args: str) -> tuple[int, dict | None, object]:
    from workflows import replay

    code = replay.main(list(args))
    out = capsys.readouterr()
    last = out.out.strip().splitlines()[-1] if out.out.strip() else "{}"
    return code, (json.loads(last) if last.startswith("{") else None), out


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """models:/rc/1, trained by `cnnray train` (its run saved the config.yaml a replay rebuilds it from)."""
    tmp = tmp_path_factory.mktemp("replay-compressed")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "workflows.train", *SOURCE, "registry.name=rc", "run.name=rc-source",
                           f"tracking.uri={uri}", "tracking.experiment=rc", f"scaling.storage_path={tmp / 'runs'}"],
                          cwd=tmp, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return tmp, uri


@pytest.mark.slow
def test_replay_of_a_quantized_version_is_identical_and_registers_nothing(source, capsys, monkeypatch):
    tmp, uri = source
    monkeypatch.chdir(tmp)
    code, r, out = run_compress(capsys, "--model", "models:/rc/1", "--method", "quantize", "--calibration", "128",
                                "--no-compile", "--repeats", "1", f"tracking.uri={uri}", "tracking.experiment=rc",
                                "--json")
    assert code == 0 and r["registered"], out.out[-3000:] + out.err[-3000:]
    from mlflow.tracking import MlflowClient

    command = json.loads(MlflowClient(uri).get_model_version("rc", r["version"]).tags["cnnray.compress.command"])
    assert command["method"] == "quantize" and command["calibration"] == 128 and command["compile"] is False
    before = versions(uri, "rc")
    code, rep, out = _replay(capsys, f"models:/rc/{r['version']}", f"tracking.uri={uri}",
                             f"scaling.storage_path={tmp / 'runs'}", "--json")
    assert code == 0, out.out[-3000:] + out.err[-3000:]
    # Identical at both levels: a deterministic CPU replay of the source, then the same fixed calibration draw.
    assert rep["verdict"] == IDENTICAL and rep["source_replay"]["verdict"] == IDENTICAL, rep["reason"]
    assert rep["source_replay"]["replay_of"] == "models:/rc/1" and rep["kind"].startswith("compressed version")
    sides = rep["side_by_side"]
    assert sides["weights_sha256"]["original"] == sides["weights_sha256"]["replay"]
    assert sides["test_acc"]["original"] == sides["test_acc"]["replay"]
    assert "--method quantize --calibration 128 --no-compile" in out.out and "IDENTICAL (models:/rc/" in out.out
    assert versions(uri, "rc") == before  # nothing registered without --register


@pytest.mark.slow
def test_replay_of_a_chain_with_a_fine_tune_registers_each_step_on_request(source, capsys, monkeypatch):
    """quantize of a pruned (fine-tuned: a training run started from the in-memory replayed source) version."""
    tmp, uri = source
    monkeypatch.chdir(tmp)
    keys = [f"tracking.uri={uri}", "tracking.experiment=rc", "--repeats", "1", "--json"]
    # The gate is not what this test is about: one fine-tune epoch recovers 1-2 points, by CPU (AMD vs Intel).
    code, pruned, out = run_compress(capsys, "--model", "models:/rc/1", "--method", "prune", "--amount", "0.25",
                                     "--max-acc-drop", "10",
                                     "train.epochs=1", "scaling.num_workers=1", "scaling.runner=local",
                                     f"scaling.storage_path={tmp / 'runs'}", "run.name=rc-prune", *keys)
    assert code == 0 and pruned["registered"], out.out[-3000:] + out.err[-3000:]
    code, q, out = run_compress(capsys, "--model", f"models:/rc/{pruned['version']}", "--method", "quantize",
                                "--calibration", "64", "--no-compile", *keys)
    assert code == 0 and q["registered"], out.out[-3000:] + out.err[-3000:]
    before = versions(uri, "rc")
    code, rep, out = _replay(capsys, f"models:/rc/{q['version']}", f"tracking.uri={uri}",
                             f"scaling.storage_path={tmp / 'runs'}", "--register", "--json")
    assert code == 0, out.out[-3000:] + out.err[-3000:]
    prune_replay = rep["source_replay"]
    assert [rep["verdict"], prune_replay["verdict"], prune_replay["source_replay"]["verdict"]] == [IDENTICAL] * 3
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    run = c.get_run(prune_replay["run_id"])  # the fine-tune of the replay: a run of its own, not the original's
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.runName"] != "rc-prune"
    assert run.data.params["train.epochs"] == "1"
    new = sorted(set(versions(uri, "rc")) - set(before))
    assert len(new) == 3  # the source's replay, the pruned one's and the quantized one's
    tags = {v: c.get_model_version("rc", str(v)).tags for v in new}
    assert sorted(t["cnnray.replay_of"] for t in tags.values()) == sorted(
        f"models:/rc/{v}" for v in (1, pruned["version"], q["version"]))
    assert all(t["cnnray.replay_verdict"] == IDENTICAL for t in tags.values())


def test_a_compressed_version_without_its_command_is_refused(tmp_path, capsys, monkeypatch):
    """Versions compressed before the command was recorded: exit 2, nothing trained (no training run started)."""
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = MlflowClient(uri)
    c.create_registered_model("old")
    mv = c.create_model_version("old", str(tmp_path / "model"), tags={
        "cnnray.compress.method": "quantize", "cnnray.compress.source": "models:/old/1"})
    code, _, out = _replay(capsys, f"models:/old/{mv.version}", f"tracking.uri={uri}")
    assert code == 2, out.out[-2000:] + out.err[-2000:]
    assert "cnnray.compress.command" in out.err and "models:/old/1" in out.err
    assert not c.search_runs([e.experiment_id for e in c.search_experiments()])


def test_the_compression_command_round_trips_through_its_tag():
    from cnnray.compress.job.compress_command import CompressJobOptions, command_line
    from cnnray.errors import UserInputError
    from cnnray.tracking.compression import COMMAND_TAG, command_tag, read_command

    opts = CompressJobOptions("models:/m/3", "prune", ("train.epochs=1", "data.path=/d", "tracking.uri=sqlite:///x.db"),
                              amount=0.25, compile=False)
    opts.validate()
    tag = command_tag(opts.command())
    assert json.loads(tag[COMMAND_TAG])["format"] == 1
    command = read_command(tag)
    assert command["training"] == ["train.epochs=1"] and command["data"] == ["data.path=/d"]  # tracking.* is not
    again = CompressJobOptions.from_command("models:/m/3", command, ("tracking.uri=sqlite:///y.db",))
    again.validate()
    assert again.command() == command and again.keys.tracking_uri.endswith("y.db")
    assert command_line("models:/m/3", command) == ("cnnray compress --model models:/m/3 --method prune --amount 0.25 "
                                                    "--no-compile train.epochs=1 data.path=/d")
    assert read_command({}) is None
    with pytest.raises(ValueError, match="format-1"):
        read_command({COMMAND_TAG: '{"method": "fuse"}'})
    with pytest.raises(UserInputError, match="unknown fields: speed"):
        CompressJobOptions.from_command("models:/m/3", {**command, "speed": 2})
