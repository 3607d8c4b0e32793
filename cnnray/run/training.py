"""`cnnray train` end to end, whichever host trains: claim the run, check a resume, train, then `finish.py`
(status, registration, the promotion trigger).

No Ray import here: a local run (`scaling.runner=local`, see `local_host.py`) never pays for it; a Ray Train
run goes through `ray_host.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cnnray import tracking
from cnnray.cluster.ray_session import GracefulStop
from cnnray.config import Config
from cnnray.errors import ConfigError
from cnnray.models.from_config import build_model
from cnnray.run import progress
from cnnray.run.claim import RunClaim
from cnnray.run.local_host import RunFailed, StopRun, choose_runner, run_local
from cnnray.run.outcome import outcome_of
from cnnray.run.plan import PreparedRun, make_loop_config, prepare_run
from cnnray.run.resume_check import ResumePoint, check_resume, refuse_spent_budget
from cnnray.run.stage import stage_initial_weights
from cnnray.tracking.background import BackgroundRun

OPEN_TRACKING_WITHIN_S = 10.0  # a local run opens its MLflow run at its first step, or after this long


def _check_resume(prep: PreparedRun) -> ResumePoint:
    """The checkpoint this resume will load, opened and checked now (ConfigError names a bad file)."""
    model = build_model(prep.cfg, prep.info.num_classes, prep.info.channels)
    point = check_resume(prep.run_dir, prep.cfg.train.resume_from, model)
    refuse_spent_budget(point, prep.cfg.train.budget_device_hours)  # before any work: the budget is spent
    return point


def _prior_run(prep: PreparedRun, point: ResumePoint | None) -> tuple[str | None, str | None]:
    """(MLflow run id, status) of the run a resume continues; refuses to resume a FINISHED run for nothing."""
    cfg = prep.cfg
    if not (prep.resume and cfg.tracking.enabled):
        return None, None
    uri = tracking.resolve_tracking_uri(cfg.tracking.uri)
    run_id = tracking.find_run_by_name(uri, cfg.tracking.experiment, prep.run_name)
    status = tracking.runs.run_status(uri, run_id) if run_id else None
    done = point.epochs_done if point else 0
    if status == "FINISHED" and done >= cfg.train.epochs:
        raise ConfigError(f"run '{prep.run_name}' FINISHED all its {done} epochs; to train it further, resume "
                          f"with train.epochs above {done}")
    return run_id, status


def run_training(cfg: Config, *, verbose: bool = False, on_line: Callable[[str], None] = print,
                 on_report: Callable[[dict[str, Any]], None] | None = None,
                 prepared: PreparedRun | None = None, prestarted: Any | None = None) -> dict[str, Any]:
    """Run `cnnray train` end to end; returns the result object (raises UserInputError on bad input).

    `prepared`: the result of `prepare_run(cfg)` when the caller already checked the input (the
    command does, before importing Ray, so that bad input exits 2 without paying for it);
    `prestarted`: the rank processes (`local_host.PrestartedRanks`) it started meanwhile; they are
    used by a local run and ended otherwise.
    """
    t0 = time.time()
    clock = progress.StartupClock()
    discard = prestarted.discard if prestarted is not None else (lambda: None)
    try:
        prep = prepared or prepare_run(cfg)
        runner = choose_runner(prep.cfg, prep.loader_kind)
    except BaseException:
        discard()
        raise
    if runner != "local":
        discard()
    claim = RunClaim(prep.run_dir)
    try:
        # Claimed before any work and held until the end: a second start under this name exits 2.
        claim.acquire(new=not prep.resume)
        stage_initial_weights(prep)  # model.init_from / compress weights: files every rank reads
        if prep.init_source is not None:
            on_line(prep.init_source.summary())
        point = _check_resume(prep) if prep.resume else None
        prior_status = _prior_run(prep, point)[1]
        kwargs = dict(verbose=verbose, on_line=on_line, on_report=on_report)
        if runner == "local":
            return _train_locally(prep, point, prior_status, t0, clock, prestarted=prestarted, **kwargs)
        # deferred (heavy import): ray, matplotlib
        from cnnray.run.ray_host import train_on_ray

        return train_on_ray(prep, point, prior_status, t0, clock, **kwargs)
    finally:
        discard()
        claim.release(remove_if_unused=True)


def _train_locally(prep: PreparedRun, point: ResumePoint | None, prior_status: str | None, t0: float,
                   clock: progress.StartupClock, *, verbose: bool, on_line: Callable[[str], None],
                   on_report: Callable[[dict[str, Any]], None] | None, prestarted: Any | None = None) -> dict[str, Any]:
    """The run in this process (+ local rank processes): MLflow opened and fed from a background thread."""
    # Deferred: local_host needs nothing heavy before the rank processes start; finish imports MLflow.
    from cnnray.cluster.local_ray import start_run_watchdog

    # deferred (heavy import): matplotlib
    from cnnray.run.finish import finish_run

    cfg = prep.cfg
    background = _open_tracking(prep, point, prior_status) if cfg.tracking.enabled else None
    start_run_watchdog()  # marks the MLflow run KILLED if this process is SIGKILLed
    printer = progress.ProgressPrinter(cfg.train.epochs, on_line)
    handlers = progress.tee(clock, printer, *([on_report] if on_report is not None else []))

    def relay(metrics: dict[str, Any], checkpointed: bool) -> None:
        handlers(metrics)
        if background is not None:
            background.log(metrics, checkpointed)
            if background.error:  # the store is gone: stop now rather than train into a run nobody records
                raise StopRun(background.error)

    status, error, outcome, last, failures = "FAILED", None, None, {}, []
    try:
        with GracefulStop():
            clock.mark("run_started")
            outcome = run_local(cfg, make_loop_config(prep), prep.run_dir,
                                start_from=point.checkpoint_dir if point else None, on_report=relay,
                                on_line=on_line, on_first_step=background.start if background else None,
                                prestarted=prestarted)
        last, failures = outcome.last, outcome.failures
        status, error = outcome_of(last)
    except (KeyboardInterrupt, SystemExit):
        status, error = "KILLED", "interrupted"
    except RunFailed as e:
        error, failures = f"training failed: {e}", e.failures
    except Exception as e:  # noqa: BLE001 - any failure must still close the MLflow run
        error = f"training failed: {type(e).__name__}: {e}"
    ctx = background.close() if background is not None else None
    if background is not None and background.error and status == "FINISHED":
        status, error = "FAILED", background.error
    if failures and ctx is not None:
        # Each failure with the failed rank's log tail (a native crash's stack included): what a restart hid.
        tags = {f"cnnray.failure_{i}": text[:5000] for i, text in enumerate(failures, start=1)}
        tracking.runs.set_tags(ctx, {**tags, "cnnray.restarts": str(outcome.restarts if outcome else len(failures) - 1)})
    return finish_run(prep, ctx, status, error or (background.error if background else None), prior_status,
                      outcome.checkpoint if outcome else None, last, clock, t0, verbose=verbose, on_line=on_line)


def _open_tracking(prep: PreparedRun, point: ResumePoint | None, prior_status: str | None) -> Any:
    from cnnray.run.mlflow_run import open_training_run  # deferred: MLflow (opened in a background thread)

    return BackgroundRun(lambda: open_training_run(prep, point, prior_status, "local"),
                         start_within_s=OPEN_TRACKING_WITHIN_S)


