"""`explore`: the CNN tutorial's lessons as figures and numbers, no trained model needed.

Writes one PNG per part, `summary.json` (every number, figures by name) and a `README.md` index into a folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cnnray.config import load_config
from cnnray.insight import figures

PARTS = ("gabor", "convolution", "activations")
FIGURES = {"gabor": "gabor_simple_cells.png", "convolution": "convolution_feature_maps.png",
           "activations": "activations.png"}


def parse_parts(text: str) -> list[str]:
    """'gabor,activations' or 'all' -> the parts in PARTS order; ValueError naming an unknown item and the valid ones."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in items if item not in (*PARTS, "all")]
    if unknown or not items:
        raise ValueError(f"--what {text!r}: unknown item(s) {', '.join(unknown) or '(none given)'}; "
                         f"valid: {', '.join(PARTS)}, all (comma-separated)")
    return list(PARTS) if "all" in items else [p for p in PARTS if p in items]


def check_out_dir(out: str | Path) -> Path:
    """The output folder as a Path; ValueError when it exists and is not a folder."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {str(path)!r} is an existing file, not a folder")
    return path


def _digits(count: int) -> Any:
    """The first `count` validation digits of the built-in set, (N, 1, 32, 32) floats in [0, 1]."""
    # deferred (heavy import): torch, pyarrow, PIL
    from cnnray.data import load_arrays

    _, _, val_x, _ = load_arrays(load_config(overrides=["data.image_size=32"]).data)
    return val_x[:count].float() / 255.0


def _jsonable(result: dict[str, Any], drop: tuple[str, ...]) -> dict[str, Any]:
    # Tensors are for the figures; the summary keeps numbers, and no inf/NaN slips into JSON unseen.
    out = {k: v for k, v in result.items() if k not in drop}
    bad = [k for k, v in out.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise RuntimeError(f"non-finite result(s): {', '.join(bad)}")
    return out


def _readme(summary: dict[str, Any]) -> str:
    lines = ["# cnnray explore", "", "Figures written by `cnnray explore`; every number is in `summary.json`.", ""]
    if "gabor" in summary:
        g = summary["gabor"]
        lines.append(f"- [{FIGURES['gabor']}]({FIGURES['gabor']}): Gabor simple cells, {len(g['orientations_deg'])} "
                     f"orientations on a grating and a digit; preferred {g['preferred_deg']:.1f}° for a grating at "
                     f"{g['true_deg']:.1f}°.")
    if "convolution" in summary:
        c = summary["convolution"]
        lines.append(f"- [{FIGURES['convolution']}]({FIGURES['convolution']}): {len(c['kernel_names'])} classic 3x3 "
                     f"filters on digits; explicit conv vs F.conv2d max |diff| {c['max_abs_diff']:.1e}, F.conv2d "
                     f"{c['speed_ratio']:.1f}x faster ({c['threads']} thread).")
    if "activations" in summary:
        a = summary["activations"]["rows"]
        lines.append(f"- [{FIGURES['activations']}]({FIGURES['activations']}): {', '.join(a)}: curves, gradients, "
                     f"zero-gradient fractions and throughput.")
    return "\n".join(lines) + "\n"


def explore(out: str | Path, parts: list[str], repeats: int = 10, threads: int = 1) -> dict[str, Any]:
    """Run the chosen parts, write their figures, summary.json and README.md into `out`; return the summary."""
    # deferred (heavy import): torch
    import torch


    out = check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"out": str(out.resolve()), "parts": parts, "repeats": repeats,
                               "torch": torch.__version__, "figures": {}}
    digits = _digits(64) if {"gabor", "convolution"} & set(parts) else None
    if "gabor" in parts:
        # deferred (heavy import): torch
        from cnnray.insight.gabor import simple_cells

        result = simple_cells(digits[0, 0])
        figures.plot_gabor(result, out / FIGURES["gabor"])
        summary["gabor"] = _jsonable(result, ("kernels", "grating", "digit", "grating_maps", "digit_maps"))
    if "convolution" in parts:
        # deferred (heavy import): torch
        from cnnray.insight.convolution import compare_convolutions

        result = compare_convolutions(digits, repeats, threads)
        figures.plot_feature_maps(result, out / FIGURES["convolution"])
        summary["convolution"] = _jsonable(result, ("kernels", "images", "maps"))
    if "activations" in parts:
        # deferred (heavy import): torch
        from cnnray.insight.activations import compare_activations

        result = compare_activations(repeats, threads)
        figures.plot_activations(result, out / FIGURES["activations"])
        summary["activations"] = _jsonable(result, ("grid", "values", "grads"))
    summary["figures"] = {p: FIGURES[p] for p in parts}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
    (out / "README.md").write_text(_readme(summary))
    return summary
