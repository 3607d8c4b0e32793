"""`mlflow models serve -m models:/NAME@champion --env-manager local` serves a cnnray version over HTTP: the
classes of valid bodies, HTTP 400 with cnnray's message for bodies the model card does not describe."""

import base64
import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnray.serve import ImageClassifier, card_for_training
from cnnray.data.example import example_image
from cnnray.tracking.model_registry import register_weights


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port, body):
    """(HTTP status, parsed JSON answer) of POST /invocations with `body`."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.slow
def test_mlflow_models_serve_answers_images_with_their_class_and_bad_bodies_with_400(mlflow_server, digits_model,
                                                                                    tmp_path):
    from mlflow.tracking import MlflowClient

    m, name = digits_model, "served"
    card = card_for_training(m.cfg, m.info, lineage={}, training={})
    # Logging draws no type-hint advice from MLflow (predict's hints suit it) and the input example passes
    # MLflow's log-time serving check (a failure there is only logged, as a warning).
    logged = _Records()
    logging.getLogger("mlflow").addHandler(logged)
    warnings.onceregistry.clear()  # MLflow shows its type-hint advice once per process; count this logging's
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reg = register_weights(mlflow_server, "served-exp", "served-run", m.weights, card,
                                   example=example_image(m.cfg.data, 1), registered_name=name, alias="champion")
    finally:
        logging.getLogger("mlflow").removeHandler(logged)
    assert not [str(w.message) for w in caught if "type hint" in str(w.message).lower()]
    assert not [msg for msg in logged.messages if "serving input" in msg or "type hint" in msg.lower()], logged.messages
    # A validation image of class 3 that the model gets right, sent as a 40x40 PNG.
    clf = ImageClassifier(card, m.weights)
    x, y = m.val_x, m.val_y.numpy()
    pred = clf.predict_uint8(x).index
    i = next(j for j in range(len(y)) if y[j] == 3 and pred[j] == 3)
    buf = io.BytesIO()
    Image.fromarray(x[i, 0].numpy()).resize((40, 40), Image.Resampling.BILINEAR).save(buf, format="PNG")
    png = {"columns": ["image"], "data": [[base64.b64encode(buf.getvalue()).decode()]]}
    nhw = x[i:i + 1, 0].numpy()  # uint8 at the contract size, as nested lists of integers
    nhwc = nhw[..., None]
    valid = [({"dataframe_split": png, "params": {"top_k": 3}}, 3), ({"inputs": nhw.tolist()}, 5),
             ({"inputs": nhwc.tolist(), "params": {"top_k": 2}}, 2)]
    bad = {
        "fractions": ({"inputs": (nhw + 0.5).tolist()}, "pixel values must be integers 0-255 (uint8), got fractions"),
        "rank 2": ({"inputs": nhw[0].tolist()}, "got rank 2"),
        "5 channels": ({"inputs": np.repeat(nhwc, 5, axis=3).tolist()}, "cannot take 5 channels"),
        "empty": ({"inputs": []}, "the batch is empty"),
        "not an image": ({"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(b"no png").decode()]]}},
                         "input 0 is not an image PIL can read"),
        "top_k 0": ({"dataframe_split": png, "params": {"top_k": 0}}, "params.top_k must be an integer >= 1, got 0"),
        # The per-request limit holds under the scoring server (in process, load_model takes any batch).
        "too many": ({"inputs": np.zeros((257, 16, 16), np.uint8).tolist()}, "the batch holds 257 images, more than"),
    }

    port = _free_port()
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([exe, "models", "serve", "-m", f"models:/{name}@champion", "--env-manager", "local",
                             "-h", "127.0.0.1", "-p", str(port), "-w", "1"], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_server,  # uvicorn lives beside python
                                 "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
                            cwd=tmp_path,
                            start_new_session=True)
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except Exception:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                assert time.time() < deadline, "server did not come up in 180 s"
                time.sleep(0.5)
        answers = [_post(port, body) for body, _ in valid]
        refusals = {what: _post(port, body) for what, (body, _) in bad.items()}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    for (status, answer), (_, top_k) in zip(answers, valid):
        assert status == 200, answer
        row = answer["predictions"][0]
        assert row["class_name"] == "3" and row["class_index"] == 3, answer
        assert len(row["top_classes"]) == top_k and 0 < row["probability"] <= 1
    for what, (status, answer) in refusals.items():
        # MLflow prefixes the data it parsed ("Failed to predict data ..."); cnnray's message follows it.
        assert status == 400 and answer["error_code"] == "INVALID_PARAMETER_VALUE", (what, status, answer)
        assert bad[what][1] in answer["message"] and "accepted bodies (JSON)" in answer["message"], (what, answer)
    assert MlflowClient(mlflow_server).get_model_version(name, reg.version).aliases == ["champion"]
