"""`cnnray serve` input checks, app records and batching, without Ray: bad flags exit 2 before any work, a
stale or truncated record never blocks a name, two claims of one name end with one owner, a batch that
spans a version switch answers each request with the version it was checked against."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

import pytest
import torch

from cnnray.errors import UserInputError
from cnnray.serve.online import state
from cnnray.serve.online.options import ServeOptions, parse_autoscale

MODEL = "models:/m@champion"


@pytest.fixture()
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNRAY_SERVE_DIR", str(tmp_path / "serve"))
    return tmp_path / "serve"


@pytest.mark.parametrize("kw, words", [
    ({"model": "runs:/0123456789abcdef/model"}, "registered model"),
    ({"name": "../etc/passwd"}, "not an app name"),
    ({"name": "a b"}, "not an app name"),
    ({"name": ""}, "not an app name"),
    ({"replicas": 0}, "--replicas"),
    ({"autoscale": "3:1"}, "MIN:MAX"),
    ({"autoscale": "0:0"}, "MIN:MAX"),
    ({"autoscale": "two"}, "MIN:MAX"),
    ({"autoscale": "1:4", "replicas": 2}, "exclude each other"),
    ({"cpus_per_replica": 0}, "--cpus-per-replica"),
    ({"gpus_per_replica": -1}, "--gpus-per-replica"),
    ({"max_batch_size": 0}, "--max-batch-size"),
    ({"batch_wait_ms": -1}, "--batch-wait-ms"),
    ({"follow_interval": 0}, "--follow-interval"),
    ({"port": 70000}, "--port"),
    ({"max_images": 0}, "--max-images"),
])
def test_bad_flags_are_refused_naming_the_flag(kw, words):
    with pytest.raises(UserInputError, match=words.replace("(", r"\(")):
        ServeOptions(**{"model": MODEL, "port": _free_port(), **kw}).validate()


def test_good_flags_pass_and_autoscale_parses():
    ServeOptions(MODEL, port=_free_port(), autoscale="0:3").validate()
    assert parse_autoscale("1:4") == (1, 4) and parse_autoscale(None) is None
    assert ServeOptions(MODEL).follows and not ServeOptions("models:/m/3").follows


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_busy_port_is_refused_before_any_work():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(UserInputError, match=f"--port {port}: 127.0.0.1:{port} is already in use"):
            ServeOptions(MODEL, port=port).validate()


def test_the_command_exits_2_on_bad_input_without_starting_ray(state_dir, capsys):
    from workflows import serve

    for args, words in ((["--model", "not-a-uri"], "not a model URI"),
                        (["--model", MODEL, "--autoscale", "9:1"], "MIN:MAX"),
                        (["--model", MODEL, "bogus.key=1"], "not accepted here"),
                        ([], "--model is required"),
                        (["status", "--name", "none-here"], "no app named 'none-here'"),
                        (["stop", "--name", "../x"], "not an app name")):
        assert serve.main(args) == 2, args
        assert words in capsys.readouterr().err, args
    # As users run it: a separate process, exit code 2 and the message on stderr.
    p = subprocess.run([sys.executable, "-m", "cnnray.cli", "serve", "--model", MODEL, "--replicas", "0"],
                       capture_output=True, text=True, env={**os.environ, "CNNRAY_SERVE_DIR": str(state_dir)},
                       timeout=120)
    assert p.returncode == 2 and "--replicas 0: expected an integer >= 1" in p.stderr, p.stderr


def _rec(name, pid):
    return state.AppRecord(name, "http://127.0.0.1:1", MODEL, "sqlite:///x.db", pid, None, 0.0)


def test_records_stale_truncated_and_taken(state_dir):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state.claim(_rec("a", dead.pid))  # its process is gone: stale
    assert state.read("a") is None and state.running() == []
    state.claim(_rec("a", os.getpid()))  # a stale record does not block the name
    assert state.read("a").pid == os.getpid() and [r.name for r in state.running()] == ["a"]
    assert state.read("a").model_name == "m"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        state.write(_rec("a", other.pid))  # a live app of another process holds the name
        with pytest.raises(UserInputError, match="--name a: already served at http://127.0.0.1:1"):
            state.claim(_rec("a", os.getpid()))
    finally:
        other.kill()
        other.wait()
    state.claim(_rec("a", os.getpid()))
    (state_dir / "b.json").write_text('{"name": "b", "url"')  # truncated
    assert state.read("b") is None and [r.name for r in state.running()] == ["a"]
    state.remove("a", pid=12345)  # not its owner: kept
    assert state.read("a") is not None
    state.remove("a")
    assert state.read("a") is None


def test_two_claims_of_one_name_at_once_end_with_one_owner(state_dir):
    sleepers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) for _ in range(8)]
    results: list[str] = []
    try:
        def claim(pid):
            try:
                state.claim(_rec("same", pid))
                results.append("ok")
            except UserInputError as e:
                results.append(str(e))

        threads = [threading.Thread(target=claim, args=(p.pid,)) for p in sleepers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results.count("ok") == 1, results
        assert json.loads((state_dir / "same.json").read_text())["pid"] in {p.pid for p in sleepers}
    finally:
        for p in sleepers:
            p.kill()
            p.wait()


def test_a_batch_spanning_a_switch_answers_each_request_with_its_version(digits_model):
    from cnnray.classifier import ImageClassifier
    from cnnray.serve import card_for_training
    from cnnray.serve.online.app import _Item, _predict_groups
    from cnnray.serve.online.loaded import LoadedVersion, SmokeTestError, smoke_test
    from cnnray.tracking.model_store import ResolvedVersion

    m = digits_model
    card = card_for_training(m.cfg, m.info, lineage={}, training={})
    v1 = LoadedVersion(ResolvedVersion("u", "m", "1", "r", "d"), ImageClassifier(card, m.degraded(4)), 0.0)
    v2 = LoadedVersion(ResolvedVersion("u", "m", "2", "r", "d"), ImageClassifier(card, m.weights), 0.0)
    x = v2.clf.preprocess(m.val_x[:6].numpy()[:, 0])
    items = [_Item(v1, x[:2], 3, False), _Item(v2, x[2:5], 1, True), _Item(v1, x[5:], 2, False)]
    out = _predict_groups(items)
    assert [len(o) for o in out] == [2, 3, 1]
    expect = [v1.clf.predict_uint8(x[:2], 3), v2.clf.predict_uint8(x[2:5], 1), v1.clf.predict_uint8(x[5:], 2)]
    for recs, pred in zip(out, expect):
        assert [r["class_index"] for r in recs] == pred.index.tolist()
        assert [len(r["top_classes"]) for r in recs] == [pred.top_index.shape[1]] * len(recs)
    assert "logits" in out[1][0] and "logits" not in out[0][0]

    smoke_test(v2.clf, None, "v2")  # a blank image of the card's size when there is no example
    w = {k: v.clone() for k, v in m.weights.items()}
    w["fc.bias"][:] = float("nan")
    with pytest.raises(SmokeTestError, match="non-finite"):
        smoke_test(ImageClassifier(card, w), torch.zeros((1, 1, 16, 16), dtype=torch.uint8).numpy()[:, 0], "bad")
