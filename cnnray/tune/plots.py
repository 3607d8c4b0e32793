"""Search plots for the parent run: best-so-far curve and the metric against each searched parameter."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from cnnray.tune.outcome import TrialOutcome  # noqa: E402
from cnnray.tune.space import SearchSpace  # noqa: E402


def best_so_far(outcomes: list[TrialOutcome], mode: str) -> list[tuple[int, float]]:
    """(trial-epochs spent, best metric so far) over every epoch of every trial, in time order."""
    events = sorted((t, v) for o in outcomes for t, v in o.history)
    out, best = [], None
    for i, (_, v) in enumerate(events, start=1):
        best = v if best is None else (max(best, v) if mode == "max" else min(best, v))
        out.append((i, best))
    return out


def plot_best_so_far(outcomes: list[TrialOutcome], metric: str, mode: str, path: str | Path) -> Path:
    """Best metric so far against the trial-epochs spent."""
    points = best_so_far(outcomes, mode)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    if points:
        ax.step([p[0] for p in points], [p[1] for p in points], where="post")
    ax.set_xlabel("trial-epochs spent")
    ax.set_ylabel(f"best {metric} so far")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_metric_vs_params(outcomes: list[TrialOutcome], space: SearchSpace, metric: str, path: str | Path) -> Path:
    """One panel per searched key: each trial's best metric at its value (categories on a discrete axis)."""
    keys = list(space.params)
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        p = space.params[key]
        pts = [(o.params[key], o.best) for o in outcomes if key in o.params and o.best is not None]
        if p.kind == "choice":
            labels = [json.dumps(v) if isinstance(v, (list, dict)) else str(v) for v in p.values]
            index = {label: i for i, label in enumerate(labels)}
            xs = [index.get(json.dumps(v) if isinstance(v, (list, dict)) else str(v), -1) for v, _ in pts]
            ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=7)
            ax.set_xlim(-0.5, len(labels) - 0.5)
        else:
            xs = [v for v, _ in pts]
            if p.kind == "loguniform":
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on short ranges
            ax.set_xlim(p.low, p.high)  # the whole searched range, not just what was sampled
        ax.scatter(xs, [b for _, b in pts], s=18)
        ax.set_title(key, fontsize=9)
        ax.set_ylabel(metric, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
