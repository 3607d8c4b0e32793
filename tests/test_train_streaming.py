"""A training run on the streaming (Ray Data) loader end to end: Parquet shards -> a Train worker -> checkpoint."""

from __future__ import annotations

import math
from pathlib import Path

from cnnray.config import load_config
from cnnray.config.data import DataSection
from cnnray.data.prepare import prepare_dataset


def test_streaming_loader_trains_from_parquet_shards(ray_local, tmp_path):
    from cnnray.run.outcome import load_best
    from cnnray.run.training import run_training

    # A small image set as 3 Parquet shards: data.source=parquet is what a large data set on a cluster looks like.
    # Small, because each streamed epoch costs Ray Data seconds of start-up whatever its size.
    prepare_dataset(DataSection(source="synthetic", num_classes=4, samples_per_class=120, image_size=16),
                    tmp_path / "pq", shards=3, progress=False)
    cfg = load_config(overrides=[
        "data.source=parquet", f"data.path={tmp_path / 'pq'}", "data.loader=streaming", "data.image_size=16",
        "model.name=resnet18", "model.width=0.125", "train.batch_size=16", "train.epochs=2", "train.ema=false",
        "train.precision=fp32", "scaling.num_workers=1", "tracking.enabled=false", "run.name=stream",
        f"scaling.storage_path={tmp_path / 'ray'}"])
    reports: list[dict] = []
    result = run_training(cfg, on_line=lambda s: None, on_report=reports.append)
    assert result["status"] == "FINISHED", result
    assert result["loader"] == "streaming"  # forced by data.loader, not the memory loader's fallback
    assert result["epochs_run"] == 2
    epochs = [r for r in reports if "val_acc" in r]
    assert [r["epoch"] for r in epochs] == [0, 1], reports
    assert all(r["world_size"] == 1 for r in epochs)
    # Sensible: it learned (4 classes: chance is 0.25) and every number is finite.
    assert all(math.isfinite(r["val_loss"]) and math.isfinite(r["train_loss"]) for r in epochs)
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"], epochs
    assert result["best_metrics"]["val_acc"] > 0.35, result["best_metrics"]
    assert 0.0 <= epochs[-1]["val_acc"] <= 1.0
    # The checkpoint is written and holds the best weights with their metadata.
    ckpt = Path(result["checkpoint"])
    assert ckpt.is_dir() and str(ckpt).startswith(str(tmp_path / "ray" / "stream"))
    weights, meta = load_best(ckpt)
    assert "fc.weight" in weights and weights["fc.weight"].shape[0] == 4
    assert meta["best_epoch"] == result["best_epoch"] and meta["best_metrics"]["val_acc"] == result["best_metrics"]["val_acc"]
