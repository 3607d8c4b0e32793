"""`cnnray inspect`: figures of a registered version on disk and in its run, and the exit-2 refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compress_cli import register


def _run(capsys, *args: str) -> tuple[int, dict | None, str]:
    from workflows import inspect

    code = inspect.main(list(args))
    out = capsys.readouterr()
    last = out.out.strip().splitlines()[-1] if out.out.strip() else ""
    return code, (json.loads(last) if last.startswith("{") else None), out.err


def _not_blank(path: Path) -> float:
    import matplotlib.image as mpimg

    return float(mpimg.imread(path)[..., :3].var())


@pytest.fixture(scope="module")
def versions(mlflow_server, digits_model):
    """(plain resnet18 version, cbam_resnet18 version) registered under one name."""
    import torch

    from cnnray.models import create_model
    from cnnray.serve import card_for_training
    from cnnray.data.example import example_image
    from cnnray.tracking.model_registry import register_weights

    plain = register(mlflow_server, digits_model, "inspect")
    cfg = digits_model.cfg.model_copy(update={"model": digits_model.cfg.model.model_copy(update={"name": "cbam_resnet18"})})
    torch.manual_seed(0)
    model = create_model("cbam_resnet18", num_classes=10, in_chans=1, stem="cifar", width=0.125)
    card = card_for_training(cfg, digits_model.info, lineage={"cnnray.data_fingerprint": digits_model.info.fingerprint},
                             training={})
    cbam = register_weights(mlflow_server, "exp-inspect", "run-inspect-cbam", model.state_dict(), card,
                            example=example_image(cfg.data, 1), registered_name="inspect")
    return plain, cbam


def test_all_parts_written_and_logged(capsys, tmp_path, mlflow_server, versions):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "cbam"
    code, result, err = _run(capsys, "--model", "models:/inspect/2", f"tracking.uri={mlflow_server}", "--out",
                             str(out), "--images", "2", "--json")
    assert code == 0, err
    figures = list(result["figures"].values())
    assert {"filters", "gradcam", "attention:channels", "attention:spatial", "featuremaps:layer1"} <= set(
        result["figures"])
    for name in figures:
        assert (out / name).exists() and _not_blank(out / name) > 1e-4, name
    summary = json.loads((out / "summary.json").read_text())
    f = summary["filters"]
    assert len(f["matches"]) == f["out_channels"] > 0
    assert all(m["orientation_deg"] in f["gabor"]["orientations_deg"] for m in f["matches"])
    assert summary["attention"]["modules"]
    assert summary["gradcam"]["layer"] == "layer4"  # the last conv stage, not the (N, C, 1, 1) global pool
    run_id = MlflowClient(mlflow_server).get_model_version("inspect", "2").run_id
    logged = {Path(a.path).name for a in MlflowClient(mlflow_server).list_artifacts(run_id, "insight")}
    assert set(figures) | {"summary.json"} <= logged


def test_plain_model_skips_attention_under_all(capsys, tmp_path, mlflow_server, versions):
    code, result, err = _run(capsys, "--model", "models:/inspect/1", f"tracking.uri={mlflow_server}", "--out",
                             str(tmp_path), "--images", "1", "--what", "filters,featuremaps",
                             "--layers", "layer1.0.conv1", "--json")
    assert code == 0, err
    assert list(result["figures"]) == ["filters", "featuremaps:layer1.0.conv1"]
    code, result, err = _run(capsys, "--model", "models:/inspect@challenger", f"tracking.uri={mlflow_server}",
                             "--out", str(tmp_path / "all"), "--images", "1", "--json")
    assert code == 0, err
    assert "skipped" in result["attention"] and "gradcam" in result["figures"]


@pytest.mark.parametrize("args, message", [
    (["--model", "models:/inspect/1", "--what", "attention"], "no CBAM module"),
    (["--model", "models:/inspect/1", "--layers", "nope"], "valid names: conv1"),
    (["--model", "models:/inspect/1", "--what", "filters,colour"], "unknown item(s) colour"),
    (["--model", "models:/inspect/9"], "no version 9"),
    (["--model", "models:/missing-model/1"], "missing-model"),
])
def test_bad_input_exits_2(capsys, tmp_path, mlflow_server, versions, args, message):
    code, _, err = _run(capsys, *args, f"tracking.uri={mlflow_server}", "--out", str(tmp_path))
    assert code == 2
    assert message in err
