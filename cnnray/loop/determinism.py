"""`train.deterministic=true`: the settings under which a rerun of a run gives the same weights bit for bit
(on CPU, with the same worker count; GPU kernels and a different world size change the arithmetic, see the
README's replay section)."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from cnnray.data.rng import epoch_generator

# Streams of `epoch_generator` used here; the data loaders use 0 (order) and 1 + rank (augmentation).
_GLOBAL_STREAM = 10_000


def enable_determinism() -> None:
    """Refuse nondeterministic kernels (an error names any op that has no deterministic version)."""
    # cuBLAS needs a fixed workspace to be deterministic; set before the first CUDA matmul.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Reseed the global streams (dropout, DropBlock, stochastic depth, mixup/cutmix draws) from (seed, epoch,
    rank): an epoch's random numbers do not depend on what ran before it, so a resumed run draws the same."""
    value = int(torch.randint(0, 2**62, (1,), generator=epoch_generator(seed, epoch, _GLOBAL_STREAM + rank)))
    torch.manual_seed(value)  # also every CUDA device's generator
    random.seed(value)
    np.random.seed(value % 2**32)
