"""`cnnray compress` against a real `mlflow server`: fuse and export registered, gated, served; refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnray.compress.checks import judge_candidate
from compress_cli import register, run_compress, versions


def test_fuse_registers_an_equal_smaller_version_that_serves(mlflow_server, digits_model, capsys, tmp_path,
                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri, name, m = mlflow_server, "cz-fuse", digits_model
    register(uri, m, name)
    code, r, out = run_compress(capsys, "--model", f"models:/{name}/1", "--method", "fuse", f"tracking.uri={uri}",
                             "tracking.experiment=cz", "--repeats", "3", "--alias", "fused", "--json")
    assert code == 0 and r["registered"] and r["version"] == "2", out.err[-2000:]
    e = r["evidence"]
    assert e["max_abs_diff"] < 1e-3 and e["top1_agreement"] == 1.0 and e["acc"] == pytest.approx(e["acc_source"])
    assert e["acc_source"] == pytest.approx(m.val_acc)
    assert e["params"] < e["params_source"] and e["file_mb"] < e["file_mb_source"]  # BN parameters folded away
    assert e["latency_b1_ms"] > 0 and e["throughput_b64_ips"] > 0 and e["threads"] == 1
    from mlflow.tracking import MlflowClient

    tags = MlflowClient(uri).get_model_version(name, "2").tags
    assert tags["cnnray.compress.method"] == "fuse" and tags["cnnray.compress.source"] == f"models:/{name}/1"
    assert int(tags["cnnray.compress.params"]) == e["params"] and "cnnray.compress.latency_b1_ms" in tags
    assert MlflowClient(uri).get_registered_model(name).aliases["fused"] == "2"
    # Served like any version: the same pyfunc, images in, classes out, the same answers as the source.
    from cnnray.tracking.model_store import load_pyfunc

    images = np.stack([m.val_x[i].numpy() for i in range(8)])
    fused = load_pyfunc(f"models:/{name}/2", uri).predict(images)
    source = load_pyfunc(f"models:/{name}/1", uri).predict(images)
    assert list(fused["class_name"]) == list(source["class_name"])


def test_export_attaches_checked_torchscript_and_onnx(mlflow_server, digits_model, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri, name, m = mlflow_server, "cz-export", digits_model
    register(uri, m, name)
    code, r, out = run_compress(capsys, "--model", f"models:/{name}@challenger", "--method", "export",
                             f"tracking.uri={uri}", "tracking.experiment=cz", "--repeats", "3", "--json")
    assert code == 0 and r["registered"], out.err[-2000:]
    e = r["evidence"]
    assert e["onnx_opset"] == 18 and e["onnx_max_abs_diff"] < 1e-3 and e["torchscript_max_abs_diff"] < 1e-3
    assert e["onnx_top1_agreement"] == 1.0 and "run by onnxruntime" in out.out
    import mlflow

    mlflow.set_tracking_uri(uri)
    d = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{r['version']}", dst_path=str(tmp_path / "d"))
    from cnnray.compress.export import run_onnx

    onnx_file = next((tmp_path / "d").rglob("model.onnx"))
    logits = run_onnx(onnx_file, torch.zeros(2, 1, 16, 16))  # the attached file runs on its own
    assert logits.shape == (2, m.info.num_classes) and d


def test_drifting_outputs_are_refused_with_exit_1_and_nothing_registered(mlflow_server, digits_model, capsys,
                                                                        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri, name, m = mlflow_server, "cz-refuse", digits_model
    register(uri, m, name)
    code, r, out = run_compress(capsys, "--model", f"models:/{name}/1", "--method", "fuse", f"tracking.uri={uri}",
                             "--tolerance", "0", "--repeats", "2", "--json")
    assert code == 1 and not r["registered"] and "outputs drift" in r["reasons"][0], out.out[-2000:]
    assert "nothing registered" in out.out and versions(uri, name) == [1]


@pytest.mark.parametrize("args,words", [
    (["--method", "quantise"], "unknown; choose one of fuse, quantize, prune, distill, export"),
    (["--method", "fuse", "--max-acc-drop", "-1"], "--max-acc-drop"),
    (["--method", "fuse", "--model", "models:/cz-none/1"], "no registered model named 'cz-none'"),
    (["--method", "fuse", "--model", "models:/cz-bad/7"], "has no version 7"),
    (["--method", "fuse", "--model", f"runs:/{'ab' * 16}/model"], "registered version"),
    (["--method", "fuse", "model.width=2"], "not accepted by --method fuse"),
    (["--method", "fuse", "train.epochs=3"], "not accepted by --method fuse"),
    (["--method", "fuse", "scaling.num_workers=2"], "not accepted by --method fuse"),
    (["--method", "prune", "model.width=2"], "model.* (the student) with distill"),
    (["--method", "prune", "--amount", "1"], "--amount 1"),
    (["--method", "prune", "--criterion", "l2"], "choose l1 or bn_gamma"),
    (["--method", "quantize", "--calibration", "0"], "--calibration 0"),
    (["--method", "fuse", "color.mode=3"], "not accepted here"),
])
def test_bad_input_exits_2(mlflow_server, digits_model, capsys, args, words):
    uri = mlflow_server
    if "models:/cz-bad/7" in args:
        register(uri, digits_model, "cz-bad")
    model = [] if "--model" in args else ["--model", "models:/cz-bad/1"]
    code, _, out = run_compress(capsys, *model, *args, f"tracking.uri={uri}")
    assert code == 2 and words in out.err, out.err


def test_gate_refuses_an_accuracy_drop_beyond_the_bound():
    labels = torch.arange(100) % 10
    right = torch.nn.functional.one_hot(labels, 10).float() * 5
    wrong = right.clone()
    wrong[:3] = right[:3].roll(1, dims=1)  # 3 of 100 now wrong: -3 points
    lossy = judge_candidate("quantize", right, wrong, labels, max_acc_drop=1.0)
    assert not lossy.passed and "drops 3.00 points" in lossy.reasons[0] and lossy.delta_points == pytest.approx(-3)
    assert judge_candidate("quantize", right, wrong, labels, max_acc_drop=3.0).passed  # at the bound: allowed
    equal = judge_candidate("fuse", right, right + 1e-4, labels)
    assert equal.passed and equal.parity["top1_agreement"] == 1.0
    drifted = judge_candidate("fuse", right, right + 0.01, labels)
    assert not drifted.passed and "outputs drift" in drifted.reasons[0]
    with pytest.raises(ValueError, match="must be >= 0"):
        judge_candidate("fuse", right, right, labels, max_acc_drop=-1)
