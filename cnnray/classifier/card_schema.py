"""The pydantic schema of card.json: every field checked on load, every problem reported with its key path.

A card is written by cnnray but read back from a registry anyone can write to; checking it as a whole
turns a card that cannot describe a network into one UserInputError listing what is wrong, instead of a
KeyError or a ValueError from deep inside model construction.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from cnnray.errors import InvalidCardError
from cnnray.models import list_models, model_options


def _problems(found: dict[str, str]) -> None:
    """Raise the problems of one field as a single error; `format_errors` spreads them over their sub-paths."""
    if found:
        detail = "; ".join(f"{k}: {v}" for k, v in found.items())
        raise PydanticCustomError("card_field", "{detail}", {"detail": detail, "problems": found})


class InputSchema(BaseModel):
    """card.json `input`: the contract images are prepared to."""

    # Unknown keys are ignored, as the hand-written reader always did: a card may carry notes.
    model_config = ConfigDict(extra="ignore")

    image_size: int = Field(gt=0)
    channels: int = Field(gt=0)
    # Declared before mean and std: their validator reads them (a field sees only those before it).
    normalize: bool = True
    mean: list[float] = Field(min_length=1)
    std: list[float] = Field(min_length=1)
    resize: Literal["pil", "tensor"] = "pil"

    @field_validator("mean", "std")
    @classmethod
    def _fit_the_channels(cls, values: list[float], info: ValidationInfo) -> list[float]:
        channels = info.data.get("channels")
        # One value broadcasts over every channel (BatchTransform views them as [1, -1, 1, 1]).
        if channels is not None and len(values) not in (1, channels):
            want = "1 value" if channels == 1 else f"1 or {channels} values"
            raise PydanticCustomError("card_stats", "{n} values for {c} channel(s), expected {want}",
                                      {"n": len(values), "c": channels, "want": want})
        if not all(math.isfinite(v) for v in values):
            raise PydanticCustomError("card_stats", "values must be finite")
        if info.field_name == "std" and info.data.get("normalize", True) and any(v <= 0 for v in values):
            raise PydanticCustomError("card_stats", "must be positive to normalize with, got {v}", {"v": values})
        return values


class CardSchema(BaseModel):
    """card.json as a whole (formats 1 and 2; fields added in format 2 default as in format 1)."""

    # protected_namespaces=(): `model_kwargs` is the card's key, not pydantic's namespace.
    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    format: str
    format_version: int = Field(ge=1)
    # Declared before model_kwargs: its validator checks the options against these once they are valid.
    architecture: str
    class_names: list[str] = Field(min_length=1)
    input: InputSchema
    model_kwargs: dict[str, Any]
    lineage: dict[str, str] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    weights_sha256: str = ""
    cnnray_version: str = ""
    compression: dict[str, Any] | None = None  # null in a card means "not compressed", as {} does

    @field_validator("architecture")
    @classmethod
    def _registered(cls, name: str) -> str:
        names = list_models()
        if name not in names:
            raise PydanticCustomError("card_architecture", "{name} is not a registered model (valid names: {valid})",
                                      {"name": repr(name), "valid": ", ".join(names)})
        return name

    @field_validator("model_kwargs")
    @classmethod
    def _buildable(cls, kwargs: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # Fields that failed their own checks are absent from info.data: only valid ones are compared.
        found: dict[str, str] = {}
        names, inp, arch = info.data.get("class_names"), info.data.get("input"), info.data.get("architecture")
        n = kwargs.get("num_classes")
        if "num_classes" not in kwargs:
            found["num_classes"] = "missing (the number of outputs of the network)"
        elif not isinstance(n, int) or isinstance(n, bool) or n < 1:
            found["num_classes"] = f"must be a positive integer, got {n!r}"
        elif names is not None and n != len(names):
            found["num_classes"] = f"{n} does not match the {len(names)} class_names"
        c = kwargs.get("in_chans")
        if c is not None and inp is not None and c != inp.channels:
            found["in_chans"] = f"{c!r} does not match input.channels {inp.channels}"
        if arch is not None:
            options = model_options(arch)
            for key in sorted(set(kwargs) - set(options)) if options is not None else []:
                found[key] = f"not an option of model {arch!r} (valid options: {', '.join(options)})"
        _problems(found)
        return kwargs


def format_errors(e: ValidationError) -> list[str]:
    """One 'key.path: message' line per problem."""
    out = []
    for err in e.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        sub = (err.get("ctx") or {}).get("problems")
        if isinstance(sub, dict):
            out += [f"{loc}.{k}: {v}" for k, v in sub.items()]
        else:
            out.append(f"{loc or '(card)'}: {err['msg']}")
    return out


def validate_card(d: Any, where: str = "") -> CardSchema:
    """The validated card; InvalidCardError listing every problem (naming `where`, the card's owner)."""
    if not isinstance(d, dict):
        raise InvalidCardError([f"(card): expected a JSON object, got {type(d).__name__}"], where)
    try:
        return CardSchema.model_validate(d)
    except ValidationError as e:
        raise InvalidCardError(format_errors(e), where) from None
