"""Hyperparameter search on Ray Tune: search spaces, schedulers and searchers, one TorchTrainer per trial.

Importing this package does not import Ray: a bad space is refused before Ray starts. The Ray side
lives in `runner` (driver), `trial` (the per-trial driver function) and `forward` (Train -> Tune).
"""

from cnnray.tune.space import Param, SearchSpace, load_space, parse_space, space_names

__all__ = ["Param", "SearchSpace", "load_space", "parse_space", "space_names"]
