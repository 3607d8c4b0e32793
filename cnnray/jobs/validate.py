"""`cnnray submit` checks a workflow's input here, before anything is submitted: bad input exits 2 locally.

`train` gets the checks `cnnray train` makes before Ray starts (config, data, model, run identity:
`prepare_run`), `tune` those of `cnnray tune` (`resolve_search`, then `prepare_run` on the trials'
base config). Other workflows: the name, and every `key.sub=value` override against the config tree.
Paths the job would read relative to its own (temporary) working directory are pinned to what they
mean here, as `cnnray train` does for its Ray workers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from cnnray.commands import COMMANDS
from cnnray.config import load_config, resolve_config_path
from cnnray.console import make_parser
from cnnray.errors import ConfigError, UserInputError

NOT_SUBMITTABLE = ("submit", "jobs", "cluster")  # they talk to a cluster themselves
_OVERRIDE = re.compile(r"^[a-z_]+(\.[a-z_0-9]+)+=")


@dataclass
class Checked:
    """A validated submission: the workflow's module, its arguments (pins added), files to ship, notes."""

    workflow: str
    module: str
    args: list[str]
    config_files: list[Path] = field(default_factory=list)
    run_name: str | None = None
    notes: list[str] = field(default_factory=list)


def workflow_module(name: str) -> str:
    """The module a workflow name runs; UserInputError naming the valid ones."""
    valid = [c for c in COMMANDS if c not in NOT_SUBMITTABLE]
    if name not in valid:
        raise UserInputError(f"unknown workflow '{name}'; workflows that can be submitted: {', '.join(valid)}")
    return COMMANDS[name]


def _split(args: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(config files, key=value overrides, everything else) of a workflow's arguments."""
    configs, overrides, rest, i = [], [], [], 0
    while i < len(args):
        a = args[i]
        if a == "--config" and i + 1 < len(args):
            configs.append(args[i + 1])
            i += 2
            continue
        if a.startswith("--config="):
            configs.append(a.split("=", 1)[1])
        elif _OVERRIDE.match(a):
            overrides.append(a)
        else:
            rest.append(a)
        i += 1
    return configs, overrides, rest


def _config_paths(configs: list[str]) -> list[Path]:
    paths = []
    for c in configs:
        try:  # a path, or the name of a built-in config such as `tutorial`
            paths.append(resolve_config_path(Path(c).expanduser()).resolve())
        except ConfigError as e:
            raise UserInputError(f"--config {c}: {e}") from None
    return paths


def _local_uri(uri: str) -> str:
    """A tracking URI as `cnnray train` would resolve it here: relative sqlite/file paths made absolute."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    if "://" not in uri:
        return Path(uri).resolve().as_uri()
    return uri


def tracking_uri(configured: str | None, env_uri: str | None) -> str:
    """The MLflow URI a job should use: config, else the submitter's MLFLOW_TRACKING_URI, else ./mlflow.db here."""
    return _local_uri(configured or env_uri or "sqlite:///mlflow.db")


def _pins(cfg, env_uri: str | None) -> tuple[list[str], list[str]]:
    """Overrides that pin relative paths to their meaning here, and notes on paths a remote cluster must reach."""
    pins, notes = [], []
    uri = tracking_uri(cfg.tracking.uri, env_uri)
    pins.append(f"tracking.uri={uri}")
    if uri.startswith(("sqlite:", "file:")):
        notes.append(f"MLflow store {uri} is a local file: the cluster's head must see this path (use an MLflow "
                     "server, tracking.uri=http://..., for a remote cluster)")
    storage = cfg.scaling.storage_path or "ray_results"
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
        notes.append(f"checkpoints go to {storage}: every node must see this path (shared storage)")
    pins.append(f"scaling.storage_path={storage}")
    if cfg.data.path and "://" not in cfg.data.path:
        pins.append(f"data.path={Path(cfg.data.path).expanduser().resolve()}")
    return pins, notes


def _parse(workflow: str, args: list[str]):
    p = make_parser(f"cnnray submit {workflow}", "")
    p.add_argument("--address", default=None)
    if workflow == "tune":
        p.add_argument("--space", default=None)
        p.add_argument("--resume", metavar="NAME", default=None)
    parsed = p.parse_args(args)
    if parsed.address:
        raise UserInputError(f"cnnray submit {workflow}: --address is the job API of the cluster to submit to; "
                             "put it before the workflow's arguments or drop it (the job runs on that cluster)")
    return parsed


def check_train(args: list[str], env_uri: str | None) -> Checked:
    """`cnnray train`'s own checks (config, data, model, run name) before submission."""
    parsed = _parse("train", args)
    cfg = load_config(_config_paths(parsed.config) or None, parsed.overrides)
    pins, notes = _pins(cfg, env_uri)
    cfg = load_config(_config_paths(parsed.config) or None, parsed.overrides + pins)
    # deferred (heavy import): torch, pyarrow, PIL
    from cnnray.run.plan import prepare_run

    prep = prepare_run(cfg)
    # The job uses the name checked here (a timestamp name would otherwise be taken again, seconds later).
    name_pin = [] if cfg.run.name else [f"run.name={prep.run_name}"]
    return Checked("train", "", list(args) + pins + name_pin, _config_paths(parsed.config), prep.run_name, notes)


def check_tune(args: list[str], env_uri: str | None) -> Checked:
    """`cnnray tune`'s own checks (space, settings, data, model) before submission."""
    parsed = _parse("tune", args)
    overrides = list(parsed.overrides)
    if parsed.resume:
        overrides += [f"run.name={parsed.resume}", "tune.resume=true"]
    configs = _config_paths(parsed.config) or None
    cfg = load_config(configs, overrides)
    named = bool(cfg.run.name)
    pins, notes = _pins(cfg, env_uri)
    cfg = load_config(configs, overrides + pins)
    # deferred (heavy import): torch, pyarrow, PIL
    from cnnray.run.plan import prepare_run
    from cnnray.tune.plan import trial_base_config
    from cnnray.tune.tuning import resolve_search

    cfg, _, ident = resolve_search(cfg, parsed.space)
    base = trial_base_config(cfg)
    prepare_run(base.model_copy(update={"run": base.run.model_copy(update={"name": ident.name}),
                                        "scaling": base.scaling.model_copy(update={"storage_path": f"{ident.path}/train"})}))
    name_pin = [] if named else [f"run.name={ident.name}"]
    return Checked("tune", "", list(args) + pins + name_pin, _config_paths(parsed.config), ident.name, notes)


def check_replay(args: list[str], env_uri: str | None) -> Checked:
    """`cnnray replay`'s own checks before submission: the version, its saved config and data, the keys."""
    p = make_parser("cnnray submit replay", "", config=False)
    p.add_argument("model")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--address", default=None)
    p.add_argument("--register", action="store_true")
    p.add_argument("--alpha", type=float, default=0.05)
    parsed = p.parse_args(args)
    if parsed.address:
        raise UserInputError("cnnray submit replay: --address is the job API of the cluster to submit to; drop it "
                             "from the workflow's arguments (the job runs on that cluster)")
    # deferred (heavy import): torch, MLflow (the version and its run are read here, as the job will)
    from cnnray.replay.options import ReplayOptions
    from cnnray.replay.plan import plan_replay

    opts = ReplayOptions(parsed.model, tuple(parsed.overrides), None, parsed.register, parsed.alpha).validate()
    cfg = load_config(overrides=list(parsed.overrides))
    pins, notes = _pins(cfg, env_uri)
    pins = [x for x in pins if not x.startswith("data.path=") or "data.path" in opts.keys]
    opts = ReplayOptions(parsed.model, tuple(parsed.overrides) + tuple(pins), None, parsed.register,
                         parsed.alpha).validate()
    plan = plan_replay(opts)
    name_pin = [] if "run.name" in opts.keys else [f"run.name={plan.prep.run_name}"]
    return Checked("replay", "", list(args) + pins + name_pin, [], plan.prep.run_name, notes)


def check_generic(workflow: str, args: list[str]) -> Checked:
    """Any other workflow: its config files exist and its key=value overrides are valid config keys."""
    configs, overrides, _ = _split(args)
    paths = _config_paths(configs)
    if overrides or paths:
        load_config(paths or None, overrides)
    return Checked(workflow, "", list(args), paths)


def check_submission(workflow: str, args: list[str], env_uri: str | None) -> Checked:
    """Validate a submission locally; UserInputError (exit 2) on anything the workflow itself would refuse."""
    module = workflow_module(workflow)
    if workflow == "train":
        checked = check_train(args, env_uri)
    elif workflow == "tune":
        checked = check_tune(args, env_uri)
    elif workflow == "replay":
        checked = check_replay(args, env_uri)
    else:
        checked = check_generic(workflow, args)
    checked.module = module
    return checked
