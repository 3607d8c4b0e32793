"""What a replay will train, checked before any work: the version, its run's saved config (made to validate
with today's schema, or refused naming the keys), the data (fingerprint), the first weights (sha256) and what
differs from the original's environment (printed and recorded, never refused)."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cnnray.config import Config, load_config
from cnnray.config.loader import parse_value
from cnnray.errors import ConfigError, UserInputError
from cnnray.replay.differences import Difference, environment_differences
from cnnray.replay.options import ReplayOptions
from cnnray.run.plan import PreparedRun, prepare_run
from cnnray.tracking.model_store import ResolvedVersion, resolve
from cnnray.tracking.replay_record import REPLAY_OF_TAG, TrainingRecord, read_training_record, versions_of_run

COMPRESS_TAG = "cnnray.compress.method"


@dataclass
class ReplayPlan:
    """A replay ready to train: `prep` is what `cnnray train` would run, with the replay's lineage tags."""

    version: ResolvedVersion
    record: TrainingRecord
    kind: str  # "training run", "Tune trial" or "fine-tune"
    prep: PreparedRun
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def resolve_version(opts: ReplayOptions) -> ResolvedVersion:
    """The registered version the URI names (a runs:/ URI only through the version registered from it)."""
    ref = opts.ref
    if ref.run_id is None:
        return resolve(ref, opts.tracking_uri)
    found = versions_of_run(opts.tracking_uri, ref.run_id)
    if not found:
        raise UserInputError(f"{opts.model}: run {ref.run_id} has no registered version; a replay judges a "
                             "registered version against its own lineage: pass models:/NAME/VERSION")
    return found[0]


def _replay_name(version: ResolvedVersion) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", f"replay-{version.name}-v{version.version}").strip("-.")
    return f"{base[:100]}-{datetime.now():%Y%m%d-%H%M%S}"


def _saved_config(version: ResolvedVersion, record: TrainingRecord, overrides: dict[str, str]) -> Config:
    """The run's config.yaml under the replay's overrides; refused, with the keys, when it no longer validates."""
    with tempfile.TemporaryDirectory(prefix="cnnray-replay-") as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(record.config_yaml)
        try:
            return load_config(path, {k: parse_value(v) for k, v in overrides.items()})
        except ConfigError as e:
            made_by = version.tags.get("cnnray.version.cnnray", "an unknown cnnray")
            from cnnray.tracking.lineage import package_versions

            raise ConfigError(f"{version.label} was trained by cnnray {made_by}; its saved config does not validate "
                              f"with cnnray {package_versions()['cnnray']} (keys that changed): {e}") from None


def _refuse_unreplayable(version: ResolvedVersion, record: TrainingRecord) -> None:
    """Histories a config cannot rebuild."""
    if any(a.startswith("configs/from_") for a in record.artifacts):
        raise UserInputError(f"{version.label}: its trial was restarted by PBT from another trial's checkpoint with a "
                             "perturbed config; one config cannot rebuild that history")
    if "cnnray.resumed_after_finish" in record.run_tags:
        raise UserInputError(f"{version.label}: its run FINISHED and was then resumed with more epochs "
                             f"({record.run_tags['cnnray.resumed_after_finish']}); a single run cannot rebuild two "
                             "schedules")
    if record.status == "RUNNING":
        raise UserInputError(f"{version.label}: its run {record.run_id} is still RUNNING; replay it once it ended")


def _forced(version: ResolvedVersion, record: TrainingRecord, cfg_keys: dict[str, str], register: bool) -> dict[str, str]:
    """What every replay sets: a fresh run from the start, registered only with --register, never promoted."""
    keys = {"train.resume": "false", "train.resume_from": "null", "run.name": _replay_name(version),
            "registry.enabled": str(register).lower(), "registry.promote": "false", "registry.alias": "null",
            "tracking.enabled": "true", "scaling.storage_path": "null", "registry.name": str(version.name)}
    parent = version.tags.get("cnnray.parent_version")
    if parent and version.tags.get("cnnray.init_from", "").startswith("models:/"):
        keys["model.init_from"] = f"models:/{parent}"  # the alias may have moved since: the version it was
    if record.run_tags.get("stopped_early") == "true" and "cnnray.trial_id" in record.run_tags:
        keys["train.stop_after_epochs"] = str(len(record.curves.get("train_loss", [])) or 1)
    return {**keys, **cfg_keys}


def _check_data(version: ResolvedVersion, prep: PreparedRun) -> None:
    """Exit 2 when the data is not the data the version was trained on."""
    want, have = version.tags.get("cnnray.data_fingerprint"), prep.info.fingerprint
    d = prep.cfg.data
    where = f"data.source={d.source}" + (f" data.path={d.path}" if d.path else "")
    if want and want != have:
        raise UserInputError(f"the data changed since {version.label} was trained: {where} has fingerprint {have}, "
                             f"the version recorded {want}; replay on the original data (data.path=... where it "
                             "lives now)")
    want_test = version.tags.get("cnnray.test_fingerprint")
    have_test = getattr(prep.info, "test_fingerprint", "")
    if want_test and have_test and want_test != have_test:
        raise UserInputError(f"the test split of {where} changed since {version.label} was trained: fingerprint "
                             f"{have_test}, the version recorded {want_test}")


def _check_init(version: ResolvedVersion, prep: PreparedRun) -> None:
    want = version.tags.get("cnnray.init_sha256")
    src = prep.init_source
    if want and src is not None and src.sha256 != want:
        raise UserInputError(f"model.init_from={prep.cfg.model.init_from}: the first weights changed since "
                             f"{version.label} was trained (sha256 {src.sha256[:16]}, recorded {want[:16]})")


def plan_replay(opts: ReplayOptions) -> ReplayPlan:
    """Everything a replay checks before it trains (UserInputError/ConfigError: exit 2)."""
    version = resolve_version(opts)
    if COMPRESS_TAG in version.tags:
        raise UserInputError(f"{version.label} is a compressed version: `cnnray replay` replays its source, then the "
                             "same compression (cnnray.replay.compressed)")
    record = read_training_record(version, opts.tracking_uri)
    _refuse_unreplayable(version, record)
    keys = dict(opts.keys)
    if "scaling.num_workers" not in keys and record.world_size:
        keys["scaling.num_workers"] = str(record.world_size)  # what the original trained with (elastic: its last)
    if "tracking.uri" not in keys:
        keys["tracking.uri"] = opts.tracking_uri
    cfg = _saved_config(version, record, _forced(version, record, keys, opts.register))
    if cfg.train.compile and cfg.train.deterministic:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"compile": False})})
    prep = prepare_run(cfg)
    _check_data(version, prep)
    _check_init(version, prep)
    kind = "Tune trial" if "cnnray.trial_id" in record.run_tags else (
        "fine-tune" if version.tags.get("cnnray.init_from") else "training run")
    diffs = environment_differences(version, record, prep, opts)
    prep.lineage_tags = {REPLAY_OF_TAG: version.label,
                         **{f"cnnray.replay_diff.{d.key}": f"{d.original} -> {d.replay}"[:5000] for d in diffs}}
    notes = []
    if not cfg.train.deterministic:
        notes.append("the original ran with train.deterministic=false: its kernels were allowed to be "
                     "nondeterministic, so bitwise identity is not promised (on CPU it usually holds anyway)")
    if "cnnray.resumed_from" in record.run_tags:
        notes.append(f"the original was resumed ({record.run_tags['cnnray.resumed_from']}): its random streams "
                     "restarted there unless it ran with train.deterministic=true")
    return ReplayPlan(version, record, kind, prep, diffs, notes)
