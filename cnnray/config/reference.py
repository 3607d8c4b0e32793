"""A generated reference of every config key: dotted path, type, default and description."""

from __future__ import annotations

import inspect
from typing import Any

from pydantic import BaseModel

from cnnray.config.schema import Config


def _rows(model: type[BaseModel], prefix: str) -> list[tuple[str, str, str, str]]:
    rows = []
    source = inspect.getsource(model)
    for name, field in model.model_fields.items():
        ann: Any = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows += _rows(ann, f"{prefix}{name}.")
            continue
        default = field.default_factory() if field.default_factory else field.default
        type_text = str(ann).replace("typing.", "").replace("<class '", "").replace("'>", "")
        comment = ""
        for line in source.splitlines():
            if line.strip().startswith(f"{name}:") and "#" in line:
                comment = line.split("#", 1)[1].strip()
        rows.append((prefix + name, type_text, repr(default), comment))
    return rows


def key_reference() -> str:
    """Every key of the config tree, one per line."""
    rows = _rows(Config, "")
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k:<{width}}  {t}  = {d}" + (f"  # {c}" if c else "") for k, t, d, c in rows)
