"""Parquet shards of encoded images: one schema, fixed writer settings (byte-identical reruns), verified reads."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from cnnray.data.uri import read_bytes
from cnnray.errors import DataError

SCHEMA = pa.schema([
    pa.field("image", pa.binary()),  # png/jpeg bytes, or raw uint8 C*H*W row-major
    pa.field("shape", pa.list_(pa.int32())),  # C, H, W
    pa.field("label", pa.int64()),
    pa.field("path", pa.string()),  # source path relative to its root, or split/index for array sources
])
ROW_GROUP = 1024  # rows per row group: lets readers split a shard without reading all of it


def shard_name(split: str, index: int, count: int) -> str:
    """`train-00000-of-00004.parquet`."""
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


def write_shard(path: Path, images: Sequence[bytes], shapes: Sequence[Sequence[int]], labels: Sequence[int],
                paths: Sequence[str]) -> dict[str, object]:
    """Write one shard and return its row count and sha256."""
    table = pa.table({"image": pa.array(images, pa.binary()), "shape": pa.array(shapes, pa.list_(pa.int32())),
                      "label": pa.array(labels, pa.int64()), "path": pa.array(paths, pa.string())}, schema=SCHEMA)
    # No timestamps are written; fixed compression, row groups and no statistics keep reruns byte-identical.
    pq.write_table(table, str(path), row_group_size=ROW_GROUP, compression="zstd", compression_level=3,
                   use_dictionary=False, write_statistics=False)
    return {"file": path.name, "rows": table.num_rows, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def read_shard(fs: pafs.FileSystem, path: str, sha256: str | None = None) -> pa.Table:
    """Read one shard, checking its sha256 against the manifest when given."""
    data = read_bytes(fs, path, "parquet shard")
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise DataError(f"parquet shard {path} does not match the sha256 in manifest.json: it changed after "
                        "`cnnray data prepare`; prepare the data again")
    try:
        table = pq.read_table(pa.BufferReader(data), columns=["image", "shape", "label"])
    except Exception as e:
        raise DataError(f"cannot read parquet shard {path}: {e}") from None
    return table
