"""Checkpoints kept by rank, not by trial (`tune.keep_checkpoints_top_k`): a search's disk stays bounded.

Tune keeps each trial's latest checkpoint forever (all of them under PBT), so a search's folder grows with
every trial: 500 trials of a 300 MB model would need 150 GB. This driver callback deletes, as each trial
ends, the checkpoints of every ended trial that is not among the best K by the search metric. Kept:
- the K best ended trials (an errored trial too: `--resume` retries it from its checkpoint),
- the best trial that did not fail (its checkpoint becomes the registered version) even if K errored ones
  outrank it,
- every trial still running or paused, and any checkpoint such a trial points at (PBT hands a paused trial
  the checkpoint of the trial it clones; PBT clones only from trials that are still running).

A running trial keeps only its latest checkpoint (it carries the trial's best weights too), except under
PBT, which may clone an older one. This callback, not Tune's num_to_keep, deletes them: with num_to_keep
Tune saves its whole experiment state at every trial checkpoint (so the state never names a deleted one),
which makes a search of N trials write O(N^2) bytes; here the state is saved on Tune's own period and a
resumed trial whose saved checkpoint is gone restarts from its newest one on disk.

Deleted checkpoints are also dropped from Tune's bookkeeping, so a pruned trial that must run again (an
errored one on `--resume`) starts over instead of failing on a missing folder; the first step of a resumed
search does the same for any pointer the last saved experiment state still had, and says which trials
start over.

Cost: only ended, unpruned trials are ranked at each end (at most K + 1 of them), so a trial's end is O(K)
plus one pass over Tune's trial list.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from ray.tune import Callback

from cnnray.data.uri import open_location
from cnnray.ray_compat import (
    drop_older_checkpoints,
    forget_trial_checkpoints,
    point_trial_at_checkpoint,
    trial_checkpoints,
    upload_trial_file,
)
from cnnray.tune.plan import RESULT_FILE

log = logging.getLogger("cnnray")
TRAIN_RUNS_DIR = "train"  # a Train-run trial's own run folders: <search>/train/<trial_id>-<suffix>


def trial_score(trial: Any, metric: str, mode: str) -> float | None:
    """The trial's best reported value of the search metric (None: never reported a finite one)."""
    value = (trial.metric_analysis.get(metric) or {}).get(mode)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def kept_trials(ended: list[Any], keep: int, metric: str, mode: str,
                statuses: dict[str, str] | None = None) -> set[str]:
    """Trial ids among `ended` whose checkpoints stay: the `keep` best, plus the best one that did not fail.
    `statuses`: final statuses Tune has not applied yet (trial id -> TERMINATED / ERROR)."""
    scored = [(s, t) for t in ended if (s := trial_score(t, metric, mode)) is not None]
    scored.sort(key=lambda p: p[0], reverse=mode == "max")
    kept = {t.trial_id for _, t in scored[:keep]}
    ok = [t for _, t in scored if (statuses or {}).get(t.trial_id, t.status) != "ERROR"]
    if ok:
        kept.add(ok[0].trial_id)
    return kept


class CheckpointRetention(Callback):
    """Deletes the checkpoints of ended trials outside the best `keep` (see the module docstring)."""

    def __init__(self, keep: int, metric: str, mode: str, experiment_path: str,
                 on_line: Callable[[str], None] = print, *, history: bool = False) -> None:
        self.keep, self.metric, self.mode = keep, metric, mode
        self.history = history  # keep a running trial's older checkpoints too (PBT may clone one of them)
        self.experiment_path = experiment_path.rstrip("/")
        self.on_line = on_line
        self.pruned: set[str] = set()  # trial ids whose checkpoints are gone (ids only: flat memory)
        self.ending: dict[str, str] = {}  # trial id -> the status it ended with, until Tune's own status says so
        self._restore_checked = False

    # --- Tune callback hooks (driver).

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if self._restore_checked:
            return
        self._restore_checked = True
        self._forget_missing(trials)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.checkpoint is not None:
            # A restart: Tune's JSON logger (after this callback) reloads result.json from storage; with no forced
            # experiment sync per checkpoint (see above), the reports since the last sync must be uploaded first.
            upload_trial_file(trial, RESULT_FILE)
        self.pruned.discard(trial.trial_id)  # running again: it will have checkpoints to rank
        if trial.checkpoint is None and (trial.last_result or {}).get("epochs_done"):
            self.on_line(f"[{trial.trial_id}] starts over from epoch 1: its checkpoints were deleted "
                         f"(it was not among the tune.keep_checkpoints_top_k={self.keep} best when it ended)")

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        if self.history:
            return
        for c in drop_older_checkpoints(trial, checkpoint.path):  # the newest carries the trial's best weights too
            _delete(c.filesystem, c.path)

    # Tune calls these while the trial's status still says RUNNING (its stop is scheduled after): it is
    # recorded as ended here.
    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ending[trial.trial_id] = "TERMINATED"
        self.prune(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ending[trial.trial_id] = "ERROR"
        self.prune(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.prune(trials)  # every status final now

    # --- The work.

    def prune(self, trials: list) -> list[str]:
        """Delete what falls outside the kept set now; returns the trial ids pruned by this call."""
        for t in trials:
            if t.is_finished():
                self.ending.pop(t.trial_id, None)
        ended = [t for t in trials if (t.is_finished() or t.trial_id in self.ending) and t.trial_id not in self.pruned]
        kept = kept_trials(ended, self.keep, self.metric, self.mode, self.ending)
        # A running or paused trial may have been handed another trial's checkpoint (PBT's exploit).
        protected = {c.path for t in trials if not (t.is_finished() or t.trial_id in self.ending) for c in _latest(t)}
        out = []
        for t in ended:
            if t.trial_id in kept:
                continue
            checkpoints = trial_checkpoints(t)
            if any(c.path in protected for c in checkpoints):
                continue  # still wanted by a live trial: try again at a later end
            for c in checkpoints:
                _delete(c.filesystem, c.path)
            self._delete_leftovers(t.trial_id)
            forget_trial_checkpoints(t)
            self.pruned.add(t.trial_id)
            out.append(t.trial_id)
        return out

    def _delete_leftovers(self, trial_id: str) -> None:
        """checkpoint_* folders Tune no longer tracks, and a Train-run trial's own run folders."""
        fs, root = open_location(self.experiment_path, key="scaling.storage_path")
        # deferred (heavy import): pyarrow
        import pyarrow.fs as pafs

        for folder, prefix in ((f"{root}/{trial_id}", "checkpoint_"), (f"{root}/{TRAIN_RUNS_DIR}", f"{trial_id}-")):
            try:
                entries = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
            except OSError:
                continue
            for e in entries:
                if e.type == pafs.FileType.Directory and e.base_name.startswith(prefix):
                    _delete(fs, e.path)

    def _forget_missing(self, trials: list) -> None:
        """A resumed search: Tune's experiment state is saved every so often, not at every checkpoint, so it may
        point at a checkpoint deleted since (a trial's older one, or a pruned trial's). A trial then restarts from
        its newest checkpoint still on disk, or from scratch if none is left."""
        for t in trials:
            checkpoints = trial_checkpoints(t)
            if not checkpoints or all(_exists(c.filesystem, c.path) for c in checkpoints):
                continue
            newest = self._newest_on_disk(t.trial_id)
            if newest is not None:
                point_trial_at_checkpoint(t, *newest)
                continue
            forget_trial_checkpoints(t)  # on_trial_start says so if it runs again
            self.pruned.add(t.trial_id)

    def _newest_on_disk(self, trial_id: str) -> tuple[str, Any] | None:
        fs, root = open_location(self.experiment_path, key="scaling.storage_path")
        # deferred (heavy import): pyarrow
        import pyarrow.fs as pafs

        try:
            entries = fs.get_file_info(pafs.FileSelector(f"{root}/{trial_id}", allow_not_found=True))
        except OSError:
            return None
        names = sorted(e.path for e in entries if e.type == pafs.FileType.Directory
                       and e.base_name.startswith("checkpoint_"))
        return (names[-1], fs) if names else None


def _latest(trial: Any) -> list[Any]:
    c = trial.checkpoint
    return [c] if c is not None else []


def _exists(fs: Any, path: str) -> bool:
    # deferred (heavy import): pyarrow
    import pyarrow.fs as pafs

    try:
        return fs.get_file_info(path).type != pafs.FileType.NotFound
    except OSError:
        return False


def _delete(fs: Any, path: str) -> None:
    try:
        fs.delete_dir(path)
    except FileNotFoundError:
        pass
    except OSError as e:  # a folder that cannot be deleted now costs disk, not the search
        log.warning("tune.keep_checkpoints_top_k: could not delete %s: %s", path, e)
