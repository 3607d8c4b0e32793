"""One real training image of a data set: the input example every registered version carries."""

from __future__ import annotations

import numpy as np

from cnnray.config.data import DataSection


def example_image(data: DataSection, channels: int) -> np.ndarray:
    """One real training image, uint8 C,S,S (the registered model's input example), read cheaply."""
    from cnnray.data import absolute_data_path, load_arrays

    data = absolute_data_path(data)
    if data.source == "parquet":
        import pyarrow.parquet as pq

        from cnnray.data.codec import decode
        from cnnray.data.manifest import read_manifest, shard_paths

        manifest, fs, base = read_manifest(data.path or "")
        path = shard_paths(manifest, base, "train")[0][0]
        with fs.open_input_file(path) as f:
            row = pq.ParquetFile(f).read_row_group(0, columns=["image", "shape"]).slice(0, 1).to_pylist()[0]
        return decode(row["image"], row["shape"], manifest["format"], channels, data.image_size)
    if data.source == "imagefolder":
        from cnnray.data.codec import decode_file
        from cnnray.data.folder import scan_folder

        listing = scan_folder(data.path or "")
        return decode_file(listing.train[0][0], channels, data.image_size)
    from cnnray.data.convert import to_channels

    return to_channels(load_arrays(data)[0][:1], channels)[0].numpy()
