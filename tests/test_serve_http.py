"""`mlflow models serve -m models:/NAME@champion --env-manager local` serves a cnnray version over HTTP."""

import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from cnnray.serve import ImageClassifier, card_for_training
from cnnray.data.example import example_image
from cnnray.tracking.model_registry import register_weights


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mlflow_models_serve_answers_a_png_with_its_class(mlflow_server, digits_model, tmp_path):
    from mlflow.tracking import MlflowClient

    m, name = digits_model, "served"
    card = card_for_training(m.cfg, m.info, lineage={}, training={})
    reg = register_weights(mlflow_server, "served-exp", "served-run", m.weights, card,
                           example=example_image(m.cfg.data, 1), registered_name=name, alias="champion")
    # A validation image of class 3 that the model gets right, sent as a 40x40 PNG.
    clf = ImageClassifier(card, m.weights)
    x, y = m.val_x, m.val_y.numpy()
    pred = clf.predict_uint8(x).index
    i = next(j for j in range(len(y)) if y[j] == 3 and pred[j] == 3)
    buf = io.BytesIO()
    Image.fromarray(x[i, 0].numpy()).resize((40, 40), Image.Resampling.BILINEAR).save(buf, format="PNG")
    payload = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(buf.getvalue()).decode()]]},
                          "params": {"top_k": 3}}).encode()

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
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=payload,
                                     headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(req, timeout=60).read())
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    row = answer["predictions"][0]
    assert row["class_name"] == "3" and row["class_index"] == 3, answer
    assert len(row["top_classes"]) == 3 and 0 < row["probability"] <= 1
    assert MlflowClient(mlflow_server).get_model_version(name, reg.version).aliases == ["champion"]
