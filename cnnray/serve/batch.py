"""Ray Data batch inference over Parquet (the one module of cnnray/serve that imports Ray).

Actors each hold the model(s) once; blocks of rows stream through them, so a data set larger than
memory is read, decoded and predicted in one pass. Several models run in the same actor on the same
rows, which keeps the per-example results of a promotion paired. Sources: a directory written by
`cnnray data prepare` (its manifest picks the split's shards) or any Parquet file/directory with an
`image` column of encoded images.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cnnray.classifier.card import ModelCard
from cnnray.classifier.classifier import ImageClassifier
from cnnray.cluster.ray_session import ensure_ray
from cnnray.data.codec import decode_many
from cnnray.errors import DataError

BATCH = 256


@dataclass
class ParquetSource:
    """Files to read and how their images are stored."""

    paths: list[str]
    filesystem: Any
    fmt: str | None  # png/jpeg/raw from a manifest; None: encoded images decoded by PIL
    has_label: bool
    class_names: tuple[str, ...] | None


def parquet_source(path: str, split: str | None) -> ParquetSource:
    """A prepared directory's shards of `split` (all splits when None), or plain Parquet with an `image` column."""
    # deferred (heavy import): pyarrow
    import pyarrow.parquet as pq

    from cnnray.data.manifest import MANIFEST, read_manifest, shard_paths
    from cnnray.data.uri import is_file, join, open_location

    fs, base = open_location(path, "--data parquet")
    if is_file(fs, join(base, MANIFEST)):
        manifest, fs, base = read_manifest(path)
        splits = [split] if split else sorted({s["split"] for s in manifest["shards"]})
        paths = [p for s in splits for p, _ in shard_paths(manifest, base, s)]
        if not paths:
            raise DataError(f"{path} has no {split} shards")
        return ParquetSource(paths, fs, manifest["format"], True, tuple(manifest["class_names"]))
    # deferred (heavy import): pyarrow
    import pyarrow.fs as pafs

    info = fs.get_file_info(base)
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"--data parquet {path}: does not exist")
    if info.type == pafs.FileType.Directory:
        paths = sorted(f.path for f in fs.get_file_info(pafs.FileSelector(base, recursive=True))
                       if f.is_file and f.path.endswith(".parquet"))
    else:
        paths = [base]
    if not paths:
        raise DataError(f"--data parquet {path}: no .parquet files")
    try:
        schema = pq.read_schema(paths[0], filesystem=fs)
    except (OSError, ValueError) as e:  # pyarrow: ArrowInvalid (a ValueError) for a file that is not Parquet
        raise DataError(f"{paths[0]} is not a readable Parquet file: {e}") from None
    if "image" not in schema.names:
        raise DataError(f"{paths[0]} has no 'image' column (encoded image bytes); columns: {', '.join(schema.names)}")
    return ParquetSource(paths, fs, None, "label" in schema.names, None)


class _Predictor:
    """map_batches actor: decode rows at each model's input contract, predict, return per-row results."""

    def __init__(self, models: list[tuple[dict[str, Any], dict[str, torch.Tensor]]], fmt: str | None, top_k: int,
                 use_gpu: bool) -> None:
        device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
        self.models = [ImageClassifier(ModelCard.from_dict(card), sd, device=device) for card, sd in models]
        self.fmt, self.top_k = fmt, top_k

    def _images(self, clf: Any, batch: dict[str, np.ndarray]) -> torch.Tensor:
        c = clf.card.input
        if self.fmt is not None:  # prepared shards decode as the parquet source does (what in-process evaluation sees)
            shapes = [tuple(int(v) for v in s) for s in batch["shape"]]
            return torch.from_numpy(decode_many(list(batch["image"]), shapes, self.fmt, c.channels, c.image_size))
        return clf.preprocess(list(batch["image"]))  # encoded images of any size: the model's own preprocessing

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for key in ("label", "path"):
            if key in batch:
                out[key] = batch[key]
        for m, clf in enumerate(self.models):
            pred = clf.predict_uint8(self._images(clf, batch), top_k=self.top_k)
            out[f"pred_{m}"] = pred.index
            out[f"prob_{m}"] = pred.probs[np.arange(len(pred.index)), pred.index]
            out[f"top_index_{m}"] = pred.top_index
            out[f"top_prob_{m}"] = pred.top_prob
            if "label" in batch:
                y = np.asarray(batch["label"], np.int64)
                k = pred.probs.shape[1]
                top5 = np.argsort(-pred.logits, axis=1)[:, :min(5, k)]
                out[f"top5_{m}"] = (top5 == y[:, None]).any(1)
                logp = torch.log_softmax(torch.from_numpy(pred.logits), 1).numpy()
                out[f"nll_{m}"] = -logp[np.arange(len(y)), np.clip(y, 0, k - 1)]
        return out


def stream_predictions(source: ParquetSource, models: list[Any], *, top_k: int = 5, concurrency: int | None = None,
                       batch_size: int = BATCH) -> Iterator[dict[str, np.ndarray]]:
    """Per-row results as numpy batches (pred_i, prob_i, top_index_i, top_prob_i, and with labels top5_i, nll_i)."""
    # deferred (heavy import): ray
    import ray
    import ray.data


    ensure_ray()
    use_gpu = ray.cluster_resources().get("GPU", 0) > 0
    columns = [c for c in ("image", "shape", "label", "path") if c in _columns(source)]
    # select_columns, not read_parquet(columns=): deprecated in Ray 2.60 (projection is still pushed down).
    ds = ray.data.read_parquet(source.paths, filesystem=source.filesystem).select_columns(columns)
    payload = [(_card_dict(clf.card), {k: v.cpu() for k, v in clf.model.state_dict().items()}) for clf in models]
    # One actor per GPU; on CPUs one per 4 cores (each holds a model and uses intra-op threads), at most 8.
    res = ray.cluster_resources()
    n = concurrency or (int(res["GPU"]) if use_gpu else max(1, min(8, int(res.get("CPU", 1)) // 4)))
    ds = ds.map_batches(_Predictor, fn_constructor_kwargs={"models": payload, "fmt": source.fmt, "top_k": top_k,
                                                           "use_gpu": use_gpu},
                        batch_size=batch_size, batch_format="numpy", concurrency=n,
                        num_gpus=1 if use_gpu else 0, num_cpus=0 if use_gpu else 1)
    yield from ds.iter_batches(batch_size=None, batch_format="numpy")


def _columns(source: ParquetSource) -> list[str]:
    # deferred (heavy import): pyarrow
    import pyarrow.parquet as pq

    return pq.read_schema(source.paths[0], filesystem=source.filesystem).names


def _card_dict(card: ModelCard) -> dict[str, Any]:
    return json.loads(card.to_json())
