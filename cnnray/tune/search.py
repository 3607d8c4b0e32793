"""The search on Ray Tune: a SearchSpace as Tune domains, the searcher and the trial scheduler that
`tune.search` / `tune.scheduler` name, and the Tuner (new, or the interrupted one restored from storage)."""

from __future__ import annotations

import itertools
from typing import Any

from ray import tune
from ray.tune import PlacementGroupFactory
from ray.tune import TuneConfig as RayTuneConfig
from ray.tune import schedulers as s
from ray.tune.logger import JsonLoggerCallback
from ray.tune.search import Searcher
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.hyperopt import HyperOptSearch
from ray.tune.search.optuna import OptunaSearch
from ray.tune.stopper import CombinedStopper

from cnnray.config import TuneSection
from cnnray.tune.budget import BudgetStopper, BudgetWatch
from cnnray.tune.disk_full import DiskFullStopper
from cnnray.tune.retention import CheckpointRetention
from cnnray.tune.plan import PBT_QUANTILE, SearchIdentity, pbt_mutable
from cnnray.tune.space import GRID_KEY, Param, SearchSpace, active_values, encode_choice
from cnnray.tune.trial import TrialSetup, run_trial, run_trial_in_actor


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


# --- `tune.search` -> (Tune searcher, param_space, num_samples): random, grid, optuna, hyperopt.


def build_search(t: TuneSection, space: SearchSpace) -> tuple[Any, dict[str, Any], int]:
    """The searcher (None: Tune's variant generator), the Tuner's param_space and its num_samples."""
    if t.search == "grid":
        # Each distinct point once: num_samples would repeat the whole grid.
        return (BasicVariantGenerator(random_state=t.seed, max_concurrent=t.max_concurrent_trials),
                grid_param_space(space), 1)
    if t.search == "optuna":
        return OptunaSearch(space=OptunaDefineByRun(space), metric=t.metric, mode=t.mode, seed=t.seed), {}, t.num_samples
    if t.search == "hyperopt":
        return (HyperOptSearch(metric=t.metric, mode=t.mode, random_state_seed=t.seed), param_space(space),
                t.num_samples)

    # Tune's max_concurrent_trials only limits Searchers; the variant generator takes its own limit.
    return (BasicVariantGenerator(random_state=t.seed, max_concurrent=t.max_concurrent_trials),
            param_space(space), t.num_samples)


# --- `tune.scheduler` -> a Tune trial scheduler measured in epochs (`epochs_done`, stable across restarts).

TIME_ATTR = "epochs_done"  # reported by the trial function; restored trials continue the count


def build_trial_scheduler(t: TuneSection, space: SearchSpace) -> Any:
    """ASHA (default), HyperBand, median stopping, PBT or FIFO, with the search's budget."""
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
                                         hyperparam_mutations=mutations, quantile_fraction=PBT_QUANTILE, log_config=False)
    return s.FIFOScheduler()


# --- The Tuner.

# A Train-run trial's actor only waits on its Train run, whose workers hold the CPUs/GPUs. Tune refuses an
# all-zero request, hence a token of memory.
TRIAL_RESOURCES = {"cpu": 0, "memory": 1 << 20}


def make_trainable(setup: TrialSetup) -> Any:
    """The trial function with its setup (object store) and resources attached."""
    if setup.runner == "actor":  # the actor trains: it holds rank 0's CPUs/GPUs, its rank actors the others'
        scaling = setup.prep.cfg.scaling
        bundle = {"CPU": scaling.cpus_per_worker, **({"GPU": scaling.gpus_per_worker} if scaling.use_gpu else {})}
        resources = PlacementGroupFactory([bundle] * int(scaling.num_workers), strategy="PACK")
        return tune.with_resources(tune.with_parameters(run_trial_in_actor, setup=setup), resources)
    return tune.with_resources(tune.with_parameters(run_trial, setup=setup), TRIAL_RESOURCES)


def _trial_dirname(trial: Any) -> str:
    return trial.trial_id


def build_tuner(t: TuneSection, space: SearchSpace, ident: SearchIdentity, trainable: Any,
                callbacks: list[Any], *, runner: str = "train", max_failures: int = 0,
                budget_key: str | None = None, on_line: Any = print) -> tune.Tuner:
    """Tuner.restore for --resume (finished trials stay done, errored ones are retried), else a new Tuner.
    `budget_key`: the registered tune.budget_device_hours state its stopper and watch callback consult."""
    if ident.resume:
        return tune.Tuner.restore(ident.path, trainable=trainable, resume_errored=True)
    search_alg, params, num_samples = build_search(t, space)
    # Tune's max_concurrent_trials wraps Searchers only; the variant generator got its own limit.
    limit = t.max_concurrent_trials if isinstance(search_alg, Searcher) else None
    stop = CombinedStopper(DiskFullStopper(ident.name), *([BudgetStopper(budget_key)] if budget_key else []))
    if budget_key:
        callbacks = [*callbacks, BudgetWatch(budget_key)]
    # Retention deletes checkpoints, not Tune (num_to_keep=None): see cnnray/tune/retention.py.
    callbacks = [*callbacks, CheckpointRetention(t.keep_checkpoints_top_k, t.metric, t.mode, ident.path, on_line,
                                                 history=t.scheduler == "pbt")]
    return tune.Tuner(
        trainable, param_space=params,
        tune_config=RayTuneConfig(
            metric=t.metric, mode=t.mode, num_samples=num_samples, search_alg=search_alg,
            scheduler=build_trial_scheduler(t, space), max_concurrent_trials=limit, time_budget_s=t.time_budget_s,
            # Actor trials reuse their actor (and its data set in memory); a Train-run trial's actor must end
            # with its trial, whose cleanup aborts the Train run.
            reuse_actors=runner == "actor", trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=ident.name, storage_path=ident.storage_path, verbose=0, stop=stop,
            # result.json explicitly: outcomes are read from it, and auto loggers may be switched off.
            callbacks=[*callbacks, JsonLoggerCallback()],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            # Train-run trials retry worker failures inside the trial (Train's FailureConfig); an actor trial
            # has no Train run, so Tune restarts it from its last checkpoint (scaling.max_failures times).
            failure_config=tune.FailureConfig(max_failures=max_failures if runner == "actor" else 0)))


