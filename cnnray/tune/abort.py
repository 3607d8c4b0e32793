"""Stop a trial's Train run cleanly when Tune stops or pauses the trial.

Tune ends a trial (scheduler stop, PBT pause, Ctrl+C) by calling the trainable's `stop()` and then
removing its actor. The Train controller is owned by that actor and dies with it, but the placement
group holding the Train workers' CPUs/GPUs outlives it (Train's detached cleaner needs the dashboard's
state API); each stop would leak a worker's resources until the search starves. So the trainable's
cleanup, which Tune waits for, first aborts the Train run: workers stop and their group is removed.
"""

from __future__ import annotations

from typing import Any

_ACTIVE: dict[str, Any] = {}  # this trial actor's running Train controller (one trial per actor)


def set_controller(handle: Any) -> None:
    """Remember the Train controller of the trial running in this process."""
    _ACTIVE["controller"] = handle


def forget_controller() -> None:
    """The Train run ended by itself: nothing to abort."""
    _ACTIVE.pop("controller", None)


def abort_train_run(timeout_s: float = 60.0) -> None:
    """Abort the remembered Train run, if any (a finished run ignores it)."""
    from cnnray.ray_compat import abort_train_controller, require_written_for

    handle = _ACTIVE.pop("controller", None)
    if handle is None:
        return
    require_written_for("TrainController.abort")  # outside the try: a version mismatch must not pass silently
    try:
        abort_train_controller(handle, timeout_s)
    except Exception:  # noqa: BLE001 - the controller exits inside abort(); a dead one raises here
        pass


class AbortTrainOnStop:
    """Mixin for Tune's function trainable (via `fn.__mixins__`): abort the Train run, then Tune's cleanup."""

    def cleanup(self) -> None:
        abort_train_run()
        super().cleanup()  # type: ignore[misc]
