"""This process's Ray session: quiet logs unless --verbose, connect or start Ray, stop gracefully on SIGTERM.

Importing this module does not import Ray: `quiet_ray` must run before Ray is imported or started.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import warnings
from typing import Any

from cnnray.cluster.local_ray import start_local_ray
from cnnray.ray_compat import loopback_node

_QUIET = {"on": False}
NOISY_MODULES = (r"ray(\..*)?", r"mlflow(\..*)?", r"pyarrow(\..*)?", r"pydantic(\..*)?", r"alembic(\..*)?",
                 r"sqlalchemy(\..*)?", r"google(\..*)?", r"opentelemetry(\..*)?", r"pkg_resources(\..*)?")


def quiet_ray(verbose: bool = False) -> None:
    """Set environment and logger levels before Ray is imported or started."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    if verbose:
        return
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_LOG_TO_STDERR", "0")
    os.environ.setdefault("RAY_TQDM", "0")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    # Only warnings raised inside the libraries' own code: a deprecation of an API cnnray calls is
    # attributed to cnnray's line (stacklevel) and stays visible.
    for module in NOISY_MODULES:
        warnings.filterwarnings("ignore", module=module)
    _QUIET["on"] = True
    for name in ("ray", "ray.train", "ray.tune", "ray.data", "mlflow", "alembic", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)


def requiet_ray_data() -> None:
    """Importing ray.data installs Ray Data's own logging config (INFO per execution); undo it when quiet."""
    if _QUIET["on"]:
        logging.getLogger("ray.data").setLevel(logging.ERROR)


def ensure_ray(address: str | None = None, verbose: bool = False) -> bool:
    """Connect to a cluster (address or RAY_ADDRESS) or start a local one, unless Ray is up; True when started here."""
    # deferred (heavy import): ray
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs: dict[str, Any] = dict(log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.ERROR,
                                  configure_logging=True)
    if address:
        host = address.split("://")[-1].rsplit(":", 1)[0]
        if host in ("127.0.0.1", "localhost"):
            # A loopback-only cluster (`cnnray cluster up`): this driver must look for its node on 127.0.0.1 too.
            with loopback_node():
                ray.init(address=address, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    else:
        # On 127.0.0.1, dashboard off (it listens on a port and costs a process; clusters have their own),
        # ended by a watchdog if this process dies.
        start_local_ray(**kwargs)
    return True


class GracefulStop:
    """Context manager: SIGTERM becomes SIGINT, which Ray Train's and Tune's own handlers turn into a graceful
    stop (Tune saves its state for --resume); `signalled` tells the caller it ended because it was told to stop.

    A SIGINT outside those handlers (before fit starts, or after it restored ours) raises KeyboardInterrupt.
    """

    def __init__(self) -> None:
        self.signalled = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            self._old[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_term)
            self._old[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_int)
        return self

    def _on_term(self, signum, frame) -> None:
        self.signalled = True
        os.kill(os.getpid(), signal.SIGINT)

    def _on_int(self, signum, frame) -> None:
        self.signalled = True
        raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
