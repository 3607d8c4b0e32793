"""One real training image of a data set: the input example every registered version carries."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from cnnray.config.data import DataSection
from cnnray.data import absolute_data_path, load_arrays
from cnnray.data.codec import decode, decode_file
from cnnray.data.convert import to_channels
from cnnray.data.folder import scan_folder
from cnnray.data.manifest import read_manifest, shard_paths


def example_image(data: DataSection, channels: int) -> np.ndarray:
    """One real training image, uint8 C,S,S (the registered model's input example), read cheaply."""
    data = absolute_data_path(data)
    if data.source == "parquet":
        manifest, fs, base = read_manifest(data.path or "")
        path = shard_paths(manifest, base, "train")[0][0]
        with fs.open_input_file(path) as f:
            row = pq.ParquetFile(f).read_row_group(0, columns=["image", "shape"]).slice(0, 1).to_pylist()[0]
        return decode(row["image"], row["shape"], manifest["format"], channels, data.image_size)
    if data.source == "imagefolder":
        listing = scan_folder(data.path or "")
        return decode_file(listing.train[0][0], channels, data.image_size)

    return to_channels(load_arrays(data)[0][:1], channels)[0].numpy()
