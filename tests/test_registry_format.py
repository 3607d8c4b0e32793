"""Registered versions are self-contained "models from code" pyfuncs; old pytorch-flavor versions are refused."""

import base64
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cnnray.serve import card_for_training
from cnnray.data.example import example_image
from cnnray.tracking.model_registry import register_weights


def _register(uri, m, name, weights=None, alias="challenger"):
    tags = {"cnnray.data_fingerprint": m.info.fingerprint, "cnnray.test_fingerprint": m.info.test_fingerprint}
    card = card_for_training(m.cfg, m.info, lineage=tags, training={})
    return register_weights(uri, f"exp-{name}", f"run-{name}", weights or m.weights, card,
                            example=example_image(m.cfg.data, 1), registered_name=name, alias=alias, tags=tags)


def _run(main, args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_version_is_a_pyfunc_from_code_that_takes_images(mlflow_server, digits_model, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    _register(mlflow_server, digits_model, "fmt-a")
    mlflow.set_tracking_uri(mlflow_server)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri="models:/fmt-a/1", dst_path=str(tmp_path)))
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert {"MLmodel", "pyfunc_model.py", "artifacts/card.json", "artifacts/weights.pt"} <= files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle"))]
    mlmodel = (local / "MLmodel").read_text()
    assert "mlflow.pyfunc.loaders.code_model" in mlmodel and "cnnray_format: cnnray.image-classifier/1" in mlmodel
    sd = torch.load(local / "artifacts/weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    card = json.loads((local / "artifacts/card.json").read_text())
    assert card["class_names"] == [str(i) for i in range(10)] and card["input"]["image_size"] == 16
    assert card["input"]["mean"] == list(digits_model.info.mean) and card["input"]["std"] == list(digits_model.info.std)
    # The input example is a real training image, as a base64 PNG in the serving format.
    example = json.loads((local / "input_example.json").read_text())
    png = base64.b64decode(example["data"][0][0])
    from cnnray.data import load_arrays

    first = load_arrays(digits_model.cfg.data)[0][0, 0].numpy()
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), first)

    model = mlflow.pyfunc.load_model("models:/fmt-a@challenger")
    x, y = digits_model.val_x, digits_model.val_y.numpy()
    out = model.predict(x[:, 0].numpy())  # N,H,W uint8
    assert list(out.columns[:3]) == ["class_name", "class_index", "probability"]
    acc = (out["class_index"].to_numpy() == y).mean()
    assert acc == pytest.approx(digits_model.val_acc)
    assert (out["class_name"] == out["class_index"].astype(str)).all()
    # A DataFrame of base64 PNGs of larger RGB images gives the same answers as the arrays (same pixels after resize).
    b64 = []
    for im in x[:8, 0].numpy():
        buf = io.BytesIO()
        Image.fromarray(im).convert("RGB").save(buf, format="PNG")
        b64.append(base64.b64encode(buf.getvalue()).decode())
    framed = model.predict(pd.DataFrame({"image": b64}), params={"top_k": 2, "return_logits": True})
    assert framed["class_index"].tolist() == out["class_index"][:8].tolist()
    assert len(framed["top_classes"][0]) == 2 and len(framed["logits"][0]) == 10
    assert MlflowClient(mlflow_server).get_model_version("fmt-a", "1").tags["cnnray.format"] == "cnnray.image-classifier/1"


def test_registry_listing_and_run_uri(mlflow_server, digits_model, capsys, monkeypatch, tmp_path):
    from workflows import evaluate, registry

    monkeypatch.chdir(tmp_path)
    _register(mlflow_server, digits_model, "fmt-b")
    _register(mlflow_server, digits_model, "fmt-b", weights=digits_model.degraded(4))
    code, out, err = _run(registry.main, ["--name", "fmt-b", f"tracking.uri={mlflow_server}", "--json"], capsys)
    assert code == 0, err
    rows = json.loads(out.strip().splitlines()[-1])["versions"]
    assert [r["version"] for r in rows] == ["2", "1"] and rows[0]["aliases"] == ["challenger"] and rows[1]["aliases"] == []
    assert "@challenger" in out and rows[0]["data_fingerprint"] == digits_model.info.fingerprint
    from mlflow.tracking import MlflowClient

    run_id = MlflowClient(mlflow_server).get_model_version("fmt-b", "1").run_id
    code, out, err = _run(evaluate.main, ["--model", f"runs:/{run_id}/model", f"tracking.uri={mlflow_server}",
                                          "--no-log", "--split", "val", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["metrics"]["acc"] == pytest.approx(digits_model.val_acc)


def test_old_pytorch_flavor_version_is_refused_and_can_be_reregistered(mlflow_server, digits_model, capsys,
                                                                       monkeypatch, tmp_path):
    import mlflow

    from cnnray.config import to_yaml
    from cnnray.models.from_config import build_model
    from workflows import predict, registry

    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_experiment("fmt-legacy")
    model = build_model(digits_model.cfg, 10, 1)
    model.load_state_dict(digits_model.weights)
    with mlflow.start_run():  # what cnnray 0.1 registered: the pytorch flavor, tensors in, logits out
        example = np.random.default_rng(0).random((2, 1, 16, 16), dtype=np.float32)
        mlflow.pytorch.log_model(model.eval(), name="model", input_example=example, registered_model_name="fmt-legacy")
    img = tmp_path / "img.png"
    Image.fromarray(digits_model.val_x[0, 0].numpy()).save(img)
    code, out, err = _run(predict.main, ["--model", "models:/fmt-legacy/1", str(img), f"tracking.uri={mlflow_server}"],
                          capsys)
    assert code == 2 and "earlier cnnray" in err and "cnnray registry --register" in err, err
    # Its training checkpoint re-registers as a self-contained version.
    ckpt = tmp_path / "run" / "checkpoint_000001"
    ckpt.mkdir(parents=True)
    torch.save(digits_model.weights, ckpt / "best_model.pt")
    (ckpt / "meta.json").write_text(json.dumps({"best_epoch": 2, "weights": "raw",
                                                "best_metrics": {"val_acc": digits_model.val_acc}}))
    (ckpt / "config.yaml").write_text(to_yaml(digits_model.cfg))
    code, out, err = _run(registry.main, ["--name", "fmt-legacy", "--register", str(ckpt),
                                          f"tracking.uri={mlflow_server}", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["version"] == "2"
    code, out, err = _run(predict.main, ["--model", "models:/fmt-legacy@challenger", str(img),
                                         f"tracking.uri={mlflow_server}", "--json"], capsys)
    assert code == 0, err
    pred = json.loads(out.strip().splitlines()[-1])["predictions"][0]
    assert pred["path"] == str(img) and pred["class_name"] in [str(i) for i in range(10)]


@pytest.mark.slow
def test_embedded_sqlite_store_promotes_and_evaluates(digits_model, capsys, monkeypatch, tmp_path):
    """The laptop default: MLflow in ./mlflow.db, no server."""
    from workflows import evaluate, promote, registry

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from cnnray.tracking.runs import resolve_tracking_uri

    uri = resolve_tracking_uri(None)
    assert uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    _register(uri, digits_model, "cnnray")
    code, out, err = _run(promote.main, ["--json", "--resamples", "1000"], capsys)
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["outcome"] == "promoted", err
    code, out, err = _run(evaluate.main, ["--model", "models:/cnnray@champion", "--split", "val", "--json", "--out", "ev"], capsys)
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["metrics"]["acc"] == pytest.approx(digits_model.val_acc)
    assert {p.name for p in (tmp_path / "ev").iterdir()} == {"metrics.json", "per_class.csv", "confusion_matrix.csv",
                                                             "confusion_matrix.png"}
    code, out, err = _run(registry.main, [], capsys)
    assert code == 0 and "@champion" in out and "promoted (#1" in out, out


def test_sqlite_store_keeps_artifacts_beside_its_database_not_in_the_working_directory(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from cnnray.tracking.runs import ensure_experiment

    (tmp_path / "store").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    exp_id = ensure_experiment(uri, "beside")
    assert ensure_experiment(uri, "beside") == exp_id  # found, not created twice
    location = MlflowClient(tracking_uri=uri).get_experiment(exp_id).artifact_location
    assert location == (tmp_path / "store" / "mlruns").as_uri()
    assert not (tmp_path / "elsewhere" / "mlruns").exists()
