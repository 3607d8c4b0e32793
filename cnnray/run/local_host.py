"""`scaling.runner=local`: the loop of `loop.py` in processes of this machine, without Ray.

The command's own process is rank 0; ranks 1.. are `python -m cnnray.run.local_rank` children
joined by a gloo (nccl on GPUs) process group on the loopback interface. Why: on one machine Ray Train's
controller and worker actors cost ~20 s of start-up before the first step (each imports Ray, torch
and cnnray), more than a short job's training (Ray Train's own local mode, `num_workers=0`, makes the
same trade). What stays the same: the loop, checkpoints in the run folder (`local_store.py`, resumable
by either runner), retries from the latest checkpoint (`scaling.max_failures`), the MLflow run.
Children are started before the command validates its input (`PrestartedRanks`), so their imports
overlap the driver's; a child exits when its parent dies (PR_SET_PDEATHSIG), SIGKILL included.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnray.config import Config
from cnnray.errors import ConfigError
from cnnray.run.checkpoints import CheckpointStore
from cnnray.run.failures import FATAL_EXIT, RankFailure, is_fatal, repeated_kill, signal_name

if TYPE_CHECKING:  # torch is imported where it is used: `prestart` runs before the command imports it
    import torch

    from cnnray.run.loop_config import LoopConfig

log = logging.getLogger("cnnray")
RANK_LOG = "rank{rank}.log"  # a child's stderr (Python's and native code's, faulthandler's stacks), in the run folder
LOG_TAIL_LINES = 30  # of a failed rank's log, carried by the restart message and the MLflow run


def workers_of(cfg: Config) -> int | None:
    """scaling.num_workers as a fixed count (None: elastic [min, max])."""
    n = cfg.scaling.num_workers
    return None if isinstance(n, (list, tuple)) else int(n)


def ray_reasons(cfg: Config, loader_kind: str | None) -> list[str]:
    """Why this run needs Ray Train (empty: it can run locally)."""
    reasons = []
    if cfg.run.address or os.environ.get("RAY_ADDRESS"):
        reasons.append("a cluster address is set (run.address / --address / RAY_ADDRESS)")
    if loader_kind == "streaming":
        reasons.append("the data streams through Ray Data (data.loader=streaming)")
    if workers_of(cfg) is None:
        reasons.append("scaling.num_workers is elastic ([min, max])")
    if "://" in (cfg.scaling.storage_path or ""):
        reasons.append(f"scaling.storage_path={cfg.scaling.storage_path!r} is a URI")
    return reasons


def ray_is_up() -> bool:
    """This process already connected to Ray (a library user, a test session): auto then uses it."""
    ray = sys.modules.get("ray")
    return bool(ray is not None and getattr(ray, "is_initialized", lambda: False)())


def choose_runner(cfg: Config, loader_kind: str | None, ray_up: bool | None = None) -> str:
    """'local' or 'ray' for this run; ConfigError when scaling.runner=local cannot be honoured."""
    reasons = ray_reasons(cfg, loader_kind)
    if cfg.scaling.runner == "local":
        if reasons:
            raise ConfigError(f"scaling.runner=local: {reasons[0]}, which needs Ray Train; use scaling.runner=auto "
                              "or ray")
        return "local"
    if cfg.scaling.runner == "ray" or reasons:
        return "ray"
    return "ray" if (ray_is_up() if ray_up is None else ray_up) else "local"


def prestart_count(cfg: Config) -> int:
    """Rank processes worth starting before the input is checked: world - 1 when this run will be local."""
    world = workers_of(cfg)
    if world is None or world < 2 or cfg.scaling.runner == "ray" or ray_reasons(cfg, None):
        return 0
    return world - 1 if cfg.data.loader != "streaming" else 0


def local_devices(cfg: Config, world: int) -> list[torch.device]:
    """One device per rank: a GPU each when there are GPUs (and use_gpu allows), else the CPU."""
    # deferred (heavy import): torch
    import torch

    gpus = torch.cuda.device_count() if cfg.scaling.use_gpu is not False else 0
    if cfg.scaling.use_gpu and gpus == 0:
        raise ConfigError("scaling.use_gpu=true but this machine has no CUDA GPU (scaling.runner=local runs here)")
    if gpus == 0:
        return [torch.device("cpu")] * world
    if gpus < world:
        raise ConfigError(f"scaling.num_workers={world} local workers but this machine has {gpus} GPU(s): one "
                          "each is needed; lower scaling.num_workers or set scaling.use_gpu=false")
    return [torch.device("cuda", r) for r in range(world)]


class LocalCheckpoint:
    """A checkpoint folder, with the `as_directory()` the loop reads checkpoints through."""

    def __init__(self, path: str) -> None:
        self.path = path

    @contextlib.contextmanager
    def as_directory(self) -> Iterator[str]:
        yield self.path


class LocalSession:
    """The loop's view of a local rank; rank 0 hands every report to `on_report`."""

    def __init__(self, rank: int, world: int, device: torch.device,
                 on_report: Callable[[dict[str, Any], Path | None], None] | None = None,
                 on_first_step: Callable[[], None] | None = None, store: CheckpointStore | None = None) -> None:
        self.rank, self.world, self.device = rank, world, device
        self.on_report = on_report
        self.on_first_step = on_first_step  # called by the engine after this rank's first optimizer step
        self.store = store  # rank 0's: checkpoints are written straight into the run folder
        self.engine: Any = None  # set by the loop; the driver reads the step a failure happened at

    def stage_checkpoint(self) -> Path:
        if self.store is None:
            raise RuntimeError("only rank 0 writes checkpoints")
        return self.store.stage()

    def latest_checkpoint(self) -> str | None:
        return self.store.latest if self.store is not None else None

    def resume_checkpoint(self) -> None:
        return None  # the driver hands the checkpoint to start from in as init_checkpoint

    def dataset_shard(self, name: str) -> Any:
        raise RuntimeError("streaming data needs Ray Data: scaling.runner=ray")

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        if self.on_report is not None:
            self.on_report(metrics, checkpoint_dir)


def _loopback_interface() -> str:
    """The loopback interface's name (`lo` on Linux, `lo0` on macOS), for gloo to bind its connections to."""
    names = [name for _, name in socket.if_nameindex() if name.startswith("lo")]
    return names[0] if names else "lo"


def _spawn_rank() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cnnray.run.local_rank"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)


class PrestartedRanks:
    """Rank processes started before the command checks its input: they import torch and the loop meanwhile.
    Owned by the command that started them; `discard()` (bad input, another runner) ends the unused ones."""

    def __init__(self, count: int) -> None:
        self.procs = [_spawn_rank() for _ in range(max(0, count))]

    def take(self) -> subprocess.Popen | None:
        """One started process, or None when none is left."""
        return self.procs.pop() if self.procs else None

    def discard(self) -> None:
        """End the ones not taken: closing stdin tells them they are not needed."""
        for p in self.procs:
            _stop(p)
        self.procs = []


def prepare_with_ranks(cfg: Config) -> tuple[Any, PrestartedRanks]:
    """(the checked run, its prestarted ranks): the rank processes a local run will need start first, so their
    imports overlap the input check; a refused input ends them before the error goes up."""
    ranks = PrestartedRanks(prestart_count(cfg))
    try:
        from cnnray.run.plan import prepare_run  # deferred: it imports torch; the ranks start before that

        return prepare_run(cfg), ranks
    except BaseException:
        ranks.discard()
        raise


class RankPool:
    """Child processes for ranks 1..world-1 of one attempt: prestarted ones first, the rest started now."""

    def __init__(self, world: int, run_dir: str, prestarted: PrestartedRanks | None = None) -> None:
        self.world, self.run_dir = world, Path(run_dir)
        self.prestarted = prestarted
        self.procs: list[subprocess.Popen] = []

    def start(self, lc: LoopConfig, devices: list[torch.device], store: str) -> None:
        """Hand ranks 1.. their loop config (prestarted children first)."""
        for rank in range(1, self.world):
            proc = (self.prestarted.take() if self.prestarted is not None else None) or _spawn_rank()
            self.procs.append(proc)
            message = {"rank": rank, "world": self.world, "store": store, "device": str(devices[rank]),
                       "log": str(self.run_dir / RANK_LOG.format(rank=rank)), "loop_config": lc.to_json()}
            try:
                assert proc.stdin is not None
                proc.stdin.write((json.dumps(message) + "\n").encode())
                proc.stdin.close()
            except (BrokenPipeError, OSError) as e:
                raise RuntimeError(f"local worker rank {rank} died before it started ({e})") from None

    def wait(self, timeout_s: float) -> None:
        """Wait for every rank to exit; RuntimeError naming the first that failed."""
        for rank, p in enumerate(self.procs, start=1):
            try:
                code = p.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"local worker rank {rank} did not finish within {timeout_s:.0f}s") from None
            if code != 0:
                raise RuntimeError(f"local worker rank {rank} exited with code {code}: {self.last_error(rank)}")

    def last_error(self, rank: int) -> str:
        """The last line of a rank's log (its traceback's message)."""
        lines = self.log_tail(rank, 1)
        return lines[-1][:300] if lines else "no output"

    def log_tail(self, rank: int, count: int = LOG_TAIL_LINES) -> list[str]:
        """The last `count` non-empty lines of a rank's log (a Python traceback or a native crash's stack)."""
        path = self.run_dir / RANK_LOG.format(rank=rank)
        try:
            lines = [s for s in path.read_text(errors="replace").splitlines() if s.strip()]
        except OSError:
            return ["no log"]
        return lines[-count:]

    def stop(self) -> None:
        for p in self.procs:
            _stop(p)
        self.procs = []


def _stop(p: subprocess.Popen) -> None:
    with contextlib.suppress(Exception):
        if p.stdin is not None and not p.stdin.closed:
            p.stdin.close()
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def init_group(rank: int, world: int, store: str, device: torch.device, timeout_s: float) -> None:
    """Join the run's process group. The rendezvous is a file (`store`, fresh per attempt), not a TCP
    store: PyTorch's TCPStore listens on every interface and has no bind-address option, a file
    listens on none; gloo's own connections are bound to the loopback interface."""
    # deferred (heavy import): torch
    import torch
    import torch.distributed as dist

    os.environ.setdefault("GLOO_SOCKET_IFNAME", _loopback_interface())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"file://{store}",
                            rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout_s))


def leave_group() -> None:
    # deferred (heavy import): torch
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


class StopRun(Exception):
    """Raised by a report handler to end the run now, without the retries a rank failure gets
    (e.g. the MLflow store is gone: running again would not bring it back)."""


@dataclass
class LocalOutcome:
    """What the local run left: its latest checkpoint and last report, and the failures it recovered from."""

    checkpoint: str | None
    last: dict[str, Any]
    restarts: int
    failures: list[str] = field(default_factory=list)  # per restart: what failed, with the rank's log tail


class RunFailed(RuntimeError):
    """The run ended on a failure (retries spent, or one a restart cannot fix); `failures` as in LocalOutcome."""

    def __init__(self, message: str, failures: list[str]) -> None:
        super().__init__(message)
        self.failures = failures


def _failed_rank(pool: RankPool) -> tuple[int, int | None] | None:
    """(rank, exit code) of the first child that failed, waiting briefly for one that broke the collective."""
    for rank, p in enumerate(pool.procs, start=1):
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=3)  # a rank that broke the collective may still be exiting
        if p.poll() not in (None, 0):
            return rank, p.returncode
    return None


def _describe(pool: RankPool, rank: int, code: int | None) -> tuple[str, str]:
    """(one line, the line plus the rank's log tail) for a rank that exited with `code`."""
    how = f"was killed by {signal_name(code)}" if signal_name(code) else f"exited with code {code}"
    line = f"local worker rank {rank} {how}: {pool.last_error(rank)}"
    tail = "\n".join(f"  | {s}" for s in pool.log_tail(rank))
    return line, f"{line}\n  rank {rank}'s log ({pool.run_dir / RANK_LOG.format(rank=rank)}), last lines:\n{tail}"


def _judge_failure(e: Exception, pool: RankPool, session: LocalSession,
                   previous: RankFailure | None) -> tuple[str, str, bool, RankFailure | None]:
    """(one line, the line with the failed rank's log tail, whether a restart cannot help, this rank failure)."""
    detail = full = f"{type(e).__name__}: {e}"
    fatal = is_fatal(e)
    failed = _failed_rank(pool)
    if failed is None:
        return detail, full, fatal, previous
    rank, code = failed
    detail, full = _describe(pool, rank, code)
    now = RankFailure(rank, code, int(getattr(session.engine, "global_step", -1)))
    if code == FATAL_EXIT:
        fatal = True
    elif repeated_kill(previous, now):
        fatal = True
        detail = (f"local worker rank {rank} was killed by SIGKILL twice at step {now.step} (likely the "
                  "out-of-memory killer: lower train.batch_size or scaling.num_workers); a restart would repeat it")
        full = detail + full[full.index("\n"):]
    return detail, full, fatal, now


def run_local(cfg: Config, lc: LoopConfig, run_dir: str, *, start_from: str | None,
              on_report: Callable[[dict[str, Any], bool], None], on_line: Callable[[str], None],
              on_first_step: Callable[[], None] | None = None,
              prestarted: PrestartedRanks | None = None) -> LocalOutcome:
    """Train with `world` local ranks; on a failure restart every rank from the latest checkpoint, up to
    scaling.max_failures times, unless a restart cannot help (`failures.py`: a full disk, bad input inside a
    rank, the same rank SIGKILLed twice at one step). KeyboardInterrupt/SystemExit pass through (checkpoints
    already written stay); a failure that ends the run raises RunFailed."""
    # deferred (heavy import): torch, pyarrow, PIL
    from cnnray.run.rank_loop import run_loop

    world = workers_of(cfg) or 1
    devices = local_devices(cfg, world)
    mode = cfg.train.monitor_mode
    store = CheckpointStore(run_dir, cfg.scaling.num_to_keep, cfg.train.monitor, mode)
    last: dict[str, Any] = {}

    def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        last.clear()
        last.update(metrics)
        if checkpoint_dir is not None:
            added.append(store.add(checkpoint_dir, metrics))
        on_report(metrics, checkpoint_dir is not None)

    restarts, limit = 0, cfg.scaling.max_failures
    rendezvous_files: list[Path] = []
    added: list[str] = []  # checkpoints this command wrote (a retry starts from the newest)
    failures: list[str] = []
    previous: RankFailure | None = None
    while True:
        # The resume point the driver checked (it may be Ray Train's, newer than this store's latest), then
        # after a failure the newest checkpoint this command wrote.
        start = added[-1] if added else start_from
        config = lc.replace(init_checkpoint=start)
        pool = RankPool(world, run_dir, prestarted)
        session = LocalSession(0, world, devices[0], report, on_first_step, store)
        try:
            if world > 1:
                rendezvous = Path(run_dir) / f".rendezvous-{os.getpid()}-{restarts}"
                rendezvous.unlink(missing_ok=True)
                rendezvous_files.append(rendezvous)
                pool.start(config, devices, str(rendezvous))
                init_group(0, world, str(rendezvous), devices[0], cfg.scaling.collective_timeout_s)
            run_loop(config, session, start=LocalCheckpoint(start) if start else None)
            pool.wait(cfg.scaling.collective_timeout_s)
            return LocalOutcome(added[-1] if added else None, dict(last), restarts, failures)
        except (KeyboardInterrupt, SystemExit, StopRun):
            raise
        except Exception as e:  # noqa: BLE001 - a rank's failure: retried from the latest checkpoint
            detail, full, fatal, previous = _judge_failure(e, pool, session, previous)
            failures.append(full)
            if fatal or (limit != -1 and restarts >= limit):
                raise RunFailed(detail, failures) from e
            restarts += 1
            on_line(f"worker failure ({detail[:300]}); restarting from "
                    f"{Path(added[-1] if added else start_from or 'the start').name} (restart {restarts} of "
                    f"{'unlimited' if limit == -1 else limit})" + (full[full.index("\n"):] if "\n" in full else ""))
        finally:
            pool.stop()
            leave_group()
            for path in rendezvous_files:
                path.unlink(missing_ok=True)
