"""A local rank (1..world-1) of a `scaling.runner=local` run: `python -m cnnray.run.local_rank`.

Imports torch and the loop first, then waits for one JSON line on stdin (rank, world, rendezvous file, device,
log file, loop config) from the command that started it; EOF without a line means "not needed" and
it exits 0. It dies with its parent (PR_SET_PDEATHSIG), so a killed command leaves no rank behind.
"""

from __future__ import annotations

import ctypes
import faulthandler
import json
import os
import signal
import sys
import traceback

import torch  # noqa: F401 - imported before stdin is read: this is the start-up work the prestart overlaps

from cnnray.run.failures import FATAL_EXIT, is_fatal
from cnnray.run.local_host import LocalCheckpoint, LocalSession, init_group, leave_group
from cnnray.run.loop_config import LoopConfig
from cnnray.run.rank_loop import run_loop

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the parent's pool.stop() still ends us
        pass


def main() -> int:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the whole group: the parent decides
    line = sys.stdin.readline()
    if not line.strip():
        return 0
    msg = json.loads(line)
    with open(msg["log"], "a", buffering=1) as log:
        # File descriptor 2 too, not only sys.stderr: a native crash (SIGABRT, SIGSEGV in a kernel or in
        # gloo) writes there, and faulthandler dumps every thread's Python stack there before the process dies.
        os.dup2(log.fileno(), 2)
        sys.stderr = log
        faulthandler.enable(file=log, all_threads=True)
        try:
            device = torch.device(msg["device"])
            lc = LoopConfig.from_json(msg["loop_config"])
            init_group(msg["rank"], msg["world"], msg["store"], device, lc.cfg.scaling.collective_timeout_s)
            start = lc.init_checkpoint
            run_loop(lc, LocalSession(msg["rank"], msg["world"], device), start=LocalCheckpoint(start) if start else None)
        except BaseException as e:  # noqa: BLE001 - the last line of the log is what the driver shows
            traceback.print_exc(file=log)
            print(f"{type(e).__name__}: {e}", file=log)
            return FATAL_EXIT if is_fatal(e) else 1
        finally:
            leave_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
