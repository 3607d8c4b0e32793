"""Model URIs the commands accept, parsed without MLflow: models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/PATH."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cnnray.errors import UserInputError

FORMS = "models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/model"
_ALIAS = re.compile(r"^models:/([^/@]+)@([A-Za-z0-9_.\-]+)$")
_VERSION = re.compile(r"^models:/([^/@]+)/(\d+)$")
_RUN = re.compile(r"^runs:/([0-9a-fA-F]{8,64})/(.+)$")


@dataclass(frozen=True)
class ModelRef:
    """A parsed model URI: a registered name with an alias or a version, or a run's logged model."""

    uri: str
    name: str | None = None
    alias: str | None = None
    version: str | None = None
    run_id: str | None = None
    path: str | None = None


def parse_model_uri(uri: str) -> ModelRef:
    """Parse `uri`; UserInputError naming the accepted forms when it is none of them."""
    if m := _ALIAS.match(uri):
        return ModelRef(uri, name=m[1], alias=m[2])
    if m := _VERSION.match(uri):
        return ModelRef(uri, name=m[1], version=m[2])
    if m := _RUN.match(uri):
        return ModelRef(uri, run_id=m[1], path=m[2].strip("/"))
    raise UserInputError(f"--model {uri!r} is not a model URI; use {FORMS}")
