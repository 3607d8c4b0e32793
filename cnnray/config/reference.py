"""A generated reference of every config key: dotted path, type, default and description."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from cnnray.config.schema import Config


def _rows(model: type[BaseModel], prefix: str) -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, description) of every leaf field under `model`."""
    rows = []
    for name, field in model.model_fields.items():
        ann: Any = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows += _rows(ann, f"{prefix}{name}.")
            continue
        default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        type_text = str(ann).replace("typing.", "").replace("<class '", "").replace("'>", "")
        rows.append((prefix + name, type_text, repr(default), field.description or ""))
    return rows


def key_rows() -> list[tuple[str, str, str, str]]:
    """Every leaf key of the config tree as (dotted key, type, default, description)."""
    return _rows(Config, "")


def key_reference() -> str:
    """Every key of the config tree, one per line: key, type, default and `# description`."""
    rows = key_rows()
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k:<{width}}  {t}  = {d}" + (f"  # {c}" if c else "") for k, t, d, c in rows)
