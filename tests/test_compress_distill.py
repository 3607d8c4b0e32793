"""`cnnray compress --method distill`: a student trained against a registered teacher as a DDP Ray Train
job (real Ray, real `mlflow server`), tracked like any run, registered with its own architecture."""

from __future__ import annotations

import pytest
import torch

from cnnray.loop.losses import distillation_loss
from compress_cli import register, run_compress, versions


def test_distillation_loss_is_the_tutorials_and_zero_at_the_teacher():
    torch.manual_seed(0)
    s, t, hard = torch.randn(8, 10), torch.randn(8, 10), torch.tensor(2.0)
    loss, kl = distillation_loss(s, t, hard, temperature=4.0, alpha=0.7)
    p_t = torch.softmax(t / 4, 1)
    want_kl = (p_t * (p_t.log() - torch.log_softmax(s / 4, 1))).sum(1).mean()
    assert kl == pytest.approx(float(want_kl), rel=1e-5)
    assert loss == pytest.approx(0.7 * float(want_kl) * 16 + 0.3 * 2.0, rel=1e-5)
    assert float(distillation_loss(t, t, hard, 4.0, 0.7)[1]) == pytest.approx(0.0, abs=1e-6)


def test_distill_trains_a_student_as_a_ddp_ray_train_job_and_registers_it(ray_local, mlflow_server, digits_model,
                                                                          capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri, name, m = mlflow_server, "cz-distill", digits_model
    register(uri, m, name)
    code, r, out = run_compress(capsys, "--model", f"models:/{name}/1", "--method", "distill", f"tracking.uri={uri}",
                             "tracking.experiment=cz-distill", "train.epochs=2", "train.batch_size=64",
                             "train.precision=fp32", "train.ema=false", "scaling.runner=ray", "scaling.num_workers=2",
                             f"scaling.storage_path={tmp_path / 'runs'}", "--max-acc-drop", "100",
                             "--repeats", "2", "--json")
    assert code == 0 and r["registered"], out.out[-3000:] + out.err[-3000:]
    e = r["evidence"]
    # The default student: the teacher's architecture at half its width, about a quarter of its parameters.
    assert e["student"] == "resnet18" and 0.2 < e["params"] / e["params_source"] < 0.35
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run = client.get_run(e["train_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["model.width"] == "0.0625"
    assert run.data.tags.get("cnnray.runner") != "local"  # trained on Ray Train (2 DDP workers)
    assert run.data.params["scaling.num_workers"] == "2"
    kl = [h.value for h in sorted(client.get_metric_history(run.info.run_id, "train_kl_teacher"), key=lambda h: h.step)]
    assert len(kl) == 2 and kl[-1] < kl[0], kl  # the student moves towards the teacher
    # The new version is the student: its card names the student's architecture and serves as any version.
    from cnnray.tracking.model_store import load_version

    clf, _ = load_version(f"models:/{name}/{r['version']}", uri)
    assert clf.card.model_kwargs["width"] == 0.0625 and clf.card.compression["method"] == "distill"
    assert clf.card.compression["teacher"] == f"models:/{name}/1" and clf.card.compression["steps"] == []
    tags = client.get_model_version(name, r["version"]).tags
    assert tags["cnnray.compress.method"] == "distill" and float(tags["cnnray.compress.temperature"]) == 4.0


@pytest.mark.parametrize("args,words", [
    (["model.in_chans=3"], "the student must take the teacher's input"),
    (["model.num_classes=5"], "the student must take the teacher's input"),
    (["model.name=nope"], "nope"),
    (["--temperature", "0"], "--temperature must be > 0"),
    (["--alpha", "1.5"], "--alpha in [0, 1]"),
    (["train.epochs=0"], "train.epochs"),
])
def test_distill_bad_input_exits_2(mlflow_server, digits_model, capsys, tmp_path, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    uri = mlflow_server
    if not versions(uri, "cz-distill-bad"):
        register(uri, digits_model, "cz-distill-bad")
    code, _, out = run_compress(capsys, "--model", "models:/cz-distill-bad/1", "--method", "distill", *args,
                             f"tracking.uri={uri}")
    assert code == 2 and words in out.err, out.err[-2000:]
    assert versions(uri, "cz-distill-bad") == [1]

