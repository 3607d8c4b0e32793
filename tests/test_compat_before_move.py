"""What cnnray wrote before the package was restructured still works: a checkpoint resumes and a registered
version loads (through MLflow's pyfunc, whose copied model code imports the old `cnnray.serve` paths).

`tests/data/pre_move` was written by cnnray at commit ba12e1d (before the move): `run/` by `cnnray train`
(1 epoch, local runner) and `model/` the MLflow model of the version it registered.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from cnnray.config import load_config

DATA = Path(__file__).resolve().parent / "data" / "pre_move"
# The settings the fixture was trained with (a resume must use the same model.* settings).
OVERRIDES = ["data.source=synthetic", "data.num_classes=3", "data.samples_per_class=20", "data.image_size=8",
             "model.name=resnet18", "model.width=0.0625", "train.batch_size=8", "train.ema=false",
             "train.precision=fp32", "scaling.num_workers=1", "scaling.runner=local", "tracking.enabled=false",
             "registry.enabled=false", "run.name=old"]


def test_a_checkpoint_written_before_the_move_resumes(tmp_path):
    from cnnray.run.training import run_training

    shutil.copytree(DATA / "run", tmp_path / "runs" / "old")
    cfg = load_config(overrides=[*OVERRIDES, f"scaling.storage_path={tmp_path / 'runs'}", "train.epochs=2",
                                 "train.resume=true"])
    result = run_training(cfg, on_line=lambda s: None)
    assert result["status"] == "FINISHED", result
    assert result["epochs_run"] == 2  # epoch 0 came from the old checkpoint, epoch 1 was trained now
    index = json.loads((tmp_path / "runs" / "old" / "cnnray_checkpoints.json").read_text())
    assert [c["epoch"] for c in index["checkpoints"]] == [0, 1]


def test_a_version_registered_before_the_move_loads_through_pyfunc_and_cnnray(tmp_path):
    import mlflow

    from cnnray.classifier import ImageClassifier

    model_dir = tmp_path / "model"
    shutil.copytree(DATA / "model", model_dir)
    assert "cnnray.serve.classifier" in (model_dir / "pyfunc_model.py").read_text()  # the old import path
    example = json.loads((model_dir / "input_example.json").read_text())
    png = base64.b64decode(example["data"][0][0])
    pyfunc = mlflow.pyfunc.load_model(str(model_dir))
    import pandas as pd

    rows = pyfunc.predict(pd.DataFrame({"image": [png]}))
    clf = ImageClassifier.from_dir(model_dir / "artifacts")
    assert rows["class_name"][0] in clf.class_names and len(clf.class_names) == 3
    image = np.asarray(Image.open(io.BytesIO(png)))
    ours = clf.predict([image], top_k=1)
    assert clf.class_names[int(ours.index[0])] == rows["class_name"][0]
    assert abs(float(ours.probs[0, ours.index[0]]) - float(rows["probability"][0])) < 1e-5
