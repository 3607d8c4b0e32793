"""Lineage tags for registered model versions: what code, data and config produced them."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

# Version tags of the held-out evaluation at the end of training (the only time training reads test images).
TEST_FINGERPRINT_TAG = "cnnray.test_fingerprint"
TEST_COUNT_TAG = "cnnray.test_n"


def git_commit(path: str | Path = ".") -> str | None:
    """The HEAD commit of the repository holding `path`, if it is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a trained model."""
    out = {}
    for pkg in ("torch", "ray", "mlflow", "cnnray"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def lineage_tags(*, config_hash: str, data_fingerprint: str, ray_run_name: str, weights: str,
                 extra: dict[str, str] | None = None) -> dict[str, str]:
    """The tags every registered version carries."""
    tags = {
        "cnnray.config_hash": config_hash,
        "cnnray.data_fingerprint": data_fingerprint,
        "cnnray.ray_run_name": ray_run_name,
        "cnnray.weights": weights,
    }
    commit = git_commit(Path(__file__).resolve().parent) or git_commit(Path.cwd())
    if commit:
        tags["cnnray.git_commit"] = commit
    tags.update({f"cnnray.version.{k}": v for k, v in package_versions().items()})
    tags.update(extra or {})
    return tags
