"""What a search spent, as plain arithmetic over its trials' epoch reports (no Ray, no MLflow): each trial's own
device-seconds, images and time (`SearchSpend`, fed while the search runs for tune.budget_device_hours, and
again from the results at its end), the search's totals, its metric per device-hour, and what the trial
scheduler saved against running every trial to tune.max_epochs.

A trial's reports carry its run's cumulative figures (`cnnray.run.cost`), and a checkpoint's meta carries the
totals of the run that wrote it: a trial restored from another trial's checkpoint (a PBT exploit) reports that
trial's spending as part of its own. So a restore from another trial starts a segment whose baseline is what
the source had spent at that checkpoint (its report of that epoch); a restart from the trial's own
checkpoint (a crash, a resumed search) just continues its figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cnnray.config.schema import PriceSection
from cnnray.run.cost import EPOCH_KEY, METRIC_PREFIX, CostTotals, device_hours, format_hours, money

if TYPE_CHECKING:
    from cnnray.tune.results import TrialOutcome

CUMULATIVE = tuple(n for n in CostTotals.names() if n != "epoch_device_s")  # summed over a trial's reports
# A report's keys that place it: Tune's clock, the trial's epoch count, the checkpoint it restored from.
ROW_KEYS = ("timestamp", "epochs_done", "restored_from")


def report_costs(report: Mapping[str, Any]) -> dict[str, float] | None:
    """The cost_* figures of one report (without the prefix), None when it has none (an error report)."""
    if METRIC_PREFIX + "device_s" not in report or report.get(METRIC_PREFIX + "device_s") is None:
        return None
    return {n: float(report.get(METRIC_PREFIX + n) or 0.0) for n in CostTotals.names()}


def _source(restored_from: Any) -> tuple[str, int] | None:
    """("trial id", epochs done) of the checkpoint a report's `restored_from` ("id@epoch") names."""
    if not isinstance(restored_from, str) or "@" not in restored_from:
        return None
    trial_id, _, epoch = restored_from.rpartition("@")
    try:
        return trial_id, int(epoch) + 1
    except ValueError:
        return None


@dataclass
class TrialSpend:
    """One trial's own spending, from its reports in the order it made them."""

    closed: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CUMULATIVE, 0.0))
    base: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CUMULATIVE, 0.0))
    last: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CUMULATIVE, 0.0))
    source: str | None = None
    epoch_costs: list[float] = field(default_factory=list)  # device-seconds of each epoch it trained itself
    final_device_s: float = 0.0  # its last report's cumulative cost_device_s (what its child run shows last)

    def add(self, costs: Mapping[str, float], restored_from: str | None, baseline: Mapping[str, float] | None) -> None:
        """One report; `baseline`: the source trial's figures at the checkpoint this report's trial restored from."""
        if restored_from and restored_from != self.source:
            # A new start from another trial's checkpoint: what this trial spent so far is kept, the source's not.
            for n in CUMULATIVE:
                self.closed[n] += self.last[n] - self.base[n]
            if baseline is not None:
                self.base = {n: float(baseline.get(n, 0.0)) for n in CUMULATIVE}
            else:  # the source's report is unknown: count this epoch alone
                self.base = {n: float(costs[n]) for n in CUMULATIVE}
                self.base["device_s"] -= float(costs["epoch_device_s"])
            self.source = restored_from
        self.last = {n: float(costs[n]) for n in CUMULATIVE}
        self.epoch_costs.append(float(costs["epoch_device_s"]))
        self.final_device_s = float(costs["device_s"])

    def totals(self) -> dict[str, float]:
        """Its own cumulative figures (device_s, cpu_s, gpu_s, wall_s, images, startup_s, ...)."""
        return {n: self.closed[n] + self.last[n] - self.base[n] for n in CUMULATIVE}

    @property
    def device_s(self) -> float:
        return self.totals()["device_s"]

    @property
    def mean_epoch_device_s(self) -> float | None:
        return sum(self.epoch_costs) / len(self.epoch_costs) if self.epoch_costs else None


@dataclass
class SearchSpend:
    """Every trial's spending, fed each report in the order the search received them."""

    trials: dict[str, TrialSpend] = field(default_factory=dict)
    seen: dict[tuple[str, int], dict[str, float]] = field(default_factory=dict)  # (trial, epochs done) -> figures

    def add(self, trial_id: str, report: Mapping[str, Any]) -> bool:
        """Count one report; False when it carries no cost figures."""
        costs = report_costs(report)
        if costs is None:
            return False
        restored_from = report.get("restored_from") or None
        source = _source(restored_from)
        baseline = self.seen.get(source) if source is not None else None
        self.trials.setdefault(trial_id, TrialSpend()).add(costs, restored_from, baseline)
        self.seen[(trial_id, int(report.get("epochs_done") or 0))] = costs
        return True

    @property
    def device_s(self) -> float:
        """Device-seconds spent by every trial so far."""
        return sum(t.device_s for t in self.trials.values())

    @property
    def epochs(self) -> int:
        """Trial-epochs measured so far."""
        return sum(len(t.epoch_costs) for t in self.trials.values())

    @property
    def mean_epoch_device_s(self) -> float | None:
        """The measured mean device-seconds of one trial-epoch (None before the first)."""
        costs = [c for t in self.trials.values() for c in t.epoch_costs]
        return sum(costs) / len(costs) if costs else None

    def totals(self) -> dict[str, float]:
        """The figures summed over the trials."""
        out = dict.fromkeys(CUMULATIVE, 0.0)
        for t in self.trials.values():
            for n, v in t.totals().items():
                out[n] += v
        return out


def spend_of_rows(rows: Iterable[tuple[str, Mapping[str, Any]]]) -> SearchSpend:
    """A SearchSpend from (trial id, report) pairs in any order: counted in report-time order, as they came."""
    spend = SearchSpend()
    for trial_id, report in sorted(rows, key=lambda r: float(r[1].get("timestamp") or 0.0)):
        spend.add(trial_id, report)
    return spend


def spend_of_outcomes(outcomes: Iterable[TrialOutcome]) -> SearchSpend:
    """What the trials of a finished (or interrupted) search spent, from the cost rows of their outcomes."""
    return spend_of_rows((o.trial_id, row) for o in outcomes for row in o.cost_rows)


def too_small_message(budget_h: float, epoch_device_s: float) -> str:
    """Why tune.budget_device_hours cannot buy one trial-epoch, naming the key and the measured cost."""
    return (f"tune.budget_device_hours={budget_h:g} is smaller than one trial-epoch's measured cost "
            f"({format_hours(device_hours(epoch_device_s))} device-hours = {epoch_device_s:.3g} device-seconds): "
            "raise the budget, or make a trial-epoch cheaper (data.image_size, model.width, fewer training images)")


# --- The search's cost, as the result object's "cost".


def _kind(totals: Mapping[str, float]) -> str:
    return "gpu" if totals.get("gpu_s", 0.0) > 0 else "cpu"


def _round(v: float | None, digits: int | None = None) -> float | None:
    """A float for the result; device-hours stay unrounded (small searches spend 1e-5 of one)."""
    if v is None:
        return None
    return float(v) if digits is None else round(float(v), digits)


def search_cost(outcomes: list[TrialOutcome], *, metric: str, mode: str, max_epochs: int, price: PriceSection,
                wall_s: float, budget_device_hours: float | None = None,
                budget_stopped: Iterable[str] = ()) -> dict[str, Any]:
    """Per trial and for the search: device-hours, money (None without tracking.price_per_device_hour), the metric
    per device-hour (max-mode metrics), and the scheduler's saving: for each trial it stopped early,
    (tune.max_epochs - epochs it ran) x its own mean epoch device-seconds. Trials the device budget stopped
    (`budget_stopped`) saved nothing: the budget, not the scheduler, ended them."""
    spend = spend_of_outcomes(outcomes)
    totals = spend.totals()
    kind = _kind(totals)
    by_budget = set(budget_stopped)
    trials, saved_s = [], 0.0
    for o in outcomes:
        ts = spend.trials.get(o.trial_id)
        own = ts.totals() if ts is not None else dict.fromkeys(CUMULATIVE, 0.0)
        hours = device_hours(own["device_s"])
        mean = ts.mean_epoch_device_s if ts is not None else None
        stopped_by = ("budget" if o.trial_id in by_budget else "scheduler") if o.status == "stopped_early" else ""
        saved = 0.0
        if stopped_by == "scheduler" and mean is not None:
            saved = max(0, max_epochs - o.epochs_run) * mean
            saved_s += saved
        trials.append({
            "trial_id": o.trial_id, "status": o.status, "stopped_by": stopped_by,
            "epochs": len(ts.epoch_costs) if ts is not None else 0, "epochs_run": o.epochs_run,
            "device_s": _round(own["device_s"]), "device_hours": _round(hours),
            "mean_epoch_device_s": _round(mean), "images": int(own["images"]), "wall_s": _round(own["wall_s"], 3),
            f"best_{metric}": o.best,
            "metric_per_device_hour": _round(o.best / hours) if mode == "max" and o.best is not None and hours > 0
            else None,
            "saved_device_hours": _round(device_hours(saved)), "money": _round(money(hours, kind, price)),
        })
    hours = device_hours(totals["device_s"])
    best = [o.best for o in outcomes if o.best is not None]
    top = (max(best) if mode == "max" else min(best)) if best else None
    saved_h = device_hours(saved_s)
    out: dict[str, Any] = {
        "device_kind": kind, "metric": metric,
        **{n: _round(v) for n, v in totals.items() if n != "wall_s"},
        "trials_wall_s": _round(totals["wall_s"], 3), "wall_s": round(float(wall_s), 3),
        "device_hours": _round(hours), "money": _round(money(hours, kind, price)),
        "trial_epochs": spend.epochs, "mean_epoch_device_s": _round(spend.mean_epoch_device_s),
        f"best_{metric}": top,
        "metric_per_device_hour": _round(top / hours) if mode == "max" and top is not None and hours > 0 else None,
        "saved_device_hours": _round(saved_h), "saved_money": _round(money(saved_h, kind, price)),
        "saved_fraction": _round(saved_h / (hours + saved_h), 4) if hours + saved_h > 0 else None,
        "budget_device_hours": budget_device_hours, "trials": trials,
    }
    out["images"] = int(totals["images"])
    return out


def cost_metrics(cost: Mapping[str, Any]) -> dict[str, float]:
    """The parent run's cost_* metrics: sums over the trials, the search's own wall clock, the saving."""
    out = {f"cost_{n}": float(cost[n]) for n in CUMULATIVE if n != "wall_s" and cost.get(n) is not None}
    out.update(cost_device_hours=float(cost["device_hours"]), cost_wall_s=float(cost["wall_s"]),
               cost_trial_epochs=float(cost["trial_epochs"]),
               cost_saved_device_hours=float(cost["saved_device_hours"]))
    for key in ("money", "saved_money", "metric_per_device_hour"):
        if cost.get(key) is not None:
            out[f"cost_{key}"] = float(cost[key])
    return out


def cost_tags(cost: Mapping[str, Any]) -> dict[str, str]:
    """Tags for the registered winner: what the whole search cost (money only when priced)."""
    tags = {"cnnray.search_cost_device_hours": f"{float(cost['device_hours']):.6g}"}
    if cost.get("money") is not None:
        tags["cnnray.search_cost_money"] = f"{float(cost['money']):.6g}"
    return tags


def _unit(kind: str) -> str:
    return "GPU-hours" if kind == "gpu" else "CPU-hours"


def cost_rows(cost: Mapping[str, Any], mode: str) -> list[dict[str, Any]]:
    """The per-trial table rows, best first (trials without a metric last), with hours in the kind's unit."""
    metric = cost["metric"]
    unit = "gpu_h" if cost["device_kind"] == "gpu" else "cpu_h"
    rows = []
    scored = sorted((t for t in cost["trials"] if t.get(f"best_{metric}") is not None),
                    key=lambda t: t[f"best_{metric}"], reverse=mode == "max")
    for t in scored + [t for t in cost["trials"] if t.get(f"best_{metric}") is None]:
        row = {"trial_id": t["trial_id"], "status": t["status"], "trial_epochs": t["epochs"],
               unit: t["device_hours"], "device_s_per_epoch": t["mean_epoch_device_s"], "images": t["images"],
               f"best_{metric}": t[f"best_{metric}"]}
        if mode == "max":
            row[f"{metric}_per_{unit}"] = t["metric_per_device_hour"]
        row[f"saved_{unit}"] = t["saved_device_hours"] if t["stopped_by"] == "scheduler" else None
        if t["stopped_by"] == "budget":
            row["stopped_by"] = "budget"
        if t.get("money") is not None:
            row["money"] = t["money"]
        rows.append(row)
    return rows


def format_search_cost(cost: Mapping[str, Any], scheduler: str) -> str:
    """Lines for people: the search's device-hours (and money), metric per device-hour, the scheduler's saving."""
    kind, metric = str(cost["device_kind"]), cost["metric"]
    unit = _unit(kind)
    line = (f"search cost: {format_hours(float(cost['device_hours']))} {unit} ({float(cost['device_s']):.1f} "
            f"device-s over {cost['trial_epochs']} trial-epochs, {int(cost['images'])} images, "
            f"{float(cost['wall_s']):.0f}s wall)")
    if cost.get("money") is not None:
        line += f" = {float(cost['money']):.4g} at tracking.price_per_device_hour.{kind}"
    lines = [line]
    if cost.get("metric_per_device_hour") is not None:
        lines.append(f"best {metric} {float(cost[f'best_{metric}']):.4f} for "
                     f"{format_hours(float(cost['device_hours']))} {unit}: "
                     f"{float(cost['metric_per_device_hour']):.4g} {metric} per {unit[:-1]}")
    saved = float(cost.get("saved_device_hours") or 0.0)
    n = sum(t["stopped_by"] == "scheduler" for t in cost["trials"])
    if not n:
        lines.append(f"the {scheduler} scheduler stopped no trial early: it saved nothing against running every "
                     "trial to the end")
        return "\n".join(lines)
    saving = (f"the {scheduler} scheduler saved {format_hours(saved)} {unit} against running every trial to "
              f"the end ({n} trials stopped early")
    if cost.get("saved_fraction") is not None:
        saving += f", {100 * float(cost['saved_fraction']):.0f}% of that full cost"
    saving += ")"
    if cost.get("saved_money") is not None:
        saving += f" = {float(cost['saved_money']):.4g}"
    lines.append(saving)
    return "\n".join(lines)
