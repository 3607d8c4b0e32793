"""A SearchSpace in the forms Tune's searchers take: Tune domains, grid points, Optuna define-by-run."""

from __future__ import annotations

import itertools
from typing import Any

from ray import tune

from cnnray.tune.resolve import GRID_KEY, active_values, encode_choice
from cnnray.tune.space import Param, SearchSpace


def tune_domain(p: Param) -> Any:
    """The Tune sampling domain of one parameter (conditionals are sampled and dropped later if inactive)."""
    if p.kind == "choice":
        return tune.choice([encode_choice(v) for v in p.values])
    if p.kind == "uniform":
        return tune.uniform(p.low, p.high)
    if p.kind == "loguniform":
        return tune.loguniform(p.low, p.high)
    return tune.randint(int(p.low), int(p.high) + 1)  # Tune's upper bound is exclusive


def param_space(space: SearchSpace) -> dict[str, Any]:
    """Tune param_space for random search, HyperOpt and PBT: one domain per dotted key."""
    return {key: tune_domain(p) for key, p in space.params.items()}


def grid_points(space: SearchSpace) -> list[dict[str, Any]]:
    """Every distinct active combination (inactive conditionals would only duplicate points)."""
    keys = list(space.params)
    options = [[encode_choice(v) for v in space.params[k].values] if space.params[k].kind == "choice"
               else list(range(int(space.params[k].low), int(space.params[k].high) + 1)) for k in keys]
    seen, points = set(), []
    for combo in itertools.product(*options):
        active = active_values(space, dict(zip(keys, combo)))
        point = {k: encode_choice(v) for k, v in active.items()}
        marker = repr(sorted(point.items()))
        if marker not in seen:
            seen.add(marker)
            points.append(point)
    return points


def grid_param_space(space: SearchSpace) -> dict[str, Any]:
    """Tune param_space for grid search: one grid over whole (deduplicated) points."""
    return {GRID_KEY: tune.grid_search(grid_points(space))}


class OptunaDefineByRun:
    """Optuna define-by-run space: a conditional parameter is only suggested while its parent matches."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def __call__(self, trial: Any) -> None:
        chosen: dict[str, Any] = {}
        for key, p in self.space.params.items():
            if any(chosen.get(parent) not in [encode_choice(v) for v in allowed] for parent, allowed in p.when.items()):
                continue
            if p.kind == "choice":
                chosen[key] = trial.suggest_categorical(key, [encode_choice(v) for v in p.values])
            elif p.kind == "int":
                chosen[key] = trial.suggest_int(key, int(p.low), int(p.high))
            else:
                chosen[key] = trial.suggest_float(key, p.low, p.high, log=p.kind == "loguniform")
        return None
