"""`tune.search` -> (Tune searcher, param_space, num_samples): random, grid, optuna, hyperopt."""

from __future__ import annotations

from typing import Any

from cnnray.config import TuneConfig
from cnnray.tune.domains import OptunaDefineByRun, grid_param_space, param_space
from cnnray.tune.space import SearchSpace


def build_search(t: TuneConfig, space: SearchSpace) -> tuple[Any, dict[str, Any], int]:
    """The searcher (None: Tune's variant generator), the Tuner's param_space and its num_samples."""
    if t.search == "grid":
        from ray.tune.search.basic_variant import BasicVariantGenerator

        # Each distinct point once: num_samples would repeat the whole grid.
        return (BasicVariantGenerator(random_state=t.seed, max_concurrent=t.max_concurrent_trials),
                grid_param_space(space), 1)
    if t.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(space=OptunaDefineByRun(space), metric=t.metric, mode=t.mode, seed=t.seed), {}, t.num_samples
    if t.search == "hyperopt":
        from ray.tune.search.hyperopt import HyperOptSearch

        return (HyperOptSearch(metric=t.metric, mode=t.mode, random_state_seed=t.seed), param_space(space),
                t.num_samples)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    # Tune's max_concurrent_trials only limits Searchers; the variant generator takes its own limit.
    return (BasicVariantGenerator(random_state=t.seed, max_concurrent=t.max_concurrent_trials),
            param_space(space), t.num_samples)

