"""`model.init_from` through `cnnray train`: bad weights exit 2 before any rank starts; a 100 MB ResNet-50
reaches two ranks as a staged file (not inside the plan); continual training from a registered version keeps
the known classes' head rows and records its parent."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from cnnray.config import load_config
from cnnray.errors import ConfigError
from cnnray.run.plan import make_loop_config, prepare_run
from cnnray.run.stage import read_staged, stage_initial_weights

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.image_size=16", "model.name=resnet18", "model.width=0.125", "train.batch_size=64",
        "train.precision=fp32"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "PYTHONPATH": str(REPO)}


def _train(tmp: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "workflows.train", f"scaling.storage_path={tmp / 'runs'}",
           f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}", *args, "--json"]
    return subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout, env=_env())


def _tiny_state(**kw) -> dict[str, torch.Tensor]:
    from cnnray.models import create_model

    return create_model("resnet18", **{"num_classes": 10, "in_chans": 1, "width": 0.125, "stem": "cifar", **kw}).state_dict()


class Custom:  # a pickled object: loading it would need this code
    def __init__(self) -> None:
        self.weights = torch.zeros(2)


def _bad_sources(tmp: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (init_from value, words the exit-2 message must hold)."""
    good = tmp / "good.pt"
    torch.save(_tiny_state(), good)
    truncated = tmp / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    pickled = tmp / "pickled.pt"
    torch.save(Custom(), pickled)
    listed = tmp / "list.pt"
    torch.save([torch.zeros(1)], listed)
    text = tmp / "notes.pt"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")  # a text file named like weights
    other = tmp / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), other)
    return {
        "missing": (str(tmp / "nope.pt"), ["nope.pt"]),
        "truncated": (str(truncated), ["truncated.pt"]),
        "a text file": (str(text), ["notes.pt", "not a PyTorch weights file"]),
        "pickled": (str(pickled), ["pickled.pt", "weights_only"]),
        "not a state_dict": (str(listed), ["list.pt"]),
        "another architecture": (str(other), ["resnet34"]),
        "unknown torchvision name": ("torchvision:ResNet18_Weights.NOPE", ["IMAGENET1K_V1"]),
        "torchvision cache empty": ("torchvision:ResNet18_Weights.IMAGENET1K_V1", [str(tmp / "hub" / "checkpoints")]),
    }


def test_bad_initial_weights_exit_2_before_any_work(tmp_path, monkeypatch):
    """Each bad source is refused by the plan (what `cnnray train` runs before it starts Ray or a rank), with
    the key and the problem named; nothing of the run is created."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        for name, (source, words) in _bad_sources(tmp_path).items():
            cfg = load_config(overrides=[*TINY, f"model.init_from={source}", f"scaling.storage_path={tmp_path / 'runs'}"])
            with pytest.raises(ConfigError) as e:
                prepare_run(cfg)
            text = str(e.value)
            assert "model.init_from" in text and all(w in text for w in words), (name, text)
    finally:
        torch.hub.set_dir(os.path.join(os.environ.get("TORCH_HOME", str(tmp_path)), "hub"))
    assert not (tmp_path / "runs").exists()


def test_init_from_with_resume_and_a_stem_mismatch_are_refused(tmp_path):
    weights = tmp_path / "imagenet_stem.pt"
    torch.save(_tiny_state(stem="imagenet"), weights)
    base = [*TINY, f"scaling.storage_path={tmp_path / 'runs'}", f"model.init_from={weights}"]
    with pytest.raises(ConfigError, match="a resume continues"):
        prepare_run(load_config(overrides=[*base, "train.resume=true", "run.name=r"]))
    with pytest.raises(ConfigError, match="model.stem"):
        prepare_run(load_config(overrides=base))
    prep = prepare_run(load_config(overrides=[*base, "model.init_strict=false"]))
    assert any("conv1" in line for line in prep.init_source.report), prep.init_source.report


def test_the_cli_exits_2_naming_the_file(tmp_path):
    p = _train(tmp_path, *TINY, f"model.init_from={tmp_path / 'missing.pth'}")
    assert p.returncode == 2, p.stderr[-2000:]
    assert "model.init_from" in p.stderr and "missing.pth" in p.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_resnet50_weights_reach_two_ranks_as_a_file_and_the_backbone_starts_from_them(tmp_path):
    """torchvision-format ResNet-50 weights (100 MB, 3-channel ImageNet stem, 1000 classes) into a grayscale
    10-class model on two local DDP ranks: the plan stays small, conv1 is summed over RGB, the head is new, and
    with the backbone frozen for the only epoch the registered backbone is the file's, BatchNorm statistics too."""
    src = torchvision.models.resnet50(weights=None).state_dict()
    path = tmp_path / "resnet50.pth"
    torch.save(src, path)
    assert path.stat().st_size > 95e6
    # 200 synthetic grey images: the point is the weights' path to the ranks, not learning digits.
    args = ["data.source=synthetic", "data.num_classes=10", "data.samples_per_class=20", "data.channels=1",
            "data.image_size=16", "model.name=resnet50", "model.width=1.0", "model.stem=imagenet",
            "model.attn=none", "train.precision=fp32",
            "train.batch_size=64", "train.epochs=1", "train.freeze_backbone_epochs=1", "train.ema=false",
            "scaling.num_workers=2", "scaling.runner=local", "run.name=r50", f"model.init_from={path}"]

    cfg = load_config(overrides=[*args, f"scaling.storage_path={tmp_path / 'plan'}"])
    prep = prepare_run(cfg)
    assert any("1 input channel" in line or "summed" in line for line in prep.init_source.report), prep.init_source.report
    Path(prep.run_dir).mkdir(parents=True)
    stage_initial_weights(prep)
    plan = make_loop_config(prep).to_json()
    assert len(plan) < 64_000, "the weights rode inside the plan"
    assert read_staged(prep.init.weights_path).keys() == src.keys()

    p = _train(tmp_path, *args)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["status"] == "FINISHED" and r["version"], r
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    tags = client.get_model_version("cnnray", r["version"]).tags
    assert tags["cnnray.init_from"] == "resnet50.pth"
    assert tags["cnnray.init_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert client.get_run(r["run_id"]).data.tags["cnnray.init_from"] == "resnet50.pth"
    from cnnray.run.outcome import load_best

    weights, _ = load_best(r["checkpoint"])
    assert weights["fc.weight"].shape == (10, 2048)
    assert torch.equal(weights["conv1.weight"], src["conv1.weight"].sum(1, keepdim=True))
    for k in ("layer1.0.conv1.weight", "layer4.2.conv3.weight", "layer3.5.bn2.running_mean", "bn1.running_var"):
        assert torch.equal(weights[k], src[k]), k
    assert not torch.equal(weights["fc.bias"], torch.zeros(10))  # the head trained


# --------------------------------------------------------------- continual training from a registered version

def _folder(root: Path, x: np.ndarray, y: np.ndarray, names: list[str]) -> None:
    from PIL import Image

    for split, idx in (("train", slice(0, None, 2)), ("val", slice(1, None, 4)), ("test", slice(3, None, 4))):
        for i, (img, label) in enumerate(zip(x[idx], y[idx])):
            d = root / split / names[int(label)]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{i}.png")


@pytest.fixture(scope="module")
def parent(tmp_path_factory, digits_model):
    """digits_model registered as version 1 of `parent` (no training: a copy of the session's model)."""
    from cnnray.classifier.card import card_for_training
    from cnnray.tracking.model_registry import register_weights

    tmp = tmp_path_factory.mktemp("parent")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    card = card_for_training(digits_model.cfg, digits_model.info, lineage={}, training={})
    example = np.zeros((digits_model.info.channels, 16, 16), dtype=np.uint8)
    register_weights(uri, "cnnray", "parent-run", digits_model.weights, card, example=example, registered_name="parent",
                     alias="champion")
    return tmp, uri


def test_continual_training_on_a_superset_keeps_known_rows_and_records_the_parent(parent, digits_model):
    """A data set with the parent's 10 classes plus one more: the known classes' head rows are the parent's (by
    class name, in the new order), the new class's row is fresh; the version records its parent, the registry
    table and the report's chain show it."""
    tmp, uri = parent
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images * (255 / 16)).astype(np.uint8)
    names = [str(i) for i in range(10)]
    extra = np.full_like(x[:60], 0)
    extra[:, 2:6, 2:6] = 255  # an eleventh class: a square
    names11 = names + ["00_square"]  # sorts between "0" and "1": every row after it moves
    _folder(tmp / "data", np.concatenate([x, extra]), np.concatenate([d.target, np.full(60, 10)]), names11)
    args = [*TINY, "data.source=imagefolder", f"data.path={tmp / 'data'}", f"tracking.uri={uri}",
            "model.init_from=models:/parent@champion", f"scaling.storage_path={tmp / 'runs'}"]
    prep = prepare_run(load_config(overrides=args))
    src = prep.init_source
    assert src.parent == "parent/1" and src.classes == tuple(names) and src.label == "models:/parent/1"
    assert prep.info.class_names[1] == "00_square"
    # The parent normalized with digits' own statistics, this data (with bright squares) has others: said.
    assert any(line.startswith("normalization differs from models:/parent/1") for line in src.report), src.report
    from cnnray.models.from_config import build_model
    from cnnray.run.init_state import initial_model

    Path(prep.run_dir).mkdir(parents=True)
    stage_initial_weights(prep)
    model = initial_model(build_model(prep.cfg, prep.info.num_classes, prep.info.channels), prep.init,
                          prep.info.class_names)
    fc = model.state_dict()["fc.weight"]
    for row, name in enumerate(prep.info.class_names):
        if name in names:
            assert torch.equal(fc[row], digits_model.weights["fc.weight"][int(name)]), name
    assert not torch.equal(fc[1], digits_model.weights["fc.weight"][1])

    p = _train(tmp, *args[:-1], f"scaling.storage_path={tmp / 'runs2'}", "train.epochs=1",
               "scaling.num_workers=1", "registry.name=child")
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    from cnnray.serve.tables import registry_table
    from cnnray.tracking.listing import list_versions

    rows = list_versions(uri, "child")
    assert rows[0]["parent"] == "parent/1" and rows[0]["tags"]["cnnray.init_from"] == "models:/parent/1"
    assert "parent/1" in registry_table(rows)
    assert r["status"] == "FINISHED"
    import types

    from mlflow.tracking import MlflowClient

    from cnnray.insight.report_gather import _chain

    report = types.SimpleNamespace(label="models:/child/1", chain=[])  # the report's lineage chain, as gathered
    _chain(report, MlflowClient(tracking_uri=uri), rows[0]["tags"])
    assert [(c["version"], c["method"]) for c in report.chain] == [("models:/parent/1", "init_from")]


def test_registered_sources_that_cannot_fit_exit_2(parent):
    tmp, uri = parent
    base = [*TINY, f"tracking.uri={uri}", f"scaling.storage_path={tmp / 'runs-bad'}"]
    for source, words in (("models:/parent@nope", ["nope", "champion"]), ("models:/parent/7", ["version 7"]),
                          ("models:/nobody@champion", ["nobody"])):
        with pytest.raises(ConfigError) as e:
            prepare_run(load_config(overrides=[*base, f"model.init_from={source}"]))
        assert all(w in str(e.value) for w in words), str(e.value)
    with pytest.raises(ConfigError, match="image_size"):
        prepare_run(load_config(overrides=[*base, "data.image_size=24", "model.init_from=models:/parent/1"]))


def test_the_finetune_config_starts_from_a_registered_champion(parent):
    """`--config finetune`: the champion by default, the tutorial's layer-wise rates, the head alone first."""
    tmp, uri = parent
    assert load_config("finetune").model.init_from == "models:/cnnray@champion"
    cfg = load_config("finetune", overrides=[*TINY, f"tracking.uri={uri}", f"scaling.storage_path={tmp / 'runs-ft'}",
                                             "model.init_from=models:/parent@champion"])
    prep = prepare_run(cfg)
    assert prep.init_source.parent == "parent/1" and prep.init_source.label == "models:/parent/1"
    o = cfg.optim
    assert o.lr * o.head_lr_mult == pytest.approx(1e-3) and o.lr * o.backbone_lr_mult == pytest.approx(1e-4)
    assert cfg.train.freeze_backbone_epochs == 1 and cfg.train.freeze_bn and cfg.train.epochs == 4
