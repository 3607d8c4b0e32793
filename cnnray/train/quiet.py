"""Keep Ray's internal log noise off the user's console unless --verbose."""

from __future__ import annotations

import logging
import os
import warnings


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
