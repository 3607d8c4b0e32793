"""Ray Data streaming over the Parquet shards (the one place in cnnray/data that imports Ray, lazily)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from cnnray.config.data import DataSection
from cnnray.data.codec import decode_many
from cnnray.data.describe import load_arrays
from cnnray.data.info import DatasetInfo
from cnnray.data.manifest import read_manifest, shard_paths
from cnnray.data.rng import accepts_generator, epoch_generator
from cnnray.data.shards import SCHEMA
from cnnray.data.sources.common import require_path

DECODE_BATCH = 256  # rows per map_batches call: large enough to amortize the call, small enough to stream


def decode_batch(batch: dict[str, np.ndarray], fmt: str, channels: int, size: int) -> dict[str, np.ndarray]:
    """map_batches UDF: encoded rows -> {'image': uint8 [B,C,S,S], 'label': int64 [B]}."""
    shapes = [tuple(int(v) for v in s) for s in batch["shape"]]
    images = decode_many(list(batch["image"]), shapes, fmt, channels, size)
    return {"image": images, "label": np.asarray(batch["label"], dtype=np.int64)}


def _raw_table(x: torch.Tensor, y: torch.Tensor) -> pa.Table:
    n, c, h, w = x.shape
    flat = x.reshape(n, -1).numpy()
    return pa.table({"image": pa.array([r.tobytes() for r in flat], pa.binary()),
                     "shape": pa.array([[c, h, w]] * n, pa.list_(pa.int32())),
                     "label": pa.array(y.numpy(), pa.int64()),
                     "path": pa.array([str(i) for i in range(n)], pa.string())}, schema=SCHEMA)


def build_streaming_datasets(cfg: DataSection, info: DatasetInfo) -> dict[str, Any]:
    """{'train', 'val'}: Ray Datasets of uint8 'image' [C,S,S] and int64 'label', decoded in map_batches.

    parquet reads the shards listed in manifest.json (local path or URI). Other sources are loaded in the
    driver with load_arrays and handed to Ray Data as raw rows (ray.data.from_arrow), so loader=streaming
    works for them too, though it only pays off for data that is already sharded.
    """
    # deferred (heavy import): ray
    import ray.data

    size, channels = cfg.image_size, info.channels
    if cfg.source == "parquet":
        manifest, fs, base = read_manifest(require_path(cfg))
        fmt = manifest["format"]

        def read(split: str) -> Any:
            paths = [p for p, _ in shard_paths(manifest, base, split)]
            if not paths:  # a split with no shard: an empty dataset with the same columns
                return ray.data.from_arrow(SCHEMA.empty_table())
            return ray.data.read_parquet(paths, filesystem=fs).select_columns(["image", "shape", "label"])
    else:
        tx, ty, vx, vy = load_arrays(cfg)
        fmt = "raw"
        tables = {"train": _raw_table(tx, ty), "val": _raw_table(vx, vy)}

        def read(split: str) -> Any:
            t = tables[split]
            return ray.data.from_arrow(t, override_num_blocks=max(1, min(16, t.num_rows // 1024)))

    kwargs = {"fmt": fmt, "channels": channels, "size": size}
    return {split: read(split).map_batches(decode_batch, batch_format="numpy", batch_size=DECODE_BATCH,
                                           fn_kwargs=kwargs)
            for split in ("train", "val")}


class StreamingLoader:
    """Iterate (x, y) from a Ray Data shard (`ray.train.get_dataset_shard`, a DataIterator or a Dataset).

    Batches arrive as uint8 on `device` and go through `transform` (None: x stays uint8). The shard's
    order is Ray Data's; `set_epoch` only reseeds the optional local shuffle buffer. Ray Train splits
    datasets with equal=True by default, so each rank sees the same number of rows; with drop_last every
    rank then yields the same number of batches.
    """

    def __init__(self, shard: Any, batch_size: int, *, device: torch.device | str,
                 transform: Callable[..., torch.Tensor] | None, drop_last: bool = True,
                 local_shuffle_buffer_size: int | None = None, seed: int = 0) -> None:
        self.shard = shard
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.transform = transform
        self.drop_last = drop_last
        self.local_shuffle_buffer_size = local_shuffle_buffer_size
        self.seed = seed
        self.epoch = 0
        self._tf_takes_generator = transform is not None and accepts_generator(transform)

    def set_epoch(self, epoch: int) -> None:
        """Remember the epoch (it seeds the local shuffle buffer and the augmentation stream)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        shuffle = self.local_shuffle_buffer_size
        batches = self.shard.iter_torch_batches(
            batch_size=self.batch_size, dtypes={"image": torch.uint8, "label": torch.int64}, device=self.device,
            drop_last=self.drop_last, local_shuffle_buffer_size=shuffle,
            local_shuffle_seed=(self.seed * 1_000_003 + self.epoch) if shuffle else None)
        gen = epoch_generator(self.seed, self.epoch, stream=1)
        for batch in batches:
            x, y = batch["image"], batch["label"]
            if self.transform is not None:
                x = self.transform(x, generator=gen) if self._tf_takes_generator else self.transform(x)
            yield x, y
