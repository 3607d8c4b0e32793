"""manifest.json beside the Parquet shards: classes, counts, stats, shard list and the content fingerprint."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from cnnray.data.fingerprint import combine
from cnnray.data.uri import is_file, join, open_location, read_bytes
from cnnray.errors import DataError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
REQUIRED = ("format_version", "format", "channels", "class_names", "splits", "shards", "fingerprint", "mean", "std")


def fingerprint_of(shards: Iterable[dict[str, Any]]) -> str:
    """sha256 over the shards' sha256s in manifest order."""
    return combine(str(s["sha256"]) for s in shards)


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write manifest.json with sorted keys so reruns are byte-identical."""
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(path: str, key: str = "data.path") -> tuple[dict[str, Any], pafs.FileSystem, str]:
    """(manifest, filesystem, base path) of a prepared directory or URI; DataError when absent or invalid."""
    fs, base = open_location(path, key)
    target = join(base, MANIFEST)
    if not is_file(fs, target):
        raise DataError(f"{key}={path!r}: no {MANIFEST} at {target}; expected a directory written by "
                        "`cnnray data prepare` (Parquet shards plus manifest.json)")
    try:
        manifest = json.loads(read_bytes(fs, target, MANIFEST))
    except json.JSONDecodeError as e:
        raise DataError(f"{target} is not valid JSON: {e}") from None
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise DataError(f"{target} lacks keys {', '.join(missing)}; prepare the data again")
    if manifest["format_version"] != FORMAT_VERSION:
        raise DataError(f"{target} has format_version {manifest['format_version']}; this cnnray reads "
                        f"{FORMAT_VERSION}; prepare the data again")
    if fingerprint_of(manifest["shards"]) != manifest["fingerprint"]:
        raise DataError(f"{target}: fingerprint does not match its shard list; the manifest was edited")
    return manifest, fs, base


def shard_paths(manifest: dict[str, Any], base: str, split: str) -> list[tuple[str, str]]:
    """(path, sha256) of the shards of one split, in manifest order."""
    return [(join(base, s["file"]), s["sha256"]) for s in manifest["shards"] if s["split"] == split]
