"""MLflow tracking: runs on the driver, per-epoch logging, plots, model registration and lineage.

The only package that imports MLflow (design rule); callers pass plain values.
"""

from cnnray.tracking.epoch_logger import EpochLogger
from cnnray.tracking.runs import TrackingContext, end_run, find_run_by_name, resolve_tracking_uri, start_run

__all__ = ["EpochLogger", "TrackingContext", "end_run", "find_run_by_name", "resolve_tracking_uri", "start_run"]
