"""`tune.scheduler` -> a Tune trial scheduler measured in epochs (`epochs_done`, stable across restarts)."""

from __future__ import annotations

from typing import Any

from cnnray.config import TuneConfig
from cnnray.tune.domains import tune_domain
from cnnray.tune.settings import pbt_mutable
from cnnray.tune.space import SearchSpace

TIME_ATTR = "epochs_done"  # reported by the trial function; restored trials continue the count


def build_scheduler(t: TuneConfig, space: SearchSpace) -> Any:
    """ASHA (default), HyperBand, median stopping, PBT or FIFO, with the search's budget."""
    from ray.tune import schedulers as s

    if t.scheduler == "asha":
        return s.ASHAScheduler(time_attr=TIME_ATTR, max_t=t.max_epochs, grace_period=t.grace_period,
                               reduction_factor=t.reduction_factor)
    if t.scheduler == "hyperband":
        return s.HyperBandScheduler(time_attr=TIME_ATTR, max_t=t.max_epochs, reduction_factor=t.reduction_factor)
    if t.scheduler == "median":
        return s.MedianStoppingRule(time_attr=TIME_ATTR, grace_period=t.grace_period, min_samples_required=2)
    if t.scheduler == "pbt":
        mutations = {k: tune_domain(p) for k, p in space.params.items() if pbt_mutable(k)}
        # Small populations: ceil(n * 0.25) puts one trial in each quantile from n = 2 on.
        return s.PopulationBasedTraining(time_attr=TIME_ATTR, perturbation_interval=t.perturbation_interval,
                                         hyperparam_mutations=mutations, quantile_fraction=0.25, log_config=False)
    return s.FIFOScheduler()
