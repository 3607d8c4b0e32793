"""A search's identity on storage: its directory, whether it exists, and the config + space saved for --resume."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from cnnray.config import Config
from cnnray.errors import ConfigError
from cnnray.train.claim import refuse_if_in_use
from cnnray.tune.space import SearchSpace, parse_space

STATE_FILE = "cnnray_search.json"  # next to Tune's own experiment state


@dataclass
class SearchIdentity:
    """Name, storage root and experiment directory of a search."""

    name: str
    storage_path: str
    path: str
    resume: bool


def _fs(path: str):
    import pyarrow.fs as pafs

    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), str(Path(path).resolve())


def storage_root(cfg: Config) -> str:
    """scaling.storage_path (default ./ray_results), absolute when local."""
    path = cfg.scaling.storage_path or "ray_results"
    return path if "://" in path else str(Path(path).resolve())


def search_identity(cfg: Config) -> SearchIdentity:
    """Refuse a new search under an existing name, or a resume of a search that is not there."""
    import pyarrow.fs as pafs

    resume = cfg.tune.resume
    if resume and not cfg.run.name:
        raise ConfigError("tune.resume=true needs run.name (or use --resume NAME)")
    name = cfg.run.name or datetime.now().strftime("tune-%Y%m%d-%H%M%S")
    if "/" in name:
        raise ConfigError(f"run.name '{name}' may not contain '/'")
    storage = storage_root(cfg)
    path = f"{storage.rstrip('/')}/{name}"
    fs, fs_path = _fs(path)
    exists = fs.get_file_info(fs_path).type != pafs.FileType.NotFound
    if exists:
        refuse_if_in_use(path, what="search")
    if exists and not resume:
        raise ConfigError(f"a search named '{name}' already exists at {path}; continue it with "
                          f"`cnnray tune --resume {name}`, or choose another run.name")
    if resume and not exists:
        raise ConfigError(f"--resume {name}: no search named '{name}' at {path}")
    return SearchIdentity(name, storage, path, resume)


def save_state(ident: SearchIdentity, cfg: Config, space: SearchSpace) -> None:
    """Write the resolved config and the space, so `--resume NAME` needs nothing else."""
    fs, fs_path = _fs(ident.path)
    fs.create_dir(fs_path, recursive=True)
    text = Path(space.source).read_text() if space.source and Path(space.source).is_file() else ""
    blob = json.dumps({"config": cfg.model_dump(mode="json"), "space_name": space.name, "space_yaml": text})
    # Written aside and moved into place: a search killed mid-write leaves the old file or none, never half.
    tmp = f"{fs_path}/.{STATE_FILE}.{uuid.uuid4().hex}.tmp"
    with fs.open_output_stream(tmp) as f:
        f.write(blob.encode())
    fs.move(tmp, f"{fs_path}/{STATE_FILE}")


def load_state(ident: SearchIdentity) -> tuple[dict[str, Any], SearchSpace]:
    """The config tree and space saved by `save_state`."""
    fs, fs_path = _fs(ident.path)
    try:
        with fs.open_input_stream(f"{fs_path}/{STATE_FILE}") as f:
            raw = f.read()
    except (FileNotFoundError, OSError):
        raise ConfigError(f"--resume {ident.name}: {ident.path} is not a cnnray search (no {STATE_FILE})") from None
    try:
        state = json.loads(raw.decode())
        tree, space_name, space_yaml = state["config"], state["space_name"], state["space_yaml"]
        if not isinstance(tree, dict):
            raise TypeError("config is not a mapping")
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"--resume {ident.name}: {ident.path}/{STATE_FILE} is corrupt ({type(e).__name__}: "
                          f"{str(e)[:120]}); the search cannot be resumed, start a new one") from None
    space = parse_space(yaml.safe_load(space_yaml), space_name, source=f"{ident.path}/{STATE_FILE}")
    return tree, space
