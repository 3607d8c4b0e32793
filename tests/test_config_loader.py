"""Config loading: merge order, dotted overrides, config_hash, built-in names, `cnnray config --keys`, exit 2."""

import pytest
import yaml

from cnnray.config import Config, config_hash, config_names, load_config, resolve_config_path
from cnnray.config.reference import key_rows
from cnnray.errors import ConfigError
from workflows.config import main as config_main



def _write(path, tree):
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def test_defaults_without_sources():
    assert load_config() == Config()


def test_merge_order_defaults_file_overrides(tmp_path):
    f = _write(tmp_path / "a.yaml", {"train": {"epochs": 7, "batch_size": 16}, "optim": {"lr": 0.01}})
    cfg = load_config(f, ["train.epochs=9"])
    assert cfg.train.epochs == 9  # override beats file
    assert cfg.train.batch_size == 16  # file beats default
    assert cfg.optim.lr == 0.01
    assert cfg.train.seed == Config().train.seed  # untouched: default


def test_later_file_wins_and_merges_nested(tmp_path):
    a = _write(tmp_path / "a.yaml", {"data": {"augment": {"rotation": 10, "hflip": True}}, "train": {"epochs": 3}})
    b = _write(tmp_path / "b.yaml", {"data": {"augment": {"rotation": 20}}})
    cfg = load_config([a, b])
    assert cfg.data.augment.rotation == 20  # later file wins
    assert cfg.data.augment.hflip is True  # sibling key of the earlier file survives (deep merge)
    assert cfg.train.epochs == 3


def test_later_override_wins_and_dotted_nesting():
    cfg = load_config(overrides=["train.epochs=2", "data.augment.rotation=5", "train.epochs=4"])
    assert cfg.train.epochs == 4
    assert cfg.data.augment.rotation == 5.0
    cfg = load_config(overrides={"data.augment.hue": 0.1, "optim.betas": [0.8, 0.9]})
    assert cfg.data.augment.hue == 0.1 and cfg.optim.betas == (0.8, 0.9)


def test_override_values_are_typed():
    cfg = load_config(overrides=["optim.lr=1e-3", "train.ema=false", "train.grad_clip=null",
                                 "scaling.num_workers=[1,3]"])
    assert cfg.optim.lr == 1e-3 and cfg.train.ema is False and cfg.train.grad_clip is None
    assert cfg.scaling.num_workers == (1, 3)


def test_config_hash_stable_and_sensitive(tmp_path):
    assert config_hash(load_config()) == config_hash(load_config())
    assert config_hash(load_config()) != config_hash(load_config(overrides=["optim.lr=0.002"]))
    assert config_hash(load_config()) != config_hash(load_config(overrides=["data.augment.hue=0.05"]))
    # Run identity and tracking do not change what is trained.
    assert config_hash(load_config()) == config_hash(load_config(overrides=["run.name=x", "tracking.experiment=y"]))


def test_config_hash_independent_of_yaml_key_order(tmp_path):
    a = _write(tmp_path / "a.yaml", {"train": {"epochs": 3, "seed": 1}, "optim": {"lr": 0.01, "name": "sgd"}})
    b = _write(tmp_path / "b.yaml", {"optim": {"name": "sgd", "lr": 0.01}, "train": {"seed": 1, "epochs": 3}})
    assert config_hash(load_config(a)) == config_hash(load_config(b))
    assert config_hash(load_config(a)) == config_hash(load_config(overrides=["optim.name=sgd", "optim.lr=0.01",
                                                                              "train.seed=1", "train.epochs=3"]))


def test_every_field_has_a_description():
    missing = {key for key, _, _, desc in key_rows() if not desc}
    assert not missing, missing


def test_test_hooks_are_not_config_keys():
    """Fault injection lives in environment variables (cnnray.run.test_hooks), not in the user's config."""
    keys = {key for key, *_ in key_rows()}
    assert not {k for k in keys if "inject" in k or "fail_at" in k}


def test_keys_output_lists_every_key_with_description(capsys):
    assert config_main(["--keys"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for key, _, default, desc in key_rows():
        assert key in lines, key
        if desc:
            assert f"# {desc}" in lines[key]
    assert "max rotation in degrees" in lines["data.augment.rotation"]
    assert "label smoothing" in lines["train.label_smoothing"]
    assert "ImageNet" in lines["data.normalize_stats"]
    assert "= 0.05" in lines["optim.weight_decay"]


@pytest.mark.parametrize("override, key", [
    ("train.epochz=3", "train.epochz"),
    ("data.augment.huee=0.1", "data.augment.huee"),
    ("train.epochs=0", "train.epochs"),
    ("optim.name=adam", "optim.name"),
    ("data.augment.hue=0.7", "data.augment.hue"),
    ("data.normalize_stats=cifar", "data.normalize_stats"),
])
def test_bad_key_or_value_exits_2_naming_the_key(capsys, override, key):
    assert config_main([override]) == 2
    err = capsys.readouterr().err
    assert f"'{key}'" in err
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(overrides=[override])


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match="valid keys here: .*hue"):
        load_config(overrides=["data.augment.hu=0.1"])


def test_literal_error_lists_allowed_values():
    with pytest.raises(ConfigError, match="allowed values: dataset, imagenet"):
        load_config(overrides=["data.normalize_stats=x"])


def test_builtin_name_path_and_unknown_name(tmp_path, capsys, monkeypatch):
    assert "tutorial" in config_names()
    assert resolve_config_path("tutorial").name == "tutorial.yaml"
    assert load_config("tutorial") == load_config(resolve_config_path("tutorial"))
    f = _write(tmp_path / "mine.yaml", {"train": {"epochs": 2}})
    assert load_config(str(f)).train.epochs == 2  # a path still works
    monkeypatch.chdir(tmp_path)
    assert load_config("mine.yaml").train.epochs == 2  # relative path
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("missing.yaml")
    assert config_main(["--config", "nosuchrecipe"]) == 2
    err = capsys.readouterr().err
    assert "nosuchrecipe" in err and "tutorial" in err  # the available names are listed


def test_not_a_mapping_or_bad_yaml_exits_2(tmp_path, capsys):
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "bad.yaml").write_text("train: [1,\n")
    for name in ("list.yaml", "bad.yaml"):
        assert config_main(["--config", str(tmp_path / name)]) == 2
        assert name in capsys.readouterr().err


def test_malformed_override_exits_2(capsys):
    assert config_main(["train.epochs"]) == 2
    assert "key.sub=value" in capsys.readouterr().err
