"""`cnnray predict` from its options: class names with confidences for image files, or a Parquet data set
predicted through Ray Data into a Parquet file."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from cnnray.cluster.ray_session import quiet_ray
from cnnray.errors import UserInputError
from cnnray.serve.batch import ParquetSource, parquet_source
from cnnray.serve.batch_write import predict_parquet
from cnnray.serve.files import collect_images
from cnnray.serve.options import VersionCommand
from cnnray.serve.tables import predictions_table
from cnnray.tracking.model_store import load_version


@dataclass(frozen=True)
class PredictOptions(VersionCommand):
    """The options of `cnnray predict` as given; `validate()` before `run_predict`."""

    model: str  # models:/NAME@ALIAS, models:/NAME/VERSION or runs:/ID/model
    inputs: tuple[str, ...] = ()  # image files or directories, and tracking.* keys
    top_k: int = 5
    data: tuple[str, str] | None = None  # ("parquet", PATH): batch prediction through Ray Data
    split: str | None = None  # with data on a prepared directory: only this split
    out: str | None = None  # with data: the predictions Parquet file to write
    verbose: bool = False  # show Ray's own logs

    def key_args(self) -> list[str]:
        return [a for a in self.inputs if "=" in a]

    @property
    def paths(self) -> list[str]:
        """The inputs that are files or directories."""
        return [a for a in self.inputs if "=" not in a]

    @cached_property
    def source(self) -> ParquetSource:
        """The Parquet data set of --data; DataError when there is none to read."""
        return parquet_source(self.data[1], self.split)

    @cached_property
    def images(self) -> tuple[list[Path], list[bytes]]:
        """(files, their bytes) of the image inputs; DataError naming one that cannot be read."""
        return collect_images(self.paths)

    def validate(self) -> None:
        """UserInputError (exit 2) for bad input, before the version is loaded."""
        _ = self.ref, self.keys
        if self.top_k < 1:
            raise UserInputError(f"--top-k must be at least 1, got {self.top_k}")
        if self.data:
            if self.data[0] != "parquet":
                raise UserInputError(f"--data {self.data[0]!r}: only 'parquet' is supported (--data parquet PATH)")
            if not self.out or self.paths:
                raise UserInputError("--data parquet PATH needs --out predictions.parquet and no image files")
            _ = self.source
        else:
            if not self.paths:
                raise UserInputError("give image files or directories, or --data parquet PATH --out FILE")
            _ = self.images


def run_predict(opts: PredictOptions) -> dict[str, Any]:
    """Load the version, predict, print the table (or where the predictions went); the --json object."""
    clf, version = load_version(opts.ref, opts.keys.tracking_uri)
    if opts.data:
        quiet_ray(opts.verbose)
        n = predict_parquet(clf, opts.source, opts.out, top_k=opts.top_k)
        print(f"{version.label}: wrote {n} predictions to {opts.out}")
        return {"model_uri": version.label, "out": opts.out, "rows": n}
    files, images = opts.images
    rows = clf.predict(images, top_k=opts.top_k).records(clf.class_names)
    for f, r in zip(files, rows):
        r["path"] = str(f)
    print(predictions_table(rows, opts.top_k), flush=True)
    return {"model_uri": version.label, "name": version.name, "version": version.version, "predictions": rows}
