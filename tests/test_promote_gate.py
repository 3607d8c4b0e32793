"""`cnnray promote` / `rollback` against a real `mlflow server`: evidence-based moves, records, refusals, races."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from cnnray.serve import card_for_training
from cnnray.data.example import example_image
from cnnray.tracking.model_registry import register_weights


def _register(uri, m, name, weights, alias="challenger", test_set=True):
    # What training records: the data it saw and the held-out test set it was measured on once.
    tags = {"cnnray.data_fingerprint": m.info.fingerprint}
    if test_set:
        tags["cnnray.test_fingerprint"] = m.info.test_fingerprint
    card = card_for_training(m.cfg, m.info, lineage=tags, training={})
    return register_weights(uri, f"exp-{name}", f"run-{name}", weights, card, example=example_image(m.cfg.data, 1),
                            registered_name=name, alias=alias, tags=tags)


def _cli(main, args, capsys):
    code = main(args)
    out = capsys.readouterr()
    last = out.out.strip().splitlines()[-1] if out.out.strip() else "{}"
    return code, (json.loads(last) if code == 0 and last.startswith("{") else None), out.err


def _aliases(uri, name):
    from mlflow.tracking import MlflowClient

    return {a: str(v) for a, v in MlflowClient(uri).get_registered_model(name).aliases.items()}


def _tags(uri, name, version):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri).get_model_version(name, version).tags


def test_better_is_promoted_equal_is_kept_and_rollback_restores(registry_server, digits_model, capsys, monkeypatch,
                                                                tmp_path):
    from workflows import promote, registry, rollback

    monkeypatch.chdir(tmp_path)
    uri, name, m = registry_server, "gate", digits_model
    args = ["--name", name, f"tracking.uri={uri}", "tracking.experiment=gate-exp", "--resamples", "1000", "--json"]
    _register(uri, m, name, m.degraded(4))  # v1: four classes always wrong
    code, rec, err = _cli(promote.main, args + ["--floor", "0.95"], capsys)
    assert code == 0 and rec["outcome"] == "kept" and "below the floor" in rec["reason"], err
    assert "champion" not in _aliases(uri, name)
    code, rec, err = _cli(promote.main, args, capsys)  # no champion, floor 0: becomes champion
    assert code == 0 and rec["outcome"] == "promoted", err
    assert _aliases(uri, name)["champion"] == "1"

    _register(uri, m, name, m.weights)  # v2: clearly better
    code, rec, err = _cli(promote.main, args + ["--dry-run"], capsys)
    assert code == 0 and rec["outcome"] == "promoted" and rec["dry_run"], err
    assert _aliases(uri, name)["champion"] == "1"  # a dry run changes nothing
    code, rec, err = _cli(promote.main, args, capsys)
    assert code == 0 and rec["outcome"] == "promoted", err
    cmp = rec["comparison"]
    assert cmp["n"] == m.info.num_test == 269 and cmp["ci_low"] > 0 and cmp["p_value"] < 1e-6 and cmp["delta"] > 0.2
    assert rec["data"]["split"] == "test" and rec["data"]["test_fingerprint"] == m.info.test_fingerprint
    assert rec["alpha"]["decision"] == 1 and rec["alpha"]["level"] == pytest.approx(0.05 / 20)  # first look
    assert _aliases(uri, name) == {"champion": "2", "previous-champion": "1", "challenger": "2"}
    tags = _tags(uri, name, "2")
    assert tags["cnnray.decision"] == "promoted" and float(tags["cnnray.decision_ci_low"]) > 0
    assert tags["cnnray.decision_fingerprint"] == m.info.fingerprint and tags["cnnray.decision_champion_version"] == "1"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    local = client.download_artifacts(tags["cnnray.decision_run_id"], "promotion_decision.json", str(tmp_path))
    saved = json.load(open(local))
    assert saved["decision_id"] == rec["decision_id"] and saved["comparison"]["p_value"] == cmp["p_value"]
    for key in ("user", "host", "time", "cnnray_version"):
        assert saved[key]

    _register(uri, m, name, m.weights)  # v3: the same weights as the champion
    code, rec, err = _cli(promote.main, args, capsys)
    assert code == 0 and rec["outcome"] == "kept" and rec["comparison"]["delta"] == 0, err
    assert _aliases(uri, name)["champion"] == "2" and _tags(uri, name, "3")["cnnray.decision"] == "kept"
    assert rec["alpha"]["decision"] == 2 and rec["alpha"]["remaining_after"] == pytest.approx(0.045)
    code, out = registry.main(["--name", name, f"tracking.uri={uri}", "--json"]), capsys.readouterr().out
    budget = json.loads(out.strip().splitlines()[-1])["test_set_budgets"][0]
    assert code == 0 and budget["current"] and budget["decisions"] == 2 and "2/20 decisions" in out
    assert "test_acc" in out and "val_acc" in out

    code, rec, err = _cli(rollback.main, ["--name", name, f"tracking.uri={uri}", "tracking.experiment=gate-exp",
                                          "--json"], capsys)
    assert code == 0 and rec["outcome"] == "rolled-back", err
    assert _aliases(uri, name) == {"champion": "1", "challenger": "3"}
    assert _tags(uri, name, "1")["cnnray.decision_action"] == "rollback"
    code, rec, err = _cli(rollback.main, ["--name", name, f"tracking.uri={uri}"], capsys)
    assert code == 2 and "nothing to roll back to" in err
    seqs = sorted(int(r.data.tags["cnnray.decision_seq"]) for r in client.search_runs(
        [client.get_experiment_by_name("gate-exp").experiment_id]))
    assert seqs == [1, 2, 3, 4, 5]  # every applied decision recorded once, in order (dry run: none)


def test_bad_input_exits_2_and_moves_no_alias(registry_server, digits_model, capsys, monkeypatch, tmp_path):
    from workflows import evaluate, predict, promote

    monkeypatch.chdir(tmp_path)
    uri, name, m = registry_server, "refuse", digits_model
    _register(uri, m, name, m.degraded(3))
    assert _cli(promote.main, ["--name", name, f"tracking.uri={uri}"], capsys)[0] == 0
    _register(uri, m, name, m.weights)
    before = _aliases(uri, name)
    bad_file = tmp_path / "notes.png"
    bad_file.write_text("not an image")
    t = f"tracking.uri={uri}"
    cases = [
        (promote.main, ["--name", "no-such-model", t], "no registered model named 'no-such-model'"),
        (promote.main, ["--name", name, "--candidate", "staging", t], "has no alias 'staging'"),
        (promote.main, ["--name", name, "--candidate", "9", t], "has no version 9"),
        (promote.main, ["--name", name, t, "data.source=synthetic", "data.num_classes=10"], "cannot compare"),
        (promote.main, ["--name", name, t, "--metric", "auc"], "valid metrics: accuracy, top5, f1_macro"),
        (promote.main, ["--name", name, t, "model.width=2"], "accepted keys"),
        (evaluate.main, ["--model", f"models:/{name}@champion", t, "data.source=synthetic", "data.num_classes=5"],
         "has 5 classes but the model predicts 10"),
        (evaluate.main, ["--model", f"models:/{name}@champion", t, "data.source=synthetic"],
         "labels the model never saw: class_0"),
        (evaluate.main, ["--model", f"models:/{name}@champion", t, "data.image_size=32"], "input contract"),
        (predict.main, ["--model", f"models:/{name}@champion", str(bad_file), t], "notes.png is not a readable image"),
        (predict.main, ["--model", f"models:/{name}@champion", str(tmp_path / "missing.png"), t], "does not exist"),
        (predict.main, ["--model", f"{name}@champion", str(bad_file), t], "is not a model URI"),
    ]
    for main, args, needle in cases:
        code, _, err = _cli(main, args, capsys)
        assert code == 2 and needle in err, (args, err)
    assert _aliases(uri, name) == before


def test_predict_files_on_disk_returns_their_classes(mlflow_server, digits_model, capsys, monkeypatch, tmp_path):
    from cnnray.data.sources.digits import native
    from cnnray.data.split import stratified_split3
    from workflows import predict

    monkeypatch.chdir(tmp_path)
    uri, name, m = mlflow_server, "files", digits_model
    _register(uri, m, name, m.weights)
    from cnnray.classifier.classifier import ImageClassifier

    clf = ImageClassifier(card_for_training(m.cfg, m.info, lineage={}, training={}), m.weights)
    x, y = native()
    _, va, _ = stratified_split3(y, 0.2, 0.15, 0)
    # A 2-epoch model: per class, the validation image it gets right with the widest margin, so the JPEG round
    # trip cannot flip it.
    best: dict[int, tuple[float, int]] = {}
    for i in va:
        p = clf.predict(x[i:i + 1, 0])
        if p.index[0] == y[i] and p.top_prob[0, 0] > best.get(int(y[i]), (0.0, -1))[0]:
            best[int(y[i])] = (float(p.top_prob[0, 0]), int(i))
    chosen = {label: i for label, (_, i) in best.items()}
    folder = tmp_path / "imgs"
    folder.mkdir()
    for label, i in chosen.items():  # as RGB PNG files: predict converts and resizes them
        img = Image.fromarray(x[i, 0]).convert("RGB")  # native 8x8: the model resizes to its 16x16 itself
        img.save(folder / f"label{label}.png")  # lossless: JPEG decoding is tested in test_serve_files.py
    code, out, err = _cli(predict.main, ["--model", f"models:/{name}@challenger", str(folder), f"tracking.uri={uri}",
                                         "--top-k", "3", "--json"], capsys)
    assert code == 0, err
    preds = out["predictions"]
    assert len(preds) == len(chosen) >= 8
    for p in preds:
        want = os.path.basename(p["path"]).split(".")[0].removeprefix("label")
        assert p["class_name"] == want, p
        assert len(p["top_classes"]) == 3 and 0 < p["probability"] <= 1


@pytest.mark.slow
def test_concurrent_promotions_end_where_the_rule_says(registry_server, digits_model, tmp_path):
    """N `cnnray promote` processes at once: champion ends on the best version, each decision recorded once."""
    uri, name, m = registry_server, "race", digits_model
    _register(uri, m, name, m.degraded(6))  # v1: weak champion
    code = subprocess.run([sys.executable, "-m", "cnnray.cli", "promote", "--name", name, f"tracking.uri={uri}",
                           "tracking.experiment=race-exp"], capture_output=True, text=True, cwd=tmp_path)
    assert code.returncode == 0, code.stderr
    # v2 best, v3 and v4 better than v1 but clearly worse than v2: sequentially, any order ends with v2.
    for k in (0, 2, 3):
        _register(uri, m, name, m.weights if k == 0 else m.degraded(k))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "cnnray.cli", "promote", "--name", name, "--candidate", v,
                               f"tracking.uri={uri}", "tracking.experiment=race-exp", "--resamples", "1000", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
             for v in ("3", "2", "4")]
    records = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        records.append(json.loads(out.strip().splitlines()[-1]))
    assert _aliases(uri, name)["champion"] == "2"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("race-exp").experiment_id])
    assert sorted(int(r.data.tags["cnnray.decision_seq"]) for r in runs) == [1, 2, 3, 4]
    assert sorted(r.data.tags["cnnray.decision_id"] for r in runs if r.data.tags["cnnray.decision_seq"] != "1") == \
        sorted(rec["decision_id"] for rec in records)
    # Replayed in commit order, every decision was taken against the champion of its moment (compare-and-set).
    champion = "1"
    for rec in sorted(records, key=lambda r: r["seq"]):
        assert rec["champion_version"] == champion, rec
        if rec["outcome"] == "promoted":
            champion = rec["candidate_version"]
    assert champion == "2"
    assert not any(rm.name.endswith(".cnnray-lock") for rm in client.search_registered_models())
    # The test set's alpha ledger counts every judged decision once, and spent what their levels say: no
    # decision lost or double-counted by the race (the ledger moves with the champion, compare-and-set).
    from cnnray.promote import Ledger
    from cnnray.tracking.promotion import LEDGER_PREFIX

    (raw,) = [v for k, v in client.get_registered_model(name).tags.items() if k.startswith(LEDGER_PREFIX)]
    ledger = Ledger.from_json(raw)
    judged = [r for r in records if (r.get("alpha") or {}).get("decision")]
    # The first, champion-less call tested no difference and spent nothing.
    assert len(judged) == 3 and sorted(r["alpha"]["decision"] for r in judged) == [1, 2, 3] and ledger.decisions == 3
    assert ledger.spent == pytest.approx(sum(r["alpha"]["level"] for r in judged)) and ledger.remaining > 0


def test_lock_is_exclusive_and_an_expired_one_is_broken(registry_server):
    import time

    from mlflow.tracking import MlflowClient

    from cnnray.tracking.lock import LockTimeout, registry_lock

    client = MlflowClient(registry_server)
    with registry_lock(registry_server, "lk") as token:
        assert client.get_registered_model("lk.cnnray-lock").tags["token"] == token
        with pytest.raises(LockTimeout, match="held by"):
            with registry_lock(registry_server, "lk", timeout_s=1.0):
                pass
    assert not client.search_registered_models("name = 'lk.cnnray-lock'")  # released
    # A holder that died: its lease ran out, so the next caller breaks the lock and gets it.
    client.create_registered_model("lk.cnnray-lock", tags={"token": "dead", "expires": f"{time.time() - 1:.3f}"})
    with registry_lock(registry_server, "lk", timeout_s=30) as token:
        assert client.get_registered_model("lk.cnnray-lock").tags["token"] == token != "dead"
    names = [m.name for m in client.search_registered_models()]
    assert not [n for n in names if n.startswith("lk.")]  # lock and breaker both gone
