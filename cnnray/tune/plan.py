"""A search before Ray starts: the `tune.*` settings checked, the trials' base config, and the search's
identity on storage (its directory, whether it exists, the config + space saved for --resume)."""

from __future__ import annotations

import importlib.util
import json
import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import yaml

from cnnray.config import Config
from cnnray.data.uri import open_location, path_exists
from cnnray.errors import ConfigError
from cnnray.run.claim import refuse_if_in_use
from cnnray.run.plan import storage_root
from cnnray.tune.space import SearchSpace, parse_space

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
PBT_QUANTILE = 0.25  # PBT's quantile_fraction (search.build_trial_scheduler): the top quarter is cloned


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
        quantile = math.ceil(t.num_samples * PBT_QUANTILE)
        if t.keep_checkpoints_top_k < quantile:
            raise ConfigError(f"tune.keep_checkpoints_top_k={t.keep_checkpoints_top_k} is smaller than PBT's upper "
                              f"quantile of tune.num_samples={t.num_samples} trials ({quantile} = ceil({t.num_samples} x "
                              f"{PBT_QUANTILE})): set tune.keep_checkpoints_top_k >= {quantile}")
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


# --- The search's identity on storage.

STATE_FILE = "cnnray_search.json"  # next to Tune's own experiment state


@dataclass
class SearchIdentity:
    """Name, storage root and experiment directory of a search."""

    name: str
    storage_path: str
    path: str
    resume: bool


def search_identity(cfg: Config) -> SearchIdentity:
    """Refuse a new search under an existing name, or a resume of a search that is not there."""
    resume = cfg.tune.resume
    if resume and not cfg.run.name:
        raise ConfigError("tune.resume=true needs run.name (or use --resume NAME)")
    name = cfg.run.name or datetime.now().strftime("tune-%Y%m%d-%H%M%S")
    if "/" in name:
        raise ConfigError(f"run.name '{name}' may not contain '/'")
    storage = storage_root(cfg)
    path = f"{storage.rstrip('/')}/{name}"
    exists = path_exists(path, key="scaling.storage_path")
    if exists:
        refuse_if_in_use(path, what="search")
    if exists and not resume:
        raise ConfigError(f"a search named '{name}' already exists at {path}; continue it with "
                          f"`cnnray tune --resume {name}`, or choose another run.name")
    if resume and not exists:
        raise ConfigError(f"--resume {name}: no search named '{name}' at {path}")
    return SearchIdentity(name, storage, path, resume)


TRIALS_FILE = "cnnray_trials.json"  # {trial_id: Tune's final status}: what searches before the append-only log wrote
TRIAL_ENDS_FILE = "cnnray_trial_ends.jsonl"  # one {"trial_id", "status"} line per trial end, appended


def _write_atomically(ident: SearchIdentity, name: str, blob: str) -> None:
    fs, fs_path = open_location(ident.path, key="scaling.storage_path")
    fs.create_dir(fs_path, recursive=True)
    # Written aside and moved into place: a search killed mid-write leaves the old file or none, never half.
    tmp = f"{fs_path}/.{name}.{uuid.uuid4().hex}.tmp"
    with fs.open_output_stream(tmp) as f:
        f.write(blob.encode())
    fs.move(tmp, f"{fs_path}/{name}")


def save_search_state(ident: SearchIdentity, cfg: Config, space: SearchSpace) -> None:
    """Write the resolved config and the space, so `--resume NAME` needs nothing else."""
    text = Path(space.source).read_text() if space.source and Path(space.source).is_file() else ""
    _write_atomically(ident, STATE_FILE, json.dumps({"config": cfg.model_dump(mode="json"),
                                                     "space_name": space.name, "space_yaml": text}))


def append_lines(ident: SearchIdentity, name: str, lines: list[str], header: str | None = None) -> None:
    """Append lines to a file under the search (created with `header` first): a trial's end costs one short
    write, not a rewrite of everything before it. A store without appends (object stores) gets the file
    rewritten whole."""
    fs, fs_path = open_location(ident.path, key="scaling.storage_path")
    path = f"{fs_path}/{name}"
    new = fs.get_file_info(path).type == pafs.FileType.NotFound
    if new:
        fs.create_dir(fs_path, recursive=True)
    blob = ((header + "\n") if new and header else "") + "".join(line + "\n" for line in lines)
    try:
        with fs.open_append_stream(path) as f:
            f.write(blob.encode())
    except NotImplementedError:  # pyarrow's ArrowNotImplementedError is one
        old = "" if new else _read_text(fs, path)
        _write_atomically(ident, name, old + blob)


def _read_text(fs: Any, path: str) -> str:
    with fs.open_input_stream(path) as f:
        return f.read().decode()


def save_trial_status(ident: SearchIdentity, trial_id: str, status: str) -> None:
    """Record how a trial ended (TERMINATED / ERROR), so a resumed search still knows: one appended line."""
    append_lines(ident, TRIAL_ENDS_FILE, [json.dumps({"trial_id": trial_id, "status": status})])


def load_trial_statuses(ident: SearchIdentity) -> dict[str, str]:
    """What save_trial_status appended (the last line of a trial wins), over an older search's JSON file; {} for
    a new search. An unreadable file or line (a search killed mid-write) counts as none."""
    fs, fs_path = open_location(ident.path, key="scaling.storage_path")
    out: dict[str, str] = {}
    try:
        data = json.loads(_read_text(fs, f"{fs_path}/{TRIALS_FILE}"))
        if isinstance(data, dict):
            out.update({str(k): str(v) for k, v in data.items()})
    except (FileNotFoundError, OSError, ValueError):
        pass
    try:
        text = _read_text(fs, f"{fs_path}/{TRIAL_ENDS_FILE}")
    except (FileNotFoundError, OSError):
        return out
    for line in text.splitlines():
        try:
            entry = json.loads(line)
            out[str(entry["trial_id"])] = str(entry["status"])
        except (ValueError, KeyError, TypeError):
            continue
    return out


BUDGET_FILE = "cnnray_budget_spent.json"  # written when tune.budget_device_hours is spent: trials starting later return
RESULT_FILE = "result.json"  # Tune's per-trial reports, one JSON object a line (JsonLoggerCallback)


def budget_marker(ident: SearchIdentity) -> str:
    """Path or URI of the search's budget marker (what a trial checks before it starts training)."""
    return f"{ident.path.rstrip('/')}/{BUDGET_FILE}"


def save_budget_marker(ident: SearchIdentity, info: dict[str, Any]) -> None:
    """Say, under the search, that its device budget is spent (trials started from now on do not train)."""
    _write_atomically(ident, BUDGET_FILE, json.dumps(info, sort_keys=True))


def load_trial_reports(ident: SearchIdentity) -> list[tuple[str, dict[str, Any]]]:
    """(trial id, report) of every epoch the search's trials reported so far, from Tune's result.json files
    (a resumed search's spending); unreadable lines and files count as none."""
    fs, fs_path = open_location(ident.path, key="scaling.storage_path")
    try:
        entries = fs.get_file_info(pafs.FileSelector(fs_path, allow_not_found=True))
    except OSError:
        return []
    out: list[tuple[str, dict[str, Any]]] = []
    for entry in entries:
        if entry.type != pafs.FileType.Directory:
            continue
        try:
            with fs.open_input_stream(f"{entry.path}/{RESULT_FILE}") as f:
                text = f.read().decode()
        except (FileNotFoundError, OSError):
            continue
        for line in text.splitlines():
            try:
                report = json.loads(line)
            except ValueError:
                continue
            if isinstance(report, dict):
                out.append((entry.base_name, report))
    return out


def load_search_state(ident: SearchIdentity) -> tuple[dict[str, Any], SearchSpace]:
    """The config tree and space saved by `save_search_state`."""
    fs, fs_path = open_location(ident.path, key="scaling.storage_path")
    try:
        with fs.open_input_stream(f"{fs_path}/{STATE_FILE}") as f:
            raw = f.read()
    except (FileNotFoundError, OSError):
        raise ConfigError(f"--resume {ident.name}: {ident.path} is not a cnnray search (no {STATE_FILE})") from None
    try:
        state = json.loads(raw.decode())
        tree, space_name, space_yaml = state["config"], state["space_name"], state["space_yaml"]
        if not isinstance(tree, dict):
            raise TypeError("config is not a mapping")
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"--resume {ident.name}: {ident.path}/{STATE_FILE} is corrupt ({type(e).__name__}: "
                          f"{str(e)[:120]}); the search cannot be resumed, start a new one") from None
    space = parse_space(yaml.safe_load(space_yaml), space_name, source=f"{ident.path}/{STATE_FILE}")
    return tree, space




def check_trial_fits(cfg: Config, total: dict[str, float]) -> None:
    """Refuse a trial larger than the whole cluster: Tune would wait for its resources forever."""
    t = cfg.tune
    need = {"CPU": t.trial_workers * t.trial_cpus, "GPU": t.trial_workers * t.trial_gpus}
    for kind, amount in need.items():
        if amount > total.get(kind, 0.0):
            raise ConfigError(f"one trial needs {amount:g} {kind}s (tune.trial_workers={t.trial_workers} x "
                              f"tune.trial_{kind.lower()}s={getattr(t, f'trial_{kind.lower()}s'):g}) but the Ray "
                              f"cluster has {total.get(kind, 0.0):g}: lower them, or use a larger cluster (--address)")


def trial_runner(cfg: Config, loader_kind: str) -> str:
    """Where trials train: "actor" (in-memory data: the loop in the trial's actor, with rank actors for DDP) or
    "train" (a Ray Train run per trial)."""
    t = cfg.tune
    if t.trial_runner == "actor" and loader_kind != "memory":
        raise ConfigError(f"tune.trial_runner=actor needs in-memory data; data.loader resolved to {loader_kind} "
                          f"(use tune.trial_runner=train or auto, or data.loader=memory)")
    if t.trial_runner == "auto":
        return "actor" if loader_kind == "memory" else "train"
    return t.trial_runner
