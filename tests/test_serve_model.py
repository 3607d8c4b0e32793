"""cnnray.serve without MLflow: the model card, preprocessing equal to training's, the classifier."""

import base64
import io

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cnnray.errors import DataError, UserInputError
from cnnray.serve import ImageClassifier, InputContract, ModelCard, card_for_training, to_model_input
from cnnray.tracking.model_registry import write_model_files


def _png(chw):
    buf = io.BytesIO()
    Image.fromarray(chw[0] if chw.shape[0] == 1 else chw.transpose(1, 2, 0)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def card(digits_model):
    return card_for_training(digits_model.cfg, digits_model.info, lineage={"k": "v"}, training={})


def test_card_round_trips_and_holds_the_training_contract(card, digits_model):
    info = digits_model.info
    back = ModelCard.from_dict(__import__("json").loads(card.to_json()))
    assert back == card
    assert card.class_names == tuple(str(i) for i in range(10)) and card.num_classes == 10
    assert card.input == InputContract(16, 1, info.mean, info.std, True, "tensor")
    assert card.model_kwargs["in_chans"] == 1 and card.architecture == "resnet18"
    with pytest.raises(UserInputError, match="not a cnnray model card"):
        ModelCard.from_dict({"format": "other"})


def test_every_input_form_gives_the_pixels_training_saw(card):
    """Native 8x8 digits in any form -> exactly the 16x16 uint8 tensors the digits source yields."""
    from cnnray.data import load_arrays
    from cnnray.data.sources.digits import native
    from cnnray.data.split import stratified_split3

    x, y = native()
    _, va, _ = stratified_split3(y, 0.2, 0.15, 0)
    want = load_arrays(__import__("cnnray.config", fromlist=["x"]).load_config(overrides=["data.image_size=16"]).data)[2]
    native_val = x[va]  # [N,1,8,8]
    forms = {
        "N,H,W": native_val[:, 0],
        "N,H,W,C": native_val.transpose(0, 2, 3, 1),
        "N,C,H,W": native_val,
        "N,H,W,3 (rgb)": np.repeat(native_val.transpose(0, 2, 3, 1), 3, axis=3),
        "int64 list": native_val[:, 0].astype(np.int64),
        "png bytes": [_png(im) for im in native_val],
        "base64 frame": pd.DataFrame({"image": [base64.b64encode(_png(im)).decode() for im in native_val]}),
    }
    for name, images in forms.items():
        got = to_model_input(images, card.input)
        assert got.dtype == torch.uint8 and got.shape == want.shape, name
        assert torch.equal(got, want), name


def test_pil_contract_resizes_like_the_imagefolder_source(tmp_path):
    from cnnray.data.codec import decode_file

    rgb = np.random.default_rng(0).integers(0, 255, (3, 37, 23), dtype=np.uint8)
    path = tmp_path / "a.png"
    path.write_bytes(_png(rgb))
    contract = InputContract(16, 1, (0.5,), (0.25,), True, "pil")
    want = decode_file(path, 1, 16)
    assert np.array_equal(to_model_input([path.read_bytes()], contract)[0].numpy(), want)
    assert np.array_equal(to_model_input(rgb.transpose(1, 2, 0)[None], contract)[0].numpy(), want)


@pytest.mark.parametrize("bad, needle", [
    ([b"not an image"], "not an image PIL can read"),
    (["%%% not base64"], "base64"),
    (np.full((1, 8, 8), 300.0), "0-255"),
    (np.zeros((2, 3, 4, 5, 6)), "expected N,H,W"),
    (pd.DataFrame({"a": [b"x"], "b": [b"y"]}), "column 'image'"),
])
def test_bad_inputs_are_refused_with_the_reason(card, bad, needle):
    with pytest.raises(DataError, match=needle):
        to_model_input(bad, card.input)


def test_classifier_equals_the_training_eval_path(card, digits_model, tmp_path):
    from cnnray.data import build_transforms
    from cnnray.models.from_config import build_model

    card = write_model_files(tmp_path, digits_model.weights, card)
    clf = ImageClassifier.from_dir(tmp_path)
    model = build_model(digits_model.cfg, 10, 1)
    model.load_state_dict(digits_model.weights)
    _, eval_tf = build_transforms(digits_model.cfg.data, digits_model.info)
    x = digits_model.val_x
    with torch.no_grad():
        want = model.eval()(eval_tf(x)).numpy()
    got = clf.logits_uint8(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    pred = clf.predict(x[:, 0].numpy(), top_k=3)  # N,H,W at the contract size
    assert (pred.index == want.argmax(1)).all()
    assert pred.top_index.shape == (len(x), 3) and np.allclose(pred.probs.sum(1), 1, atol=1e-5)
    rec = pred.records(clf.class_names, logits=True)[0]
    assert rec["class_name"] == str(rec["class_index"]) and len(rec["logits"]) == 10
    assert (pred.index == digits_model.val_y.numpy()).mean() == pytest.approx(digits_model.val_acc)


def test_altered_weights_are_refused(card, digits_model, tmp_path):
    write_model_files(tmp_path, digits_model.weights, card)
    torch.save(digits_model.degraded(3), tmp_path / "weights.pt")
    with pytest.raises(UserInputError, match="sha256"):
        ImageClassifier.from_dir(tmp_path)
