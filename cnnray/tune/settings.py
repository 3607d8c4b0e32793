"""Check the `tune.*` settings against each other and the space; derive the trials' base config."""

from __future__ import annotations

import importlib.util

from cnnray.config import Config
from cnnray.errors import ConfigError
from cnnray.tune.space import SearchSpace

# What each epoch reports (worker.py) that a search can rank trials by, and its natural direction.
METRICS = {"val_acc": "max", "val_top5": "max", "val_f1_macro": "max", "val_loss": "min", "train_loss": "min"}
MONITORABLE = ("val_acc", "val_loss", "val_f1_macro")  # train.monitor's allowed values

# Knobs PBT may change on a running trial: none of them changes a tensor's shape or the optimizer type,
# so a checkpoint of another trial still loads (worker.py re-applies optimizer hyperparameters).
PBT_MUTABLE = {
    "optim.lr", "optim.weight_decay", "optim.momentum", "train.label_smoothing", "train.ema_decay",
    "train.grad_clip", "model.drop_rate", "model.drop_path_rate", "model.drop_block", "model.drop_block_size",
    "schedule.min_lr", "schedule.gamma", "schedule.factor", "schedule.patience",
}
PBT_MUTABLE_PREFIXES = ("data.augment.",)


def pbt_mutable(key: str) -> bool:
    """Whether PBT may perturb this key mid-training."""
    return key in PBT_MUTABLE or key.startswith(PBT_MUTABLE_PREFIXES)


def check_settings(cfg: Config, space: SearchSpace) -> None:
    """ConfigError for combinations that cannot run, before Ray starts."""
    t = cfg.tune
    if t.metric not in METRICS:
        raise ConfigError(f"invalid value for 'tune.metric': {t.metric!r}; allowed values: {', '.join(METRICS)}")
    if METRICS[t.metric] != t.mode:
        raise ConfigError(f"tune.mode={t.mode} with tune.metric={t.metric}: {t.metric} is best "
                          f"{'high' if METRICS[t.metric] == 'max' else 'low'}; use tune.mode={METRICS[t.metric]}")
    if t.search == "hyperopt" and importlib.util.find_spec("hyperopt") is None:
        raise ConfigError("tune.search=hyperopt needs the hyperopt package, which is not installed: "
                          "pip install hyperopt (or use tune.search=random or optuna)")
    if t.search == "grid":
        continuous = [p.key for p in space.params.values() if p.kind in ("uniform", "loguniform")]
        if continuous:
            raise ConfigError(f"tune.search=grid needs discrete parameters; {continuous[0]} is continuous "
                              f"in space '{space.name}' (use a choice, or tune.search=random)")
    if t.scheduler == "pbt":
        if t.search != "random":
            raise ConfigError(f"tune.scheduler=pbt samples its own population: use tune.search=random, "
                              f"not {t.search}")
        if not any(pbt_mutable(k) for k in space.params):
            raise ConfigError(f"tune.scheduler=pbt needs a parameter it may perturb mid-training; space "
                              f"'{space.name}' has none (mutable: {', '.join(sorted(PBT_MUTABLE))}, data.augment.*)")
    if t.grace_period > t.max_epochs:
        raise ConfigError(f"tune.grace_period={t.grace_period} exceeds tune.max_epochs={t.max_epochs}")


def trial_base_config(cfg: Config) -> Config:
    """The config every trial starts from: the search's budget, workers and resources applied."""
    t = cfg.tune
    tree = cfg.model_dump(mode="json")
    tree["train"].update(epochs=t.max_epochs, resume=False, checkpoint_every=1)
    if t.metric in MONITORABLE:
        tree["train"]["monitor"] = t.metric  # best checkpoint of a trial by the metric the search ranks by
    tree["scaling"].update(num_workers=t.trial_workers, cpus_per_worker=t.trial_cpus,
                           use_gpu=t.trial_gpus > 0)
    if t.trial_gpus > 0:
        tree["scaling"]["gpus_per_worker"] = t.trial_gpus  # fractions share a GPU between trials
    return Config.model_validate(tree)
