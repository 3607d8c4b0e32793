"""The Tuner of a search: a new one from the settings, or the interrupted one restored from storage."""

from __future__ import annotations

from typing import Any

from ray import tune
from ray.tune.logger import JsonLoggerCallback
from ray.tune.search import Searcher

from cnnray.config import TuneConfig
from cnnray.tune.experiment import SearchIdentity
from cnnray.tune.schedulers import build_scheduler
from cnnray.tune.searchers import build_search
from cnnray.tune.space import SearchSpace
from cnnray.tune.trial import TrialSetup, run_trial

# The trial driver only waits on its Train run, whose workers hold the CPUs/GPUs. Tune refuses an
# all-zero request, hence a token of memory.
TRIAL_RESOURCES = {"cpu": 0, "memory": 1 << 20}


def make_trainable(setup: TrialSetup) -> Any:
    """The trial function with its setup (object store) and resources attached."""
    return tune.with_resources(tune.with_parameters(run_trial, setup=setup), TRIAL_RESOURCES)


def _trial_dirname(trial: Any) -> str:
    return trial.trial_id


def checkpoints_to_keep(scheduler: str) -> int | None:
    """Tune checkpoints kept per trial: all for PBT, which clones one some reports after it was saved."""
    return None if scheduler == "pbt" else 2


def build_tuner(t: TuneConfig, space: SearchSpace, ident: SearchIdentity, trainable: Any,
                callbacks: list[Any]) -> tune.Tuner:
    """Tuner.restore for --resume (finished trials stay done, errored ones are retried), else a new Tuner."""
    if ident.resume:
        return tune.Tuner.restore(ident.path, trainable=trainable, resume_errored=True)
    search_alg, params, num_samples = build_search(t, space)
    # Tune's max_concurrent_trials wraps Searchers only; the variant generator got its own limit.
    limit = t.max_concurrent_trials if isinstance(search_alg, Searcher) else None
    return tune.Tuner(
        trainable, param_space=params,
        tune_config=tune.TuneConfig(
            metric=t.metric, mode=t.mode, num_samples=num_samples, search_alg=search_alg,
            scheduler=build_scheduler(t, space), max_concurrent_trials=limit, time_budget_s=t.time_budget_s,
            reuse_actors=False, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=ident.name, storage_path=ident.storage_path, verbose=0,
            # result.json explicitly: outcomes are read from it, and auto loggers may be switched off.
            callbacks=[*callbacks, JsonLoggerCallback()],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=checkpoints_to_keep(t.scheduler)),
            # Worker failures are retried inside the trial by Train's FailureConfig (scaling.max_failures).
            failure_config=tune.FailureConfig(max_failures=0)))
