"""Hyperparameter search on Ray Tune: search spaces, schedulers and searchers, one TorchTrainer per trial.

Importing this package does not import Ray: a bad space is refused before Ray starts. By stage:
`space` (spaces, a trial's config, checks against the config tree) and `prepare` (settings, the search's
identity on storage) run before Ray; `search` (domains, searchers, trial schedulers, the Tuner), `trial`
(everything in a trial's actor), `runs` (MLflow child runs), `results` and `report` (tables, plots),
`cost` (what the search spent and what its scheduler saved: plain arithmetic) and `budget`
(tune.budget_device_hours as a Tune stopper), and `runner`, which drives them all.
"""

from cnnray.tune.space import Param, SearchSpace, load_space, parse_space, space_names

__all__ = ["Param", "SearchSpace", "load_space", "parse_space", "space_names"]
