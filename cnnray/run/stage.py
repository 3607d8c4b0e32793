"""Initial weights on their way to the ranks: written once by the driver as files under the run's (or
search's) folder, which every rank can already read (it holds the checkpoints), and read back by each rank
with `weights_only=True`. Large tensors never ride inside the JSON plan (`LoopConfig`), so a 100 MB
ResNet-50 reaches Ray Train workers on other nodes, local rank processes and Tune trials alike.
"""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from cnnray.data.uri import join, open_location, read_bytes
from cnnray.run.init_from import encode_state
from cnnray.run.loop_config import InitState

INIT_DIR = "init"  # under the run's folder: weights.pt (model.init_from or compress), teacher.pt
_CACHE: dict[str, dict[str, Tensor]] = {}  # path -> state: a reused actor (Tune) reads a staged file once


def _write(folder: str, name: str, state: dict[str, Tensor]) -> str:
    fs, root = open_location(folder, key="scaling.storage_path")
    fs.create_dir(f"{root}/{INIT_DIR}", recursive=True)
    with fs.open_output_stream(f"{root}/{INIT_DIR}/{name}") as f:
        f.write(encode_state(state))
    return join(join(folder, INIT_DIR), name)


def stage_initial_weights(prep: Any, folder: str | None = None) -> Any:
    """`prep` with its initial weights (model.init_from, or a compress fine-tune's) and teacher written under
    `folder` (default: the run's folder) and their paths in `prep.init`; the in-memory tensors dropped."""
    folder = folder or prep.run_dir
    init, source = prep.init, prep.init_source
    weights = source.state if source is not None and source.state else prep.init_weights
    if weights is not None:
        adapt = ({"strict": prep.cfg.model.init_strict, "source_classes": list(source.classes or []) or None}
                 if source is not None else None)
        init = replace(init, weights_path=_write(folder, "weights.pt", weights), adapt=adapt)
    if prep.teacher_weights is not None:
        init = replace(init, teacher={**(init.teacher or {}),
                                      "weights_path": _write(folder, "teacher.pt", prep.teacher_weights)})
    prep.init = init
    prep.init_weights = prep.teacher_weights = None
    if source is not None:
        prep.init_source = replace(source, state={})  # what follows (a pickled Tune setup) carries no tensors
    return prep


def read_staged(path: str) -> dict[str, Tensor]:
    """A staged state_dict (tensors only: weights_only=True), read once per process."""
    if path not in _CACHE:
        fs, p = open_location(path, key="scaling.storage_path")
        state = torch.load(io.BytesIO(read_bytes(fs, p, "staged initial weights")), map_location="cpu",
                           weights_only=True)
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise ValueError(f"{path}: staged initial weights are not a state_dict of tensors")
        if len(_CACHE) >= 2:  # a model's weights and a teacher's at most
            _CACHE.clear()
        _CACHE[path] = state
    return _CACHE[path]
