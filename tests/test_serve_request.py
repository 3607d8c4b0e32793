"""The rules a prediction request must meet (cnnray.classifier.request), and the pyfunc that applies them under
`mlflow models serve`: every refusal is a BadRequest (HTTP 400) whose message names the problem. No server."""

import base64
import importlib
import io
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cnnray.classifier.card import InputContract
from cnnray.classifier.request import MAX_IMAGES, BadRequest, Request, checked_images, parse_body, parse_params
from cnnray.errors import DataError

CONTRACT = InputContract(16, 1, (0.5,), (0.25,), True, "tensor")
X = np.random.default_rng(0).integers(0, 256, (2, 8, 8), dtype=np.uint8)  # two 8x8 grey images, N,H,W


def _b64(hw: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(hw).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _refused(call, *args, **kw) -> str:
    """The problem part of the BadRequest `call` raises (before the list of accepted forms)."""
    with pytest.raises(BadRequest) as info:
        call(*args, **kw)
    message = str(info.value)
    assert isinstance(info.value, DataError) and "accepted bodies (JSON)" in message, message
    return message.split("; accepted bodies", 1)[0]


@pytest.mark.parametrize("images", [
    X, X[..., None], np.repeat(X[..., None], 3, axis=3), np.repeat(X[..., None], 4, axis=3), X[:, None],
    X.astype(np.int64), [_b64(X[0]), _b64(X[1])], pd.DataFrame({"image": [_b64(X[0]), _b64(X[1])]}),
    {"image": [_b64(X[0]), _b64(X[1])]}, {"image": np.array([_b64(X[0]), _b64(X[1])])},
], ids=["N,H,W", "N,H,W,1", "N,H,W,3", "N,H,W,4", "N,1,H,W", "int64", "base64 list", "DataFrame", "dict",
        "dict of a str array"])
def test_accepted_forms_give_uint8_at_the_contract_size(images):
    x = checked_images(images, CONTRACT, max_images=2)
    assert x.dtype == torch.uint8 and tuple(x.shape) == (2, 1, 16, 16)


@pytest.mark.parametrize("images, needle", [
    ([], "the batch is empty"),
    (np.zeros((0, 8, 8), np.uint8), "the batch is empty"),
    (X + 0.5, "integers 0-255 (uint8), got fractions"),
    (X > 3, "integers 0-255 (uint8), got true/false"),
    (X.astype(np.int64) - 1, "integers 0-255 (uint8), found -1.."),
    (X.astype(np.int64) + 256, "integers 0-255 (uint8), found 256.."),
    (X[0], "got rank 2 (shape (8, 8))"),
    (X[None, ..., None], "got rank 5"),
    (np.repeat(X[..., None], 2, axis=3), "cannot take 2 channels"),
    (np.repeat(X[..., None], 5, axis=3), "cannot take 5 channels"),
    (np.zeros((1, 0, 8), np.uint8), "an image has no pixels"),
    ([[1, 2], [3]], "input 0: expected a base64-encoded image, got list"),
    ([b"hello"], "input 0 is not an image PIL can read"),
    ([base64.b64encode(b"hello").decode()], "input 0 is not an image PIL can read"),
    (["%%% not base64"], "input 0: a string must be a base64-encoded image"),
    (pd.DataFrame({"a": [_b64(X[0])], "b": [_b64(X[1])]}), "needs a column 'image'"),
    ({"img": [_b64(X[0])]}, "only the key 'image', got ['img']"),
    (5, "expected a batch of images, got int"),
], ids=["empty list", "empty array", "floats", "bool", "negative", "256", "rank 2", "rank 5",
        "2 channels", "5 channels", "no pixels", "ragged list", "non-image bytes", "non-image base64", "not base64",
        "DataFrame without image", "dict with another key", "not a batch"])
def test_what_the_card_does_not_take_is_refused_naming_the_problem(images, needle):
    assert needle in _refused(checked_images, images, CONTRACT)


def test_a_batch_over_the_limit_is_refused():
    assert "the batch holds 3 images, more than the 2 one request may hold" in _refused(
        checked_images, np.zeros((3, 8, 8), np.uint8), CONTRACT, max_images=2)
    assert checked_images(np.zeros((MAX_IMAGES, 8, 8), np.uint8), CONTRACT).shape[0] == MAX_IMAGES
    problem = _refused(checked_images, np.zeros((MAX_IMAGES + 1, 8, 8), np.uint8), CONTRACT)
    assert f"holds {MAX_IMAGES + 1} images, more than the {MAX_IMAGES}" in problem


@pytest.mark.parametrize("body, needle", [
    ([1], "the body must be a JSON object, got list"),
    ({"params": {}}, "got 0 of"),
    ({"dataframe_split": {"columns": ["image"], "data": [["x"]]}, "inputs": ["x"]}, "got 2 of"),
    ({"inputs": ["x"], "foo": 1}, "unknown keys ['foo']"),
    ({"inputs": [[[1, 2]], [[3]]]}, "a numeric array must be rectangular"),
    ({"inputs": [[1, 2], "a"]}, "a numeric array must be rectangular"),
    ({"inputs": "abc"}, "inputs must be a list"),
    ({"inputs": {"img": ["x"]}}, "only the key 'image', got ['img']"),
    ({"dataframe_split": [1]}, "dataframe_split must be an object"),
    ({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}, "needs a column 'image'"),
    ({"dataframe_split": {"columns": ["image"], "data": [[1, 2]]}}, "every row of data must be a list of 1 values"),
    ({"dataframe_records": [1]}, "dataframe_records must be a list of objects"),
    ({"inputs": ["x"], "params": {"k": 3}}, "unknown params ['k']"),
], ids=["not an object", "no format", "dataframe_split and inputs", "unknown key", "ragged array", "mixed list",
        "inputs a string", "inputs object with another key", "dataframe_split a list", "dataframe_split columns",
        "dataframe_split row", "records not objects", "unknown param"])
def test_a_body_that_breaks_the_protocol_is_refused_naming_the_problem(body, needle):
    assert needle in _refused(parse_body, body)


def test_bodies_of_each_format_parse_to_images_and_params():
    b64 = _b64(X[0])
    assert parse_body({"inputs": [b64], "params": {"top_k": 2}}) == Request([b64], 2, False)
    assert parse_body({"inputs": {"image": [b64]}}) == Request([b64], 5, False)
    assert parse_body({"dataframe_split": {"columns": ["image"], "data": [[b64]]}}).images == [b64]
    assert parse_body({"dataframe_records": [{"image": b64}]}).images == [b64]
    assert parse_body({"instances": [{"image": b64}]}).images == [b64]
    arr = parse_body({"inputs": X.tolist(), "params": {"return_logits": True}})
    assert isinstance(arr.images, np.ndarray) and arr.images.shape == (2, 8, 8) and arr.return_logits


@pytest.mark.parametrize("params, needle", [
    ({"top_k": 0}, "params.top_k must be an integer >= 1, got 0"),
    ({"top_k": True}, "params.top_k must be an integer >= 1, got True"),
    ({"top_k": 1.5}, "got 1.5"),
    ({"top_k": "3"}, "got '3'"),
    ({"return_logits": 1}, "params.return_logits must be true or false, got 1"),
    ({"foo": 1}, "unknown params ['foo']; allowed: top_k"),
    ([1], "params must be an object, got list"),
])
def test_bad_params_are_refused_naming_the_param(params, needle):
    assert needle in _refused(parse_params, params)


def test_params_default_and_numpy_scalars():
    assert parse_params(None) == parse_params({}) == (5, False)
    assert parse_params({"top_k": np.int64(3), "return_logits": np.bool_(True)}) == (3, True)


# The pyfunc of every registered version (the models-from-code file), without MLflow's server around it.

@pytest.fixture(scope="module")
def pyfunc():
    from cnnray.classifier.card import card_for_training
    from cnnray.classifier.classifier import ImageClassifier
    from cnnray.config import load_config
    from cnnray.data import describe_dataset
    from cnnray.models.from_config import build_model

    cfg = load_config(overrides=["data.image_size=16", "model.name=resnet18", "model.width=0.125"])
    info = describe_dataset(cfg.data)
    torch.manual_seed(0)
    card = card_for_training(cfg, info, lineage={}, training={})
    module = importlib.import_module("cnnray.tracking.pyfunc_model")
    model = module.CnnrayImageClassifier()
    model.clf = ImageClassifier(card, build_model(cfg, info.num_classes, info.channels).state_dict())
    return model


def test_the_pyfunc_answers_a_bad_request_with_400_and_cnnray_s_message(pyfunc):
    from mlflow.exceptions import MlflowException

    for images, params, needle in [(X + 0.5, None, "got fractions"), (X, {"top_k": 0}, "params.top_k"),
                                   (pd.DataFrame({"image": []}), None, "the batch is empty")]:
        with pytest.raises(MlflowException) as info:
            pyfunc.predict(None, images, params)
        e = info.value
        assert e.error_code == "INVALID_PARAMETER_VALUE" and e.get_http_status_code() == 400
        assert needle in e.message and "accepted bodies (JSON)" in e.message
    out = pyfunc.predict(None, X, {"top_k": 3, "return_logits": True})
    assert len(out) == 2 and len(out["top_classes"][0]) == 3 and len(out["logits"][0]) == 10


def test_the_request_limit_holds_under_mlflow_serving_only(pyfunc, monkeypatch):
    from mlflow.exceptions import MlflowException

    many = np.zeros((MAX_IMAGES + 1, 8, 8), np.uint8)
    assert len(pyfunc.predict(None, many)) == MAX_IMAGES + 1  # in process (load_model, spark_udf): no limit
    monkeypatch.setenv("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", "true")  # what MLflow's scoring server sets
    with pytest.raises(MlflowException, match=f"holds {MAX_IMAGES + 1} images, more than the {MAX_IMAGES}"):
        pyfunc.predict(None, many)


def test_defining_the_pyfunc_draws_no_type_hint_warning():
    module = importlib.import_module("cnnray.tracking.pyfunc_model")
    # MLflow shows its type-hint advice once per process ("once" filter); forget what was shown already.
    warnings.onceregistry.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        importlib.reload(module)  # PythonModel.__init_subclass__ judges predict's type hints here
    assert not [str(w.message) for w in caught if "type hint" in str(w.message).lower()]
