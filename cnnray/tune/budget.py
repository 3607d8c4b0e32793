"""tune.budget_device_hours on Ray Tune: the search stops starting trials (and trial-epochs) once what its trials
spent, plus one more trial-epoch for the trial that just reported and one for each other running trial (they
finish the epoch they are in), would exceed the budget. The rule runs in the driver, at each report, on the
trials' own figures (`cnnray.tune.cost.SearchSpend`) and their measured mean cost of a trial-epoch.

How it stops, through Tune's public API only:
- `BudgetStopper` (a Tune `Stopper`): from the report that spends the budget on, every trial is stopped at its next
  report, i.e. at an epoch boundary, with that epoch's checkpoint. `stop_all()` turns True once no trial that was
  running then is still running: Tune then ends the search (trials not started yet never start).
- A trial that Tune starts in between (a slot freed by a stopped trial) reads the marker file the driver wrote
  under the search (`plan.BUDGET_FILE`) and waits, before its MLflow run or any epoch, until the stopper ends
  the search (returning without a metric would be a Tune error); it is dropped from the outcomes.
- `BudgetWatch` (a Tune `Callback`): which trials are running, at the start of each of Tune's steps.

A budget smaller than the first measured trial-epoch cannot buy a single epoch: that search stops everything
at once and `cnnray tune` exits 2 (a resumed search whose trials reported costs is checked before any work).

Tune pickles its stopper and callbacks with the Tuner, and `Tuner.restore` uses those copies; so both hold only
a key, and the budget's state lives in this process (`register`), where a resumed search registers it anew.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ray.tune import Callback, Stopper

from cnnray.run.cost import device_hours, format_hours
from cnnray.tune.cost import SearchSpend, too_small_message


@dataclass
class DeviceBudget:
    """The budget's state in the driver: what was spent, which trials run, which it stopped, why it ended."""

    hours: float
    spend: SearchSpend = field(default_factory=SearchSpend)
    on_exhausted: Callable[[dict[str, Any]], None] | None = None  # writes the marker the trials read
    on_line: Callable[[str], None] = print
    exhausted: bool = False
    too_small: str | None = None  # the message, when the first trial-epoch cost more than the whole budget
    running: set[str] = field(default_factory=set)  # trials Tune had running at the start of its current step
    # Running when the budget was spent (the reporter too), until Tune has ended them: Tune's stop-all would
    # skip the end of a trial whose stop waits on its checkpoint, and the trial would look interrupted.
    waiting: set[str] = field(default_factory=set)
    stopped: set[str] = field(default_factory=set)  # trials this budget stopped
    spent_at_end_h: float | None = None

    def on_result(self, trial_id: str, result: dict[str, Any]) -> bool:
        """One trial's epoch report; True: stop that trial now (its epoch is done and checkpointed)."""
        self.spend.add(trial_id, result)
        if self.exhausted:
            self.stopped.add(trial_id)
            return True
        epoch = result.get("cost_epoch_device_s")
        mean = self.spend.mean_epoch_device_s
        if epoch is None or mean is None:
            return False
        if self.spend.epochs == 1 and device_hours(float(epoch)) > self.hours:
            self.too_small = too_small_message(self.hours, float(epoch))
            self._exhaust(trial_id, set())  # the command says why when it exits
            return True
        others = self.running - {trial_id}
        projected = self.spend.device_s + mean * (1 + len(others))
        if device_hours(projected) <= self.hours:
            return False
        self._exhaust(trial_id, others | {trial_id})
        self.on_line(f"tune.budget_device_hours={self.hours:g}: {format_hours(device_hours(self.spend.device_s))} "
                     f"device-hours spent, and one more trial-epoch (~{format_hours(device_hours(mean))} each) for "
                     f"this trial and the {len(others)} still running would exceed it: no new trials or epochs; "
                     "running trials stop after their current epoch")
        return True

    def _exhaust(self, trial_id: str, waiting: set[str]) -> None:
        self.exhausted, self.waiting = True, set(waiting)
        self.stopped.add(trial_id)
        self.spent_at_end_h = device_hours(self.spend.device_s)
        if self.on_exhausted is not None:
            self.on_exhausted({"budget_device_hours": self.hours, "spent_device_hours": self.spent_at_end_h,
                               "mean_epoch_device_s": self.spend.mean_epoch_device_s, "too_small": self.too_small})

    def step(self, statuses: dict[str, str]) -> None:
        """At the start of each of Tune's steps: trial id -> status of every trial."""
        self.running = {t for t, s in statuses.items() if s == "RUNNING"}
        # A waiting trial that Tune paused (PBT, HyperBand) sits at an epoch boundary already.
        self.waiting = {t for t in self.waiting if statuses.get(t) == "RUNNING"}

    def ended(self, trial_id: str) -> None:
        """Tune ended a trial (its callbacks ran)."""
        self.waiting.discard(trial_id)

    def stop_all(self) -> bool:
        """Whether Tune should end the search now: spent, and every trial running then has ended."""
        return self.exhausted and (self.too_small is not None or not self.waiting)


_LIVE: dict[str, DeviceBudget] = {}  # search path -> its budget, in the driver


def register(key: str, budget: DeviceBudget) -> None:
    """Make `budget` the state behind every stopper and watch holding `key` (also their restored copies)."""
    _LIVE[key] = budget


def unregister(key: str) -> None:
    """The search is over."""
    _LIVE.pop(key, None)


def stopped_by_budget(key: str, trial_id: str) -> bool:
    """Whether the registered budget of search `key` stopped this trial (picklable with functools.partial)."""
    budget = _LIVE.get(key)
    return budget is not None and trial_id in budget.stopped


class BudgetStopper(Stopper):
    """Tune's stopper for the registered budget of one search (a key only: Tune pickles it with the Tuner)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        budget = _LIVE.get(self.key)
        return budget.on_result(trial_id, result) if budget is not None else False

    def stop_all(self) -> bool:
        budget = _LIVE.get(self.key)
        return budget.stop_all() if budget is not None else False


class BudgetWatch(Callback):
    """Which trials Tune has running, for the registered budget of one search."""

    def __init__(self, key: str) -> None:
        self.key = key

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        budget = _LIVE.get(self.key)
        if budget is not None:
            budget.step({t.trial_id: t.status for t in trials})

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        budget = _LIVE.get(self.key)
        if budget is not None:
            budget.ended(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.on_trial_complete(iteration, trials, trial, **info)
