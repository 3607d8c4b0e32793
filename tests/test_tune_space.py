"""Search spaces, their validation against the config, trial configs and search settings (no Ray cluster)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from cnnray.config import Config, load_config
from cnnray.errors import ConfigError
from cnnray.tune.plan import check_settings, trial_base_config
from cnnray.tune.space import (active_values, check_space, encode_choice, load_space, parse_space, space_names,
                               trial_config)


def _space(params: dict, fixed: dict | None = None, name: str = "t"):
    space = parse_space({"params": params, **({"fixed": fixed} if fixed else {})}, name)
    check_space(space, Config())
    return space


def test_builtin_spaces_load_and_type_check():
    assert {"schedules", "regularization", "architecture", "default"} <= set(space_names())
    for name in space_names():
        space = load_space(name)
        check_space(space, Config())
        assert space.description
    sched = load_space("schedules")
    # Each schedule's own parameters hang off schedule.name.
    assert sched.params["schedule.pct_start"].when == {"schedule.name": ("onecycle",)}
    assert set(sched.params["schedule.gamma"].when["schedule.name"]) == {"step", "multistep"}
    assert sched.fixed == {"optim.nesterov": True}


@pytest.mark.parametrize("params, needle", [
    ({"optim.lrr": {"type": "uniform", "low": 0.1, "high": 0.2}}, "unknown config key 'optim.lrr'"),
    ({"optim.lr": {"type": "choice", "values": []}}, "optim.lr: a choice needs a non-empty list"),
    ({"optim.lr": []}, "optim.lr: a choice needs a non-empty list"),
    ({"optim.lr": {"type": "loguniform", "low": 0, "high": 0.1}}, "optim.lr: loguniform bounds must be > 0"),
    ({"optim.lr": {"type": "uniform", "low": 0.2, "high": 0.1}}, "optim.lr: low must be < high"),
    ({"optim.lr": {"type": "normal", "low": 0.1, "high": 0.2}}, "unknown type 'normal'"),
    ({"schedule.pct_start": {"type": "uniform", "low": 0.1, "high": 0.4, "when": {"schedule.name": "onecycle"}}},
     "schedule.pct_start: conditional on 'schedule.name', which is not a parameter"),
    ({"schedule.name": ["cosine"], "schedule.gamma": {"type": "uniform", "low": 0.1, "high": 0.5,
                                                       "when": {"schedule.name": "step"}}},
     "'when' value(s) ['step'] are not choices of 'schedule.name'"),
    ({"optim.lr": {"type": "uniform", "low": 0.1, "high": 0.2},
      "optim.momentum": {"type": "uniform", "low": 0.8, "high": 0.9, "when": {"optim.lr": 0.1}}},
     "parent 'optim.lr' must be a choice"),
    ({"train.precision": ["bf16", "fp8"]}, "train.precision: value 'fp8' is invalid"),
    ({"optim.lr": {"type": "uniform", "low": -1.0, "high": 0.1}}, "optim.lr: value -1.0 is invalid"),
    ({"schedule.patience": {"type": "uniform", "low": 1, "high": 4}}, "schedule.patience: value 2.5 is invalid"),
    ({"tune.num_samples": [1, 2]}, "the 'tune' section cannot be searched"),
    ({"train.epochs": [1, 2]}, "train.epochs: set by tune.max_epochs"),
    ({"model": ["a"]}, "'model' is a config section, not a value"),
])
def test_bad_space_refused_naming_the_key(params, needle):
    with pytest.raises(ConfigError) as e:
        _space(params)
    assert needle in str(e.value)


def test_conditional_cycle_and_fixed_clash_refused():
    with pytest.raises(ConfigError, match="cycle"):
        parse_space({"params": {"optim.name": {"values": ["adamw", "sgd"], "when": {"schedule.name": "step"}},
                                "schedule.name": {"values": ["cosine", "step"], "when": {"optim.name": "sgd"}}}}, "c")
    with pytest.raises(ConfigError, match="optim.lr is both fixed and searched"):
        parse_space({"params": {"optim.lr": [0.1]}, "fixed": {"optim.lr": 0.2}}, "c")
    with pytest.raises(ConfigError, match="fixed optim.name='rmsprop' is invalid"):
        _space({"optim.lr": [0.1]}, fixed={"optim.name": "rmsprop"})


def test_yaml_numbers_without_a_dot_are_numbers(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("params:\n  optim.lr: {type: loguniform, low: 1e-4, high: 1e-2}\n")
    assert yaml.safe_load(f.read_text())["params"]["optim.lr"]["low"] == "1e-4"  # what PyYAML does
    p = load_space(str(f)).params["optim.lr"]
    assert (p.low, p.high) == (1e-4, 1e-2)
    with pytest.raises(ConfigError, match="unknown search space 'nope'.*built-in search spaces: architecture"):
        load_space("nope")
    with pytest.raises(ConfigError, match="search space file not found"):
        load_space(str(tmp_path / "missing.yaml"))


def test_active_values_drop_inactive_conditionals_and_clamp():
    space = _space({
        "schedule.name": ["cosine", "multistep", "onecycle"],
        "schedule.warmup_epochs": {"type": "uniform", "low": 0.0, "high": 2.0, "when": {"schedule.name": "cosine"}},
        "schedule.milestones": {"values": [[0.5, 0.75], [0.3, 0.6, 0.9]], "when": {"schedule.name": "multistep"}},
        "schedule.step_epochs": {"type": "int", "low": 1, "high": 4, "when": {"schedule.name": "multistep"}},
        "optim.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
    }, fixed={"optim.nesterov": False})
    sampled = {"schedule.name": "multistep", "schedule.warmup_epochs": 1.5,
               "schedule.milestones": encode_choice([0.3, 0.6, 0.9]), "schedule.step_epochs": 7, "optim.lr": 0.5}
    active = active_values(space, sampled)
    assert "schedule.warmup_epochs" not in active  # cosine-only
    assert active["schedule.milestones"] == [0.3, 0.6, 0.9]  # decoded from the search library's string
    assert active["schedule.step_epochs"] == 4 and active["optim.lr"] == 1e-2  # clamped (PBT can overshoot)
    cfg = trial_config(Config(), space, sampled)
    assert cfg.schedule.name == "multistep" and cfg.schedule.milestones == [0.3, 0.6, 0.9]
    assert cfg.schedule.warmup_epochs == Config().schedule.warmup_epochs
    assert cfg.optim.nesterov is False and cfg.optim.lr == 1e-2


def test_grid_points_are_deduplicated_over_inactive_conditionals():
    from cnnray.tune.search import grid_points

    space = _space({"schedule.name": ["cosine", "step"],
                    "schedule.warmup_epochs": {"values": [0.0, 1.0], "when": {"schedule.name": "cosine"}},
                    "model.attn": ["none", "cbam"]})
    points = grid_points(space)
    assert len(points) == 6  # (cosine x 2 warmups + step) x 2 attentions, not 2 x 2 x 2
    assert {"schedule.name": "step", "model.attn": "none"} in points


def test_optuna_define_by_run_suggests_conditionals_only_under_their_parent():
    import optuna

    from cnnray.tune.search import OptunaDefineByRun

    space = load_space("schedules")
    fn = OptunaDefineByRun(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        fn(trial)
        name = trial.params["schedule.name"]
        seen.add(name)
        assert ("schedule.pct_start" in trial.params) == (name == "onecycle")
        assert ("schedule.milestones" in trial.params) == (name == "multistep")
        assert ("optim.momentum" in trial.params) == (trial.params["optim.name"] == "sgd")
        study.tell(trial, 0.5)
    assert len(seen) >= 4


@pytest.mark.parametrize("overrides, needle", [
    (["tune.search=hyperopt"], "pip install hyperopt"),
    (["tune.search=grid"], "tune.search=grid needs discrete parameters; optim.lr is continuous"),
    (["tune.scheduler=pbt", "tune.search=optuna"], "use tune.search=random"),
    (["tune.metric=val_loss"], "use tune.mode=min"),
    (["tune.metric=accuracy"], "allowed values: val_acc"),
    (["tune.grace_period=5", "tune.max_epochs=3"], "exceeds tune.max_epochs"),
])
def test_bad_search_settings_refused(overrides, needle):
    import importlib.util

    if overrides == ["tune.search=hyperopt"] and importlib.util.find_spec("hyperopt") is not None:
        pytest.skip("hyperopt is installed: the missing-package error cannot be shown")
    with pytest.raises(ConfigError) as e:
        check_settings(load_config(overrides=overrides), load_space("default"))
    assert needle in str(e.value)


def test_pbt_needs_a_mutable_parameter():
    with pytest.raises(ConfigError, match="needs a parameter it may perturb"):
        check_settings(load_config(overrides=["tune.scheduler=pbt"]), load_space("architecture"))
    check_settings(load_config(overrides=["tune.scheduler=pbt"]), load_space("regularization"))


def test_trial_base_config_applies_the_search_budget_and_resources():
    cfg = trial_base_config(load_config(overrides=["tune.max_epochs=3", "tune.trial_workers=2",
                                                   "tune.trial_gpus=0.25", "tune.metric=val_f1_macro"]))
    assert cfg.train.epochs == 3 and cfg.scaling.num_workers == 2 and cfg.train.checkpoint_every == 1
    assert cfg.scaling.use_gpu is True and cfg.scaling.gpus_per_worker == 0.25
    assert cfg.train.monitor == "val_f1_macro"


def test_trials_train_in_their_actor_when_they_can():
    from cnnray.tune.plan import trial_runner

    assert trial_runner(load_config(), "memory") == "actor"  # one worker, data in memory: no Train run
    assert trial_runner(load_config(overrides=["tune.trial_workers=2"]), "memory") == "actor"  # + its rank actors
    assert trial_runner(load_config(), "streaming") == "train"
    assert trial_runner(load_config(overrides=["tune.trial_runner=train"]), "memory") == "train"
    with pytest.raises(ConfigError, match="tune.trial_runner=actor needs in-memory data; data.loader resolved to streaming"):
        trial_runner(load_config(overrides=["tune.trial_runner=actor"]), "streaming")


def _cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "cnnray.cli", "tune", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ}, timeout=120)


@pytest.mark.slow
def test_invalid_space_file_exits_2_before_ray(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("""\
        params:
          optim.lr: {type: loguniform, low: 0.0, high: 0.1}
    """))
    p = _cli(["--space", str(bad), f"scaling.storage_path={tmp_path / 'ray'}"], tmp_path)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "optim.lr: loguniform bounds must be > 0" in p.stderr
    assert not (tmp_path / "ray").exists()  # no search was started
    # In-process: the refusal happens without importing Ray at all.
    code = ("import sys; from workflows.tune import main; "
            f"rc = main(['--space', {str(bad)!r}]); print(rc, 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.stdout.split()[-2:] == ["2", "False"], out.stdout + out.stderr


@pytest.mark.slow
def test_existing_name_without_resume_and_missing_resume_exit_2(tmp_path):
    (tmp_path / "ray" / "taken").mkdir(parents=True)
    p = _cli(["run.name=taken", f"scaling.storage_path={tmp_path / 'ray'}"], tmp_path)
    assert p.returncode == 2 and "already exists" in p.stderr and "--resume taken" in p.stderr
    p = _cli(["--resume", "nothere", f"scaling.storage_path={tmp_path / 'ray'}"], tmp_path)
    assert p.returncode == 2 and "no search named 'nothere'" in p.stderr
    assert Path(tmp_path / "ray" / "taken").exists()


def test_trials_keep_their_latest_checkpoint_only_unless_pbt_may_clone_an_older_one(tmp_path):
    from cnnray.tune.plan import SearchIdentity
    from cnnray.tune.retention import CheckpointRetention
    from cnnray.tune.search import build_tuner

    def retention(scheduler):
        cfg = load_config(overrides=[f"tune.scheduler={scheduler}", "tune.keep_checkpoints_top_k=3"])
        space = load_space("default")
        tuner = build_tuner(cfg.tune, space, SearchIdentity("s", str(tmp_path), str(tmp_path / "s"), False),
                            lambda config: None, [])
        run_config = tuner._local_tuner.get_run_config()
        # Tune deletes nothing itself (num_to_keep would save the whole experiment state at every checkpoint).
        assert run_config.checkpoint_config.num_to_keep is None
        (cb,) = [c for c in run_config.callbacks if isinstance(c, CheckpointRetention)]
        return cb

    assert [retention(s).history for s in ("asha", "fifo", "hyperband", "median")] == [False] * 4
    assert retention("pbt").history and retention("pbt").keep == 3


def test_a_trial_larger_than_the_cluster_is_refused():
    from cnnray.tune.plan import check_trial_fits

    check_trial_fits(load_config(overrides=["tune.trial_workers=2"]), {"CPU": 2.0})
    with pytest.raises(ConfigError, match=r"one trial needs 3 CPUs \(tune.trial_workers=3 x tune.trial_cpus=1\) "
                                          r"but the Ray cluster has 2"):
        check_trial_fits(load_config(overrides=["tune.trial_workers=3"]), {"CPU": 2.0})
    with pytest.raises(ConfigError, match="needs 0.5 GPUs"):
        check_trial_fits(load_config(overrides=["tune.trial_gpus=0.5"]), {"CPU": 2.0})


@pytest.mark.slow
def test_a_trial_larger_than_the_local_cluster_exits_2_instead_of_waiting(tmp_path):
    p = _cli(["tune.trial_cpus=64", "tune.num_samples=1", f"scaling.storage_path={tmp_path}",
              f"tracking.uri=sqlite:///{tmp_path / 'm.db'}"], tmp_path)
    assert p.returncode == 2 and "one trial needs 64 CPUs" in p.stderr and "tune.trial_cpus=64" in p.stderr, p.stderr[-2000:]
