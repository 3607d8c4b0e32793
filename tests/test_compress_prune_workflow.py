"""`cnnray compress --method prune` against a real `mlflow server`: channels really removed, fine-tuned
through a cnnray training run, registered as a smaller version that serves; refusals."""

from __future__ import annotations

import numpy as np
from compress_cli import register, run_compress, versions


def test_prune_removes_channels_fine_tunes_and_registers_a_smaller_version(mlflow_server, digits_model, capsys,
                                                                           tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri, name, m = mlflow_server, "cz-prune", digits_model
    register(uri, m, name)
    code, r, out = run_compress(capsys, "--model", f"models:/{name}/1", "--method", "prune", "--amount", "0.5",
                             "--criterion", "bn_gamma", f"tracking.uri={uri}", "tracking.experiment=cz-prune",
                             "train.epochs=2", "train.batch_size=64", "train.precision=fp32", "train.ema=false",
                             "scaling.runner=local", "scaling.num_workers=2", f"scaling.storage_path={tmp_path / 'r'}",
                             "--max-acc-drop", "25", "--repeats", "2", "--alias", "pruned", "--json")
    assert code == 0 and r["registered"], out.out[-3000:] + out.err[-3000:]
    e = r["evidence"]
    # Really smaller: parameters, FLOPs, bytes in memory and on disk.
    assert e["params"] < 0.75 * e["params_source"] and e["flops"] < 0.75 * e["flops_source"]
    assert e["size_mb"] < e["size_mb_source"] and e["file_mb"] < 0.8 * e["file_mb_source"]
    assert e["pruned_channels"] > 0 and e["prune_criterion"] == "bn_gamma"
    assert e["acc"] > e["acc_before_finetune"]  # the fine-tune recovered accuracy the cut lost
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run = client.get_run(e["train_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["train.epochs"] == "2"
    assert len(client.get_metric_history(run.info.run_id, "val_acc")) == 2
    # The fine-tuned weights are what was registered, and they serve through the same pyfunc.
    from cnnray.tracking.model_store import load_pyfunc, load_version

    clf, _ = load_version(f"models:/{name}@pruned", uri)
    assert clf.card.compression["steps"][-1]["method"] == "prune"
    images = np.stack([m.val_x[i].numpy() for i in range(64)])
    pred = load_pyfunc(f"models:/{name}@pruned", uri).predict(images)
    acc = float(np.mean(pred["class_index"].to_numpy() == m.val_y[:64].numpy()))
    assert acc > 0.6 and abs(acc - e["acc"]) < 0.2
    assert client.get_model_version(name, r["version"]).tags["cnnray.compress.method"] == "prune"


def test_a_prune_whose_fine_tune_fails_registers_nothing_and_the_run_says_failed(mlflow_server, digits_model,
                                                                                 capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CNNRAY_TEST_NAN_AT_STEP", "1")  # the fine-tune's loss turns NaN: the run ends FAILED
    uri, name, m = mlflow_server, "cz-prune-fail", digits_model
    register(uri, m, name)
    code, _, out = run_compress(capsys, "--model", f"models:/{name}/1", "--method", "prune", f"tracking.uri={uri}",
                             "tracking.experiment=cz-prune-fail", "train.epochs=1", "train.batch_size=64",
                             "scaling.runner=local", "scaling.num_workers=1", f"scaling.storage_path={tmp_path / 'r'}")
    assert code == 1 and "nothing registered" in out.err and "FAILED" in out.err, out.err[-2000:]
    assert versions(uri, name) == [1]
    from mlflow.tracking import MlflowClient

    runs = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("cz-prune-fail").experiment_id])
    assert runs and all(r.info.status == "FAILED" for r in runs)


def test_unstructured_pruning_is_reported_as_sparsity_and_an_accuracy_loss_is_refused(mlflow_server, digits_model,
                                                                                     capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri, name, m = mlflow_server, "cz-sparse", digits_model
    register(uri, m, name)
    code, r, out = run_compress(capsys, "--model", f"models:/{name}/1", "--method", "prune", "--unstructured",
                             "--amount", "0.3", f"tracking.uri={uri}", "--max-acc-drop", "100", "--repeats", "2",
                             "--json")
    assert code == 0 and r["registered"], out.out[-2000:] + out.err[-2000:]
    e = r["evidence"]
    assert 0.29 < e["sparsity"] < 0.31 and "30.0% of conv/linear weights are zero" in out.out
    assert e["params"] == e["params_source"] and e["flops"] == e["flops_source"]  # zeros, not fewer weights
    # 97% of the weights zeroed: the accuracy collapses, the default bound (1 point) refuses it, exit 1.
    code, r, out = run_compress(capsys, "--model", f"models:/{name}/1", "--method", "prune", "--unstructured",
                             "--amount", "0.97", f"tracking.uri={uri}", "--repeats", "2", "--json")
    assert code == 1 and not r["registered"] and "more than --max-acc-drop 1" in r["reasons"][0]
    assert versions(uri, name) == [1, 2]
