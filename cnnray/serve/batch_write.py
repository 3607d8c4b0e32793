"""Batch prediction of a Parquet data set into one Parquet file, written as the rows stream in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cnnray.serve.batch import ParquetSource, stream_predictions


def predict_parquet(clf: Any, source: ParquetSource, out: str | Path, *, top_k: int = 5) -> int:
    """Write path/label (when present), class_index, class_name, probability and the top-k; returns the row count."""
    names = np.asarray(clf.class_names, dtype=object)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    writer, n = None, 0
    try:
        for b in stream_predictions(source, [clf], top_k=top_k):
            cols: dict[str, Any] = {}
            if "path" in b:
                cols["path"] = pa.array([str(p) for p in b["path"]], pa.string())
            if "label" in b:
                cols["label"] = pa.array(np.asarray(b["label"], np.int64))
            idx = np.asarray(b["pred_0"], np.int64)
            cols["class_index"] = pa.array(idx)
            cols["class_name"] = pa.array(list(names[idx]), pa.string())
            cols["probability"] = pa.array(np.asarray(b["prob_0"], np.float32))
            cols["top_classes"] = pa.array([list(names[r]) for r in np.asarray(b["top_index_0"])], pa.list_(pa.string()))
            cols["top_probabilities"] = pa.array([list(map(float, r)) for r in np.asarray(b["top_prob_0"])],
                                                 pa.list_(pa.float32()))
            table = pa.table(cols)
            if writer is None:
                writer = pq.ParquetWriter(str(tmp), table.schema)
            writer.write_table(table)
            n += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        return 0
    tmp.replace(out)  # only a complete file appears under the requested name
    return n
