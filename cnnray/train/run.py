"""`cnnray train` end to end, whichever runner trains: claim the run, check a resume, train, record, register.

No Ray import here: a local run (`scaling.runner=local`, see `local.py`) never pays for it; a Ray Train
run goes through `trainer.py`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from cnnray.config import Config, config_hash
from cnnray.errors import ConfigError
from cnnray.train import progress
from cnnray.train.build import build_model
from cnnray.train.claim import RunClaim
from cnnray.train.loop import BEST_FILE, META_FILE
from cnnray.train.prepare import PreparedRun, prepare_run
from cnnray.train.resume_check import ResumePoint, check_resume
from cnnray.train.test_hooks import read_test_hooks

OPEN_TRACKING_WITHIN_S = 10.0  # a local run opens its MLflow run at its first step, or after this long


def load_best(checkpoint_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(best weights, meta) from a checkpoint directory, read with weights_only=True."""
    import torch

    d = Path(checkpoint_dir)
    weights = torch.load(d / BEST_FILE, map_location="cpu", weights_only=True)
    return weights, json.loads((d / META_FILE).read_text())


def make_loop_config(prep: PreparedRun, threads: int | None = None,
                     extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What every rank's `run_loop` gets (JSON-safe: it travels to Ray workers and local rank processes)."""
    cfg = prep.cfg
    return {"cfg": cfg.model_dump(mode="json"), "info": prep.info.__dict__, "loader_kind": prep.loader_kind,
            "run_dir": prep.run_dir, "threads": threads or max(1, int(cfg.scaling.cpus_per_worker)),
            "test_hooks": read_test_hooks(),  # cnnray's own fault injection (env vars), not part of the config
            **prep.loop_extra, **(extra or {})}


def _check_resume(prep: PreparedRun) -> ResumePoint:
    """The checkpoint this resume will load, opened and checked now (ConfigError names a bad file)."""
    model = build_model(prep.cfg, prep.info.num_classes, prep.info.channels)
    return check_resume(prep.run_dir, prep.cfg.train.resume_from, model)


def _prior_run(prep: PreparedRun, point: ResumePoint | None) -> tuple[str | None, str | None]:
    """(MLflow run id, status) of the run a resume continues; refuses to resume a FINISHED run for nothing."""
    from cnnray import tracking

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
                 prepared: PreparedRun | None = None) -> dict[str, Any]:
    """Run `cnnray train` end to end; returns the result object (raises UserInputError on bad input).

    `prepared`: the result of `prepare_run(cfg)` when the caller already checked the input (the
    command does, before importing Ray, so that bad input exits 2 without paying for it).
    """
    from cnnray.train.local import RankPool, choose_runner

    t0 = time.time()
    clock = progress.StartupClock()
    try:
        prep = prepared or prepare_run(cfg)
        runner = choose_runner(prep.cfg, prep.loader_kind)
    except BaseException:
        RankPool.discard_prestarted()
        raise
    if runner != "local":
        RankPool.discard_prestarted()
    claim = RunClaim(prep.run_dir)
    try:
        # Claimed before any work and held until the end: a second start under this name exits 2.
        claim.acquire(new=not prep.resume)
        point = _check_resume(prep) if prep.resume else None
        prior_status = _prior_run(prep, point)[1]
        kwargs = dict(verbose=verbose, on_line=on_line, on_report=on_report)
        if runner == "local":
            return _train_locally(prep, point, prior_status, t0, clock, **kwargs)
        from cnnray.train.trainer import train_on_ray

        return train_on_ray(prep, point, prior_status, t0, clock, **kwargs)
    finally:
        RankPool.discard_prestarted()
        claim.release(remove_if_unused=True)


def _train_locally(prep: PreparedRun, point: ResumePoint | None, prior_status: str | None, t0: float,
                   clock: progress.StartupClock, *, verbose: bool, on_line: Callable[[str], None],
                   on_report: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    """The run in this process (+ local rank processes): MLflow opened and fed from a background thread."""
    from cnnray.jobs.local import start_run_watchdog
    from cnnray.ray_session import GracefulStop
    from cnnray.train.local import RunFailed, StopRun, run_local

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
                                on_line=on_line, on_first_step=background.start if background else None)
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
        from cnnray import tracking

        # Each failure with the failed rank's log tail (a native crash's stack included): what a restart hid.
        tags = {f"cnnray.failure_{i}": text[:5000] for i, text in enumerate(failures, start=1)}
        tracking.runs.set_tags(ctx, {**tags, "cnnray.restarts": str(outcome.restarts if outcome else len(failures) - 1)})
    return finish_run(prep, ctx, status, error or (background.error if background else None), prior_status,
                      outcome.checkpoint if outcome else None, last, clock, t0, verbose=verbose, on_line=on_line)


def _open_tracking(prep: PreparedRun, point: ResumePoint | None, prior_status: str | None) -> Any:
    from cnnray import tracking
    from cnnray.jobs.local import watch_mlflow_run
    from cnnray.tracking.background import BackgroundRun

    cfg = prep.cfg

    def open_run() -> Any:
        uri = tracking.resolve_tracking_uri(cfg.tracking.uri)
        ctx = tracking.start_run(cfg, prep.run_name, uri=uri, resume=prep.resume, log_config=False,
                                 tags={"cnnray.data_fingerprint": prep.info.fingerprint,
                                       "cnnray.config_hash": config_hash(cfg), "cnnray.runner": "local"})
        watch_mlflow_run(ctx.uri, ctx.run_id)  # before anything slower: a SIGKILL from now on marks it KILLED
        if not prep.resume or prior_status is None:  # a new run (a resume re-attaches to its logged params)
            tracking.runs.log_config_params(ctx, cfg)
        if point is not None:
            tracking.runs.set_tags(ctx, resume_tags(point, prior_status, cfg.train.epochs))
        return ctx

    return BackgroundRun(open_run, start_within_s=OPEN_TRACKING_WITHIN_S)


def outcome_of(last: dict[str, Any]) -> tuple[str, str | None]:
    """(status, error) from a run's last report."""
    if last.get("error"):
        return "FAILED", str(last["error"])
    if last.get("done") and not last.get("global_step"):
        # Second guard behind check_steps_per_epoch: a model that took no optimizer step is never registered.
        return "FAILED", "no optimizer step was taken (no full batch on some worker): nothing to register"
    if last.get("done"):
        return "FINISHED", None
    return "KILLED", "interrupted"


def finish_run(prep: PreparedRun, ctx: Any, status: str, error: str | None, prior_status: str | None,
               checkpoint: str | None, last: dict[str, Any], clock: progress.StartupClock, t0: float, *,
               verbose: bool, on_line: Callable[[str], None]) -> dict[str, Any]:
    """Close the MLflow run (registering the best weights when FINISHED) and build the result object."""
    from cnnray.jobs.local import unwatch_mlflow_run

    cfg = prep.cfg
    if status == "FINISHED" and checkpoint is None:
        status, error = "FAILED", "the run ended without a checkpoint"
    if ctx is not None and status != "FINISHED":
        _close_unfinished(ctx, status, error, prior_status)
        unwatch_mlflow_run()
    out: dict[str, Any] = {"status": status, "run_name": prep.run_name, "experiment": cfg.tracking.experiment,
                           "run_id": ctx.run_id if ctx else None, "run_dir": prep.run_dir,
                           "loader": prep.loader_kind, "data_fingerprint": prep.info.fingerprint,
                           "startup_s": clock.seconds()}
    if verbose:
        on_line(clock.line())
    if status != "FINISHED":
        out.update(error=error, wall_seconds=round(time.time() - t0, 1))
        return out
    assert checkpoint is not None
    weights, meta = load_best(checkpoint)
    out.update(best_epoch=meta.get("best_epoch"), best_metrics=meta.get("best_metrics", {}),
               weights=meta.get("weights"), checkpoint=checkpoint, epochs_run=int(last.get("epoch", -1)) + 1,
               stopped_early=bool(last.get("stopped_early")))
    if ctx is not None:
        from cnnray import tracking
        from cnnray.serve.card import card_for_training
        from cnnray.tracking.finish import finish_training_run

        try:
            out.update(finish_training_run(ctx, cfg, prep, weights, meta,
                                           make_card=partial(card_for_training, cfg, prep.info,
                                                             compression=prep.card_compression or None)))
            tracking.end_run(ctx, "FINISHED")
        except BaseException:
            tracking.end_run(ctx, "FAILED")
            raise
        finally:
            unwatch_mlflow_run()
    out["wall_seconds"] = round(time.time() - t0, 1)
    return out


def resume_tags(point: ResumePoint, prior_status: str | None, epochs: int) -> dict[str, str]:
    tags = {"cnnray.resumed_from": f"{(point.checkpoint_dir or 'start').rsplit('/', 1)[-1]} (after epoch "
                                   f"{point.epochs_done})"}
    if prior_status == "FINISHED":
        tags["cnnray.resumed_after_finish"] = f"training {point.epochs_done} -> {epochs} epochs"
    return tags


def _close_unfinished(ctx: Any, status: str, error: str | None, prior_status: str | None) -> None:
    """End the run FAILED/KILLED; a run that had FINISHED before this resume keeps FINISHED (its model stands)."""
    from cnnray import tracking

    if prior_status == "FINISHED":
        tracking.runs.set_tags(ctx, {"cnnray.resume_failed": f"{status}: {error}"[:5000]})
        tracking.end_run(ctx, "FINISHED")
    else:
        if error:
            tracking.runs.set_tags(ctx, {"cnnray.error": str(error)[:5000]})
        tracking.end_run(ctx, status)


def format_train_summary(r: dict[str, Any]) -> str:
    """What a person reads after `cnnray train`: status, best epoch and metrics, where the model went."""
    if r["status"] != "FINISHED":
        return f"training {r['status']}: {r.get('error')}  (run {r['run_name']}, MLflow run {r.get('run_id')})"
    m = r.get("best_metrics", {})
    lines = [
        f"training FINISHED in {r['wall_seconds']:.0f}s: best epoch {int(r['best_epoch']) + 1} "
        f"val_acc {100 * m.get('val_acc', 0):.2f}% val_loss {m.get('val_loss', float('nan')):.4f} "
        f"({r.get('weights', 'raw')} weights)",
        f"run {r['run_name']}  MLflow run {r.get('run_id')}  checkpoint {r.get('checkpoint')}",
    ]
    if r.get("version"):
        # The URIs every later command takes (the logged model's own models:/m-... id is in --json's model_uri).
        name, version, alias = r["registered_name"], r["version"], r.get("alias")
        lines.append(f"registered {name} version {version}" + (f" as @{alias}" if alias else "")
                     + f": models:/{name}/{version}" + (f" (or models:/{name}@{alias})" if alias else ""))
    return "\n".join(lines)
