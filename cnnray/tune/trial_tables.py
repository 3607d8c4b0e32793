"""A search for people: the trials table (console, MLflow artifact; the best N trials), its CSV (every trial),
the final summary, and the parent run's plots (best-so-far curve, the metric against each searched parameter
with the best N highlighted, the best N trials as bars)."""

from __future__ import annotations

import io
import json
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnray.run.cost import format_hours
from cnnray.tune.cost import cost_rows, format_search_cost

if TYPE_CHECKING:
    from cnnray.tune.results import TrialOutcome
    from cnnray.tune.space import SearchSpace


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def ranked(outcomes: list[TrialOutcome], mode: str) -> list[TrialOutcome]:
    """Trials best first by their best metric (mode max/min); trials without a metric last, in trial order."""
    scored = sorted((o for o in outcomes if o.best is not None), key=lambda o: o.best, reverse=mode == "max")
    return scored + [o for o in outcomes if o.best is None]


def top_trials(outcomes: list[TrialOutcome], mode: str, n: int) -> list[TrialOutcome]:
    """The n best trials that reported the metric, best first."""
    return [o for o in ranked(outcomes, mode) if o.best is not None][:n]


def trial_rows(outcomes: list[TrialOutcome], keys: list[str], metric: str) -> list[dict[str, Any]]:
    """One flat dict per trial: id, status, best metric, epochs, then each searched key ('' when inactive)."""
    rows = []
    for o in outcomes:
        row: dict[str, Any] = {"trial_id": o.trial_id, "status": o.status, f"best_{metric}": o.best,
                               "epochs_run": o.epochs_run, "trial_epochs": o.reports}
        row.update({k: o.params.get(k, "") for k in keys})
        if o.restored_from:
            row["restored_from"] = o.restored_from
        rows.append(row)
    return rows


def _frame(rows: list[dict[str, Any]], missing: str):
    """The rows as a DataFrame of formatted strings, columns in first-seen order, `missing` for None/absent."""
    # deferred (heavy import): pandas
    import pandas as pd

    fields = list(dict.fromkeys(k for r in rows for k in r))
    cells = [{k: _fmt(v) for k, v in r.items() if v is not None} for r in rows]
    return pd.DataFrame(cells, columns=fields, dtype=object).fillna(missing)


def trials_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV text."""
    return _frame(rows, "").to_csv(index=False) if rows else ""


def trials_table(rows: list[dict[str, Any]], top: int | None = None) -> str:
    """The rows as an aligned plain-text table (header, a rule, a line per trial: the first `top`, then a count)."""
    if not rows:
        return "(no trials)"
    if top is not None and len(rows) > top:
        # Hundreds of lines bury the summary; the CSV artifact keeps every trial.
        return (_aligned(rows[:top]) + f"\n... {len(rows) - top} more trials "
                f"(all {len(rows)} in the parent run's trials.csv)")
    return _aligned(rows)


def _aligned(rows: list[dict[str, Any]]) -> str:
    """The rows as header, dashed rule and one line each, columns aligned."""
    # deferred (heavy import): rich
    from rich.box import Box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    frame = _frame(rows, "-")
    # Two spaces between columns and a dashed rule under the header: plain ASCII, fit for any console or file.
    rule_box = Box("    \n    \n ---\n    \n    \n    \n    \n    \n", ascii=True)
    table = Table(box=rule_box, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), highlight=False)
    for name in frame.columns:
        table.add_column(Text(name), no_wrap=True)
    for values in frame.itertuples(index=False):
        table.add_row(*(Text(v) for v in values))  # Text: a '[...]' value is data, not rich markup
    width = sum(max(len(c), *(len(v) for v in frame[c])) + 3 for c in frame.columns)
    console = Console(file=io.StringIO(), width=width, color_system=None, highlight=False, emoji=False)
    console.print(table)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines())


def cost_table(cost: dict[str, Any], mode: str, top: int | None = None) -> str:
    """What each trial cost, best first (the first `top`): the table under a search's summary and in cost.txt."""
    rows = cost_rows(cost, mode)
    return trials_table(rows, top) if rows else ""


def budget_summary(r: dict[str, Any]) -> str | None:
    """The line that says tune.budget_device_hours ended the search (None: it did not)."""
    cost = r.get("cost") or {}
    if r.get("end_reason") != "budget" or cost.get("budget_device_hours") is None:
        return None
    by_budget = sum(t["stopped_by"] == "budget" for t in cost.get("trials", []))
    idle = sum(t["epochs"] == 0 and t["status"] != "failed" for t in cost.get("trials", []))
    return (f"tune.budget_device_hours={cost['budget_device_hours']:g} ended the search: "
            f"{format_hours(float(cost.get('device_hours', 0.0)))} device-hours spent; {by_budget} trials stopped "
            f"at an epoch boundary by it" + (f", {idle} never trained" if idle else ""))


def format_tune_summary(r: dict[str, Any]) -> str:
    """What a person reads after `cnnray tune`."""
    lines = [f"search {r['name']} {r['status']} in {r.get('wall_seconds', 0):.0f}s: {r.get('num_trials', 0)} trials "
             f"({r.get('counts', {})}), {r.get('trial_epochs', 0)} trial-epochs"]
    if r.get("table"):
        lines.append(r["table"])
    if r.get("cost"):
        if r.get("cost_table"):
            lines.append("cost per trial:\n" + r["cost_table"])
        lines.append(format_search_cost(r["cost"], r.get("scheduler", "trial")))
    o = r.get("trial_overhead")
    if o:
        p95 = f", p95 {o['p95_s']:.2f}s" if "p95_s" in o else ""
        lines.append(f"per-trial overhead (wall time minus its epochs): median {o['median_s']:.2f}s{p95}, max "
                     f"{o['max_s']:.1f}s over {o['trials']} trials; {o['trials_per_minute']:.1f} trials/min")
    best = r.get("best")
    if best:
        lines.append(f"best trial {best['trial_id']}: {r['metric']} {best['value']:.4f}  params {json.dumps(best['params'])}")
    if r.get("version"):
        lines.append(f"registered {r['registered_name']} version {r['version']}"
                     + (f" as @{r['alias']}" if r.get("alias") else "") + f"  ({r['model_uri']})")
    if budget_summary(r):
        lines.append(budget_summary(r))
    if r.get("end_reason") == "disk_full":
        lines.append(f"{r['end_reason_detail']}: the search stopped there; the best trials kept their checkpoints")
    if r.get("stopped_by") == "time_budget":
        lines.append(f"the time budget (tune.time_budget_s) ended the search after {r.get('wall_seconds', 0):.0f}s; "
                     "trials still running then were stopped")
    if r["status"] == "KILLED":
        lines.append(f"interrupted: continue with  cnnray tune --resume {r['name']}")
    if r.get("error"):
        lines.append(f"error: {r['error']}")
    return "\n".join(lines)


def _pyplot():
    # deferred (heavy import): matplotlib
    import matplotlib

    matplotlib.use("Agg")  # headless
    # deferred (heavy import): matplotlib
    import matplotlib.pyplot as plt

    return plt


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
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    if points:
        ax.step([p[0] for p in points], [p[1] for p in points], where="post")
    ax.set_title(f"search progress: best {metric} found so far ({'higher' if mode == 'max' else 'lower'} is better)",
                 fontsize=9)
    ax.set_xlabel("trial-epochs spent (all trials, in the order they were reported)")
    ax.set_ylabel(f"best {metric} so far")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _label(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _x_axis(ax: Any, p: Any) -> Callable[[Any], float]:
    """Set up a panel's x axis for a searched key; returns where a sampled value goes on it."""
    # deferred (heavy import): matplotlib
    from matplotlib.ticker import NullFormatter

    if p.kind == "choice":
        labels = [_label(v) for v in p.values]
        index = {label: i for i, label in enumerate(labels)}
        ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=7)
        ax.set_xlim(-0.5, len(labels) - 0.5)
        return lambda v: index.get(_label(v), -1)
    if p.kind == "loguniform":
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on short ranges
    ax.set_xlim(p.low, p.high)  # the whole searched range, not just what was sampled
    return lambda v: v


# Hundreds of trials: the rest stay small and faint so the best stand out.
OTHER_STYLE = {"s": 8, "color": "0.6", "alpha": 0.35, "linewidths": 0, "zorder": 2}
TOP_STYLE = {"s": 28, "color": "tab:orange", "edgecolors": "black", "linewidths": 0.5, "zorder": 3}


def plot_metric_vs_params(outcomes: list[TrialOutcome], space: SearchSpace, metric: str, path: str | Path, *,
                          mode: str = "max", top: int = 20) -> Path:
    """One panel per searched key: each trial's best metric at its value, the `top` best highlighted."""
    # deferred (heavy import): matplotlib
    from matplotlib.lines import Line2D

    plt = _pyplot()
    best = top_trials(outcomes, mode, top)
    best_ids = {o.trial_id for o in best}
    others = [o for o in outcomes if o.best is not None and o.trial_id not in best_ids]
    keys = list(space.params)
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    rng = random.Random(0)
    for ax, key in zip(axes.flat, keys):
        to_x = _x_axis(ax, space.params[key])
        # Spread a category's trials sideways, or hundreds of them stack into one line.
        jitter = 0.15 if space.params[key].kind == "choice" else 0.0
        for group, style in ((others, OTHER_STYLE), (best, TOP_STYLE)):
            pts = [(to_x(o.params[key]) + rng.uniform(-jitter, jitter), o.best) for o in group if key in o.params]
            ax.scatter([x for x, _ in pts], [y for _, y in pts], **style)
        ax.set_xlabel(key, fontsize=8)
        ax.set_ylabel(f"best {metric}", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    handles = [Line2D([], [], marker="o", linestyle="", markersize=6, markerfacecolor=TOP_STYLE["color"],
                      markeredgecolor="black", label=f"top {len(best)} by {metric}"),
               Line2D([], [], marker="o", linestyle="", markersize=4, color=OTHER_STYLE["color"],
                      alpha=OTHER_STYLE["alpha"], label=f"other trials ({len(others)})")]
    axes.flat[0].legend(handles=handles, fontsize=7, loc="best")
    fig.suptitle(f"each trial's best {metric} against the value it sampled", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _short(trial_id: str, width: int = 16) -> str:
    return trial_id if len(trial_id) <= width else trial_id[:6] + ".." + trial_id[-(width - 8):]


def plot_top_trials(outcomes: list[TrialOutcome], metric: str, mode: str, n: int, path: str | Path) -> Path:
    """The n best trials' best metric as horizontal bars, best at the top, labelled by trial id."""
    plt = _pyplot()
    best = top_trials(outcomes, mode, n)
    fig, ax = plt.subplots(figsize=(6, 1.2 + 0.28 * max(len(best), 1)))
    if best:
        values = [o.best for o in best]
        ax.barh(range(len(best)), values, color="tab:orange", height=0.7)
        ax.set_yticks(range(len(best)), [_short(o.trial_id) for o in best], fontsize=7)
        ax.invert_yaxis()
        lo, hi = min(values), max(values)
        pad = 0.15 * (hi - lo) or 0.05 * abs(hi) or 0.05
        # The best trials are often close: zoom on their range, or every bar looks the same length.
        ax.set_xlim(lo - pad, hi + pad)
        for i, v in enumerate(values):
            ax.annotate(f"{v:.4g}", (v, i), xytext=(2, 0), textcoords="offset points", va="center", fontsize=6)
    else:
        ax.text(0.5, 0.5, f"no trial reported {metric}", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(f"top {len(best)} of {len(outcomes)} trials by {metric} ({'higher' if mode == 'max' else 'lower'} "
                 "is better)", fontsize=9)
    ax.set_xlabel(f"best {metric}")
    ax.set_ylabel("trial")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
