"""Lineage tags for registered model versions: what code, data and config produced them."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

# Version tags of the held-out evaluation at the end of training (the only time training reads test images).
TEST_FINGERPRINT_TAG = "cnnray.test_fingerprint"
TEST_COUNT_TAG = "cnnray.test_n"
HOST_CPU_TAG = "cnnray.host_cpu"  # the training host's CPU model and the vector flags that change its arithmetic
_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "asimd", "sve")


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


def host_cpu() -> str:
    """'MODEL; flags ...' of this machine's CPU (Linux /proc/cpuinfo; else the platform's processor name)."""
    import platform

    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine() or "unknown"
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")),
                 platform.machine())
    flags = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines()
                      if ln.startswith(("flags", "Features"))), []))
    return f"{model}; {' '.join(f for f in _CPU_FLAGS if f in flags) or 'no vector flags listed'}"


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
    tags[HOST_CPU_TAG] = host_cpu()
    tags.update(extra or {})
    return tags
