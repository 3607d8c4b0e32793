"""card.json validated as a whole on load: every problem named by its key path, the version named by its label."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from cnnray.errors import InvalidCardError, UserInputError
from cnnray.models import list_models
from cnnray.serve import ImageClassifier, InputContract, ModelCard, card_for_training

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def good() -> dict:
    """A card as training writes it (no weights needed: the card only describes the data and the model)."""
    from cnnray.config import load_config
    from cnnray.data import describe_dataset

    cfg = load_config(overrides=["data.image_size=16", "model.name=resnet18", "model.width=0.125"])
    card = card_for_training(cfg, describe_dataset(cfg.data), lineage={"k": "v"}, training={"best_epoch": 2})
    return json.loads(card.to_json())


def _invalid(d: dict, where: str = "models:/m/1") -> str:
    with pytest.raises(InvalidCardError) as e:
        ModelCard.from_dict(d, where)
    assert isinstance(e.value, UserInputError)  # the CLI exits 2 with it
    return str(e.value)


def test_training_card_round_trips_through_the_schema(good):
    card = ModelCard.from_dict(good)
    assert json.loads(card.to_json()) == good
    assert ModelCard.from_dict(json.loads(card.to_json())) == card
    assert card.num_classes == len(card.class_names) == 10 and card.input.resize == "tensor"


def test_format_1_card_of_an_earlier_cnnray_still_loads():
    """The first card format: no compression key, optional fields absent, extra keys ignored."""
    old = {"format": "cnnray.image-classifier", "format_version": 1, "architecture": "resnet18",
           "model_kwargs": {"num_classes": 2, "in_chans": 3}, "class_names": ["cat", "dog"],
           "input": {"image_size": 32, "channels": 3, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
           "note": "kept by hand"}
    card = ModelCard.from_dict(old)
    assert card.input == InputContract(32, 3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), True, "pil")
    assert card.compression == {} and card.lineage == {} and card.weights_sha256 == "" and card.format_version == 1
    assert ModelCard.from_dict({**old, "format_version": 2, "compression": None}).compression == {}


@pytest.mark.parametrize("change, needle", [
    ({"architecture": "resnet9000"}, "architecture: 'resnet9000' is not a registered model (valid names: "
                                     + ", ".join(list_models()) + ")"),
    ({"input": {"image_size": "abc"}}, "input.image_size: Input should be a valid integer"),
    ({"input": {"channels": 0}}, "input.channels: Input should be greater than 0"),
    ({"input": {"mean": [0.5, 0.5]}}, "input.mean: 2 values for 1 channel(s), expected 1 value"),
    ({"input": {"std": [0.0]}}, "input.std: must be positive"),
    ({"input": {"resize": "nearest"}}, "input.resize: Input should be 'pil' or 'tensor'"),
    ({"class_names": "0123456789"}, "class_names: Input should be a valid list"),
    ({"class_names": [str(i) for i in range(9)] + [9]}, "class_names.9: Input should be a valid string"),
    ({"model_kwargs": "resnet18"}, "model_kwargs: Input should be a valid dictionary"),
    ({"model_kwargs": {"in_chans": 1}}, "model_kwargs.num_classes: missing"),
    ({"model_kwargs": {"num_classes": "ten"}}, "model_kwargs.num_classes: must be a positive integer"),
    ({"model_kwargs": {"num_classes": 9}}, "model_kwargs.num_classes: 9 does not match the 10 class_names"),
    ({"model_kwargs": {"num_classes": 10, "in_chans": 3}}, "model_kwargs.in_chans: 3 does not match input.channels 1"),
    ({"model_kwargs": {"num_classes": 10, "depth": 3}}, "model_kwargs.depth: not an option of model 'resnet18'"),
    ({"format_version": "two"}, "format_version: Input should be a valid integer"),
    ({"lineage": {"k": 1}}, "lineage.k: Input should be a valid string"),
    ({"format": "onnx"}, "format: not a cnnray model card"),
])
def test_each_bad_field_is_named_by_its_key_path(good, change, needle):
    d = json.loads(json.dumps(good))
    for key, value in change.items():
        if key == "input":
            d["input"].update(value)
        else:
            d[key] = value
    msg = _invalid(d)
    assert msg.startswith("the model card of models:/m/1 is invalid: ") and needle in msg, msg


def test_every_problem_is_listed_at_once(good):
    d = json.loads(json.dumps(good))
    d.update(architecture="nonet", class_names={"a": 1}, model_kwargs=[], weights_sha256=3)
    d["input"].update(image_size="abc", mean=[0.1, 0.2, 0.3])
    del d["input"]["channels"]
    msg = _invalid(d)
    for path in ("architecture", "class_names", "model_kwargs", "weights_sha256", "input.image_size", "input.channels"):
        assert f"{path}: " in msg, (path, msg)


def test_card_that_is_not_json_or_not_an_object(tmp_path):
    path = tmp_path / "card.json"
    path.write_text("{not json")
    with pytest.raises(InvalidCardError, match=r"the model card of .*card.json is invalid: \(card\): not JSON"):
        ModelCard.read(path)
    path.write_text("[1, 2]")
    with pytest.raises(InvalidCardError, match=r"\(card\): expected a JSON object, got list"):
        ModelCard.read(path)


def test_newer_card_asks_for_an_upgrade_before_judging_its_fields(good):
    with pytest.raises(UserInputError, match="format_version 3 is newer than this cnnray reads"):
        ModelCard.from_dict({**good, "format_version": 3, "input": "a future layout"})


def test_options_the_model_refuses_are_an_invalid_card(good):
    """A card built in code skips the schema: the network's own refusal is reported the same way."""
    card = ModelCard.from_dict(good)
    import dataclasses

    bad = dataclasses.replace(card, model_kwargs={**card.model_kwargs, "depth": 3})
    with pytest.raises(InvalidCardError, match="model_kwargs: cannot build model 'resnet18'.*unknown option"):
        ImageClassifier(bad, {})


@pytest.mark.slow
def test_predict_refuses_a_registered_version_whose_card_is_broken(digits_model, tmp_path):
    """End to end: a version whose card.json was altered in the store exits 2 naming the version and the fields."""
    from cnnray.data.example import example_image
    from cnnray.tracking.model_registry import register_weights
    from cnnray.tracking.model_store import load_card, resolve

    m = digits_model
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    card = card_for_training(m.cfg, m.info, lineage={}, training={})
    register_weights(uri, "exp-broken", "run-broken", m.weights, card, example=example_image(m.cfg.data, 1),
                     registered_name="broken")
    # The store keeps artifacts beside its database: break every copy of the card there.
    copies = list((tmp_path / "mlruns").rglob("card.json"))
    assert copies
    for path in copies:
        d = json.loads(path.read_text())
        d["architecture"] = "resnet9000"
        d["input"]["image_size"] = "abc"
        d["model_kwargs"]["num_classes"] = 9
        path.write_text(json.dumps(d))
    img = tmp_path / "img.png"
    Image.fromarray(m.val_x[0, 0].numpy()).save(img)

    with pytest.raises(InvalidCardError, match="the model card of models:/broken/1 is invalid: "):
        load_card(resolve("models:/broken/1", uri), uri)
    proc = subprocess.run([sys.executable, "-m", "cnnray.cli", "predict", "--model", "models:/broken/1", str(img),
                           f"tracking.uri={uri}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "error: the model card of models:/broken/1 is invalid: " in proc.stderr, proc.stderr
    for needle in ("architecture: 'resnet9000' is not a registered model (valid names: ",
                   "input.image_size: Input should be a valid integer", "model_kwargs.num_classes: 9 does not match"):
        assert needle in proc.stderr, (needle, proc.stderr)
    assert "Traceback" not in proc.stderr
