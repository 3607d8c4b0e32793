"""`cnnray serve` on real Ray Serve (its own local cluster, as users start it) against a real `mlflow server`:
bodies and refusals, promotion and rollback under load with no failed request, a refused broken version,
a replica killed with SIGKILL, a busy port and a taken name, and a stop that leaves no process behind.

One app (2 replicas) serves the whole module: starting it costs tens of seconds; the tests run in file order.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import types
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnray.bench.http_load import run_load
from cnnray.bench.mlflow_server import free_port
from cnnray.classifier import ImageClassifier
from cnnray.cluster.watchdog import children, start_time
from cnnray.data.example import example_image
from cnnray.serve import card_for_training
from cnnray.tracking.model_registry import register_weights

pytestmark = pytest.mark.slow
NAME, APP, FOLLOW_S = "online", "online-app", 3.0
LOAD_S = 20.0  # a replica's download + build + smoke test of a version, on a busy 2-core machine


def _register(uri, m, weights, alias):
    tags = {"cnnray.data_fingerprint": m.info.fingerprint, "cnnray.test_fingerprint": m.info.test_fingerprint}
    card = card_for_training(m.cfg, m.info, lineage=tags, training={})
    return register_weights(uri, "online-exp", "online-run", weights, card, example=example_image(m.cfg.data, 1),
                            registered_name=NAME, alias=alias, tags=tags)


def _cnnray(*args, env, timeout=120):
    return subprocess.run([sys.executable, "-m", "cnnray.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def _get(url, timeout=10):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _post(url, body, timeout=30):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    return _get(req, timeout)


def _tree(pid):
    """(pid, start time) of `pid` and every process below it."""
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        st = start_time(p)
        if st is not None:
            out.add((p, st))
            todo += children(p)
    return out


def _png_b64(img):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def app(mlflow_server, digits_model, tmp_path_factory):
    """`cnnray serve --model models:/online@champion` with v1 (four classes wrong) as champion and v2 (the
    trained weights) as challenger; yields what the tests need; stopped (and checked gone) at the end."""
    m, uri = digits_model, mlflow_server
    _register(uri, m, m.degraded(4), "champion")
    _register(uri, m, m.weights, "challenger")
    state = tmp_path_factory.mktemp("serve-state")
    env = {**os.environ, "CNNRAY_SERVE_DIR": str(state)}
    port = free_port()
    log = open(state / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "cnnray.cli", "serve", "--model", f"models:/{NAME}@champion",
                             f"tracking.uri={uri}", "--name", APP, "--replicas", "2", "--cpus-per-replica", "0.5",
                             "--follow-interval", str(FOLLOW_S), "--max-images", "8", "--port", str(port), "--json"],
                            stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    ready = proc.stdout.readline()  # the JSON line, printed once the app answers
    assert ready.startswith("{"), (ready, (state / "serve.log").read_text()[-3000:])
    info = json.loads(ready)
    assert info["version"] == "1" and info["following"] == f"models:/{NAME}@champion"
    # One validation image per class-3/class-0 digit: v1 gets class 0 wrong (degraded), v2 right.
    vx, vy = m.val_x, m.val_y.numpy()
    v2 = ImageClassifier(card_for_training(m.cfg, m.info, lineage={}, training={}), m.weights)
    pred = v2.predict_uint8(vx).index
    i = next(j for j in range(len(vy)) if vy[j] == 0 and pred[j] == 0)
    img = vx[i, 0].numpy()
    ns = types.SimpleNamespace(url=info["url"], port=port, proc=proc, env=env, uri=uri, m=m, img=img,
                               body=json.dumps({"dataframe_split": {"columns": ["image"],
                                                                    "data": [[_png_b64(img)]]}}).encode(),
                               state=state, tree=_tree(proc.pid))
    yield ns
    if proc.poll() is None:
        _cnnray("serve", "stop", "--name", APP, env=env)
        proc.wait(timeout=60)


def _load_in_background(app, clients=4):
    stop, box = threading.Event(), {}
    t = threading.Thread(target=lambda: box.setdefault("r", run_load(f"{app.url}/invocations", app.body, clients,
                                                                    stop=stop, keep_bodies=True)))
    t.start()
    return stop, t, box


def test_bodies_are_answered_and_bad_ones_get_400(app):
    url = f"{app.url}/invocations"
    b64 = _png_b64(app.img)
    for body in ({"dataframe_split": {"columns": ["image"], "data": [[b64]]}, "params": {"top_k": 3}},
                 {"dataframe_records": [{"image": b64}, {"image": b64}]},
                 {"inputs": [b64]},
                 {"inputs": app.img[None].astype(int).tolist()}):  # a uint8 array N,H,W
        code, out = _post(url, body)
        assert code == 200 and out["version"] == "1" and out["model"] == f"models:/{NAME}/1", out
        assert all(p["class_name"] in [str(k) for k in range(10)] for p in out["predictions"])
    code, out = _post(url, {"dataframe_split": {"columns": ["image"], "data": [[b64]]}, "params": {"top_k": 3}})
    assert len(out["predictions"]) == 1 and len(out["predictions"][0]["top_classes"]) == 3

    bad = {
        "rank": ({"inputs": app.img.astype(int).tolist()}, "rank 2"),
        "channels": ({"inputs": np.zeros((1, 8, 8, 5), int).tolist()}, "5 channels"),
        "floats": ({"inputs": (app.img[None] / 255.0).tolist()}, "integers 0-255"),
        "range": ({"inputs": (app.img[None].astype(int) + 300).tolist()}, "0-255"),
        "empty": ({"inputs": []}, "empty"),
        "oversized": ({"inputs": [b64] * 9}, "more than the 8"),
        "not an image": ({"inputs": [base64.b64encode(b"GIF89a but not really").decode()]}, "not"),
        "not base64": ({"inputs": ["%%%"]}, "base64"),
        "unknown key": ({"images": [b64]}, "exactly one of"),
        "top_k": ({"inputs": [b64], "params": {"top_k": 0}}, "top_k"),
        "not JSON": (b"{not json", "not JSON"),
    }
    for what, (body, words) in bad.items():
        code, out = _post(url, body)
        assert code == 400, (what, code, out)
        assert words in out["message"] and "accepted bodies" in out["message"], (what, out)
    assert _get(f"{app.url}/health")[0] == 200
    code, v = _get(f"{app.url}/version")
    assert code == 200 and v["version"] == "1" and v["input"] == {"image_size": 16, "channels": 1}
    assert _get(f"{app.url}/nothing-here")[0] == 404


def _all_replicas_on(app, version, since):
    """When every replica reports `version` (polling /status), at most FOLLOW_S + LOAD_S after `since`."""
    while time.monotonic() < since + FOLLOW_S + LOAD_S:
        reps = _get(f"{app.url}/status")[1]["replicas"]
        if len(reps) >= 2 and all(rep["version"] == version for rep in reps):
            return time.monotonic()
        time.sleep(0.2)
    raise AssertionError(f"not every replica serves v{version} within {FOLLOW_S + LOAD_S:.0f} s: {reps}")


def test_promotion_and_rollback_reach_live_traffic_with_no_failed_request(app, capsys, monkeypatch):
    from workflows import promote, rollback

    monkeypatch.setenv("CNNRAY_SERVE_DIR", app.env["CNNRAY_SERVE_DIR"])
    args = ["--name", NAME, f"tracking.uri={app.uri}", "tracking.experiment=online-gate", "--resamples", "1000"]
    stop, t, box = _load_in_background(app)
    try:
        time.sleep(2)
        asked = time.monotonic()
        assert promote.main(args + ["--json"]) == 0
        promoted = time.monotonic()
        out = capsys.readouterr().out
        assert json.loads(out.strip().splitlines()[-1])["outcome"] == "promoted"
        assert f"told app '{APP}'" in out  # the running app was notified
        on_v2 = _all_replicas_on(app, "2", promoted)
        time.sleep(3)
        assert rollback.main(["--name", NAME, f"tracking.uri={app.uri}", "tracking.experiment=online-gate"]) == 0
        rolled = time.monotonic()
        assert f"told app '{APP}'" in capsys.readouterr().out
        on_v1 = _all_replicas_on(app, "1", rolled)
        time.sleep(3)
    finally:
        stop.set()
        t.join()
    r = box["r"]
    print(f"promotion reached every replica {on_v2 - promoted:.1f} s after `cnnray promote` returned, the "
          f"rollback {on_v1 - rolled:.1f} s after `cnnray rollback`; {len(r.answers)} requests")
    assert r.statuses() == {200: len(r.answers)}, r.statuses()  # zero non-200 answers
    assert {a.version for a in r.answers} == {"1", "2"}
    # Once every replica holds the new champion, every answer is from it (a request sent just before the
    # switch may still be answered by the version it started with: 0.5 s of slack).
    assert {a.version for a in r.answers if on_v2 + 0.5 <= a.sent < rolled} == {"2"}
    assert {a.version for a in r.answers if a.sent >= on_v1 + 0.5} == {"1"}
    assert {a.version for a in r.answers if a.sent < asked} == {"1"}  # (the alias moves inside `promote`)
    # Each answer's predictions are those of the version it names (class 0: v1 wrong, v2 right).
    for a in r.answers[:: max(1, len(r.answers) // 200)]:
        cls = json.loads(a.body)["predictions"][0]["class_name"]
        assert (cls == "0") == (a.version == "2"), (a.version, cls)
    code, status = _get(f"{app.url}/status")
    assert any(s["to"] == "2" for rep in status["replicas"] for s in rep["switches"])


def test_a_version_that_fails_its_smoke_prediction_is_not_switched_to(app):
    from mlflow.tracking import MlflowClient

    w = {k: v.clone() for k, v in app.m.weights.items()}
    w["fc.weight"][:] = float("nan")  # loads, but answers NaN: the smoke prediction refuses it
    broken = _register(app.uri, app.m, w, alias=None)
    client = MlflowClient(app.uri)
    client.set_registered_model_alias(NAME, "champion", broken.version)
    try:
        assert _post(f"{app.url}/follow", {})[0] == 200
        deadline = time.monotonic() + LOAD_S + 2 * FOLLOW_S
        while time.monotonic() < deadline:
            reps = _get(f"{app.url}/status")[1]["replicas"]
            if len(reps) >= 2 and all(broken.version in rep["refused"] for rep in reps):
                break
            time.sleep(1)
        else:
            raise AssertionError(f"not refused by every replica: {reps}")
        assert all("SmokeTestError" in rep["refused"][broken.version] for rep in reps)
        code, out = _post(f"{app.url}/invocations", app.body)
        assert code == 200 and out["version"] == "1"  # still the old one
        st = _cnnray("serve", "status", "--name", APP, "--json", env=app.env)
        assert st.returncode == 0, st.stderr
        assert f"refused v{broken.version}" in st.stdout and json.loads(st.stdout.strip().splitlines()[-1])["answering"]
    finally:
        client.set_registered_model_alias(NAME, "champion", "1")


def test_a_replica_killed_with_sigkill_is_replaced_and_no_answer_is_wrong(app):
    before = _get(f"{app.url}/status")[1]["replicas"]
    victim = before[0]["pid"]
    # Besides the load, two clients post slow requests (8 large images to decode and resize each), so that
    # the killed replica is likely to die with a batch in flight: the gateway's retry is what answers it.
    heavy = json.dumps({"inputs": [_png_b64(np.zeros((3000, 3000), np.uint8))] * 8}).encode()
    stop, t, box = _load_in_background(app, clients=4)
    heavy_box = {}
    th = threading.Thread(target=lambda: heavy_box.setdefault("r", run_load(f"{app.url}/invocations", heavy, 2,
                                                                            stop=stop)))
    th.start()
    try:
        time.sleep(3)
        os.kill(victim, signal.SIGKILL)
        time.sleep(6)  # the gap: Serve notices, the gateway retries; the replacement is awaited below
    finally:
        stop.set()
        t.join()
        th.join()
    h = heavy_box["r"]
    assert set(h.statuses()) <= {200, 503} and all(a.version == "1" for a in h.answers if a.status == 200)
    r = box["r"]
    assert set(r.statuses()) <= {200, 503}, r.statuses()
    assert all(a.version == "1" and json.loads(a.body)["predictions"][0]["class_name"] != "0"
               for a in r.answers if a.status == 200)  # v1 gets class 0 wrong: the answer is v1's, never garbage
    retried = sum(a.retries > 0 for a in r.answers + h.answers)
    failed = r.count(503) + h.count(503)
    print(f"SIGKILL of replica {victim}: {len(r.answers) + len(h.answers)} requests, {retried} retried on another "
          f"replica (in flight on it when it died), {failed} answered 503")
    assert r.count(200) > 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = _get(f"{app.url}/status")[1]
        pids = {rep["pid"] for rep in status["replicas"]}
        if len(pids - {victim}) >= 2:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"the killed replica was not replaced: {status['replicas']}")
    assert status["gateway"]["retried"] >= retried


def test_a_busy_port_or_a_taken_name_exits_2(app, capsys, monkeypatch):
    from workflows import serve

    monkeypatch.setenv("CNNRAY_SERVE_DIR", app.env["CNNRAY_SERVE_DIR"])
    model = ["--model", f"models:/{NAME}@champion", f"tracking.uri={app.uri}"]
    assert serve.main(model + ["--name", "other", "--port", str(app.port)]) == 2
    err = capsys.readouterr().err
    assert f"--port {app.port}: 127.0.0.1:{app.port} is already in use" in err, err
    assert serve.main(model + ["--name", APP, "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert f"--name {APP}: already served at {app.url}" in err, err
    assert serve.main(["--model", f"models:/{NAME}@nope", f"tracking.uri={app.uri}", "--port", str(free_port())]) == 2
    assert "no alias 'nope'" in capsys.readouterr().err
    assert _get(f"{app.url}/health")[0] == 200  # the running app is untouched


def test_stop_leaves_no_serve_process(app, capsys, monkeypatch):
    from workflows import serve

    monkeypatch.setenv("CNNRAY_SERVE_DIR", app.env["CNNRAY_SERVE_DIR"])
    tree = app.tree | _tree(app.proc.pid)  # the serving process, its Ray cluster, the Serve actors
    assert len(tree) > 5
    assert serve.main(["stop", "--name", APP, "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["stopped"]
    assert app.proc.wait(timeout=30) == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(start_time(p) == st for p, st in tree):
        time.sleep(0.5)
    left = [p for p, st in tree if start_time(p) == st]
    assert not left, [Path(f"/proc/{p}/cmdline").read_bytes()[:120] for p in left]
    assert not list(Path(app.env["CNNRAY_SERVE_DIR"]).glob("*.json"))
    assert serve.main(["status", "--name", APP]) == 2 and f"no app named '{APP}'" in capsys.readouterr().err
