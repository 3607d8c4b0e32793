"""Ray Data batch inference on Parquet shards: evaluate agrees with in-process decoding; predict writes Parquet."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from cnnray.serve import card_for_training
from cnnray.data.example import example_image
from cnnray.tracking.model_registry import register_weights


@pytest.fixture(scope="module")
def shards(tmp_path_factory, digits_model):
    from cnnray.data.prepare import prepare_dataset

    out = tmp_path_factory.mktemp("shards") / "digits"
    prepare_dataset(digits_model.cfg.data.model_copy(update={"image_size": 8}), out, shards=3, fmt="png",
                    progress=False)
    return out


def _run(main, args, capsys):
    code = main(args)
    cap = capsys.readouterr()
    assert code == 0, cap.err[-3000:]
    return json.loads(cap.out.strip().splitlines()[-1])


@pytest.mark.slow
def test_parquet_evaluate_and_predict_through_ray_data(ray_local, mlflow_server, digits_model, shards, capsys,
                                                        monkeypatch, tmp_path):
    from workflows import evaluate, predict

    monkeypatch.chdir(tmp_path)
    m = digits_model
    card = card_for_training(m.cfg, m.info, lineage={}, training={})
    register_weights(mlflow_server, "batch-exp", "batch-run", m.weights, card, example=example_image(m.cfg.data, 1),
                     registered_name="batch", alias="challenger")
    common = ["--model", "models:/batch@challenger", f"tracking.uri={mlflow_server}", "data.source=parquet",
              f"data.path={shards}", "--no-log", "--json"]
    streamed = _run(evaluate.main, common, capsys)
    in_memory = _run(evaluate.main, common + ["data.loader=memory"], capsys)
    assert streamed["n"] == in_memory["n"] == 269  # the held-out test shards (the default split)
    assert streamed["confusion_matrix"] == in_memory["confusion_matrix"]
    for k, v in in_memory["metrics"].items():
        assert streamed["metrics"][k] == pytest.approx(v, abs=1e-5), k
    assert not streamed["same_data_as_training"]  # parquet shards are another data set than the digits source

    out = tmp_path / "preds" / "predictions.parquet"
    res = _run(predict.main, ["--model", "models:/batch@challenger", "--data", "parquet", str(shards), "--out", str(out),
                              "--split", "test", f"tracking.uri={mlflow_server}", "--json"], capsys)
    table = pq.read_table(out)
    assert res["rows"] == table.num_rows == 269
    assert {"path", "label", "class_index", "class_name", "probability", "top_classes"} <= set(table.column_names)
    idx, labels = table["class_index"].to_numpy(), table["label"].to_numpy()
    assert np.mean(idx == labels) == pytest.approx(in_memory["metrics"]["acc"])
    assert table["class_name"].to_pylist() == [str(i) for i in idx]
