"""The options of `cnnray inspect`, checked before any model is loaded: parts, output folder, layer names."""

from __future__ import annotations

from pathlib import Path

PARTS = ("filters", "featuremaps", "attention", "gradcam")


def parse_what(text: str) -> tuple[list[str], bool]:
    """'filters,gradcam' or 'all' -> (parts in PARTS order, whether attention was named explicitly); ValueError else."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in items if item not in (*PARTS, "all")]
    if unknown or not items:
        raise ValueError(f"--what {text!r}: unknown item(s) {', '.join(unknown) or '(none given)'}; "
                         f"valid: {', '.join(PARTS)}, all (comma-separated)")
    parts = list(PARTS) if "all" in items else [p for p in PARTS if p in items]
    # Named attention on a model without CBAM is an error; `all` only skips it.
    return parts, "attention" in items


def parse_layers(text: str | None) -> list[str] | None:
    """'conv1,layer1' -> ['conv1', 'layer1']; None (the default layers) when not given."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError("--layers: give at least one module name (comma-separated)")
    return names


def check_layers(names: list[str], valid: list[str]) -> None:
    """ValueError naming the unknown module names and every valid one."""
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"--layers: unknown module name(s) {', '.join(unknown)}; valid names: {', '.join(valid)}")


def default_out(name: str | None, version: str | None) -> Path:
    """./cnnray_inspect/NAME-vVERSION."""
    return Path("cnnray_inspect") / f"{name}-v{version}"
