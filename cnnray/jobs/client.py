"""Which Ray job API a command talks to, with which token, and a fast check that it answers.

The address comes from `--address`, then `RAY_API_SERVER_ADDRESS` / `RAY_ADDRESS` (Ray's own
variables), then the cluster `cnnray cluster up` started. A bare `host:port` means `http://host:port`.
The check has a short timeout: an unreachable or wrong address fails in seconds (exit 2), not after
the minutes a TCP connect to a silent host can take.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from cnnray.cluster import auth
from cnnray.cluster.nodes import load_cluster_state
from cnnray.errors import UserInputError

CONNECT_TIMEOUT_S = 4.0


@dataclass(frozen=True)
class Target:
    """A job API URL and the token to present there (None: no token found)."""

    url: str
    token: str | None
    local: bool  # the cluster `cnnray cluster up` started


def _normalize(address: str) -> str:
    address = address.strip().rstrip("/")
    if address.startswith("ray://"):
        raise UserInputError(f"--address {address}: Ray Client addresses are not job API addresses; pass the "
                             "dashboard URL, e.g. http://HEAD:8265")
    return address if "://" in address else f"http://{address}"


def resolve_target(address: str | None = None) -> Target:
    """The job API to use and its token; UserInputError when there is none."""
    state = load_cluster_state()
    given = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if given and given != "auto":
        url = _normalize(given)
        if state is not None and url in (state.dashboard_url, f"http://{state.gcs_address}"):
            return Target(state.dashboard_url, state.token(), True)
        return Target(url, auth.token_from_environment(), False)
    if state is None or not state.is_running():
        raise UserInputError("no Ray cluster to talk to: pass --address http://HEAD:8265, set RAY_ADDRESS, or start "
                             "a local one with `cnnray cluster up`")
    return Target(state.dashboard_url, state.token(), True)


def probe_target(target: Target, timeout: float = CONNECT_TIMEOUT_S) -> dict[str, Any]:
    """GET /api/version within `timeout`: the cluster's versions, or UserInputError saying what is wrong."""
    # deferred (heavy import): requests
    import requests

    try:
        r = requests.get(f"{target.url}/api/version", headers=auth.bearer(target.token), timeout=timeout)
    except requests.RequestException as e:
        reason = type(e).__name__ if isinstance(e, requests.Timeout) else str(e).split("(")[0].strip() or type(e).__name__
        raise UserInputError(f"cannot reach the Ray job API at {target.url} within {timeout:.0f} s ({reason}); is "
                             "the cluster up (`cnnray cluster status`) and is this its dashboard address?") from None
    if r.status_code == 401:
        raise UserInputError(f"{target.url} refused the request: token authentication is on and no token was found. "
                             f"Set {auth.TOKEN_ENV} or {auth.TOKEN_PATH_ENV}, or put the cluster's token in "
                             f"{auth.DEFAULT_TOKEN_FILE} (`ray get-auth-token` on the head prints it)")
    if r.status_code == 403:
        raise UserInputError(f"{target.url} refused the token presented (HTTP 403): it is not this cluster's token")
    try:
        info = r.json()
        info["ray_version"]
    except (ValueError, KeyError, TypeError):
        raise UserInputError(f"{target.url} answered HTTP {r.status_code} but is not a Ray job API (is this the "
                             "dashboard port, 8265 by default?)") from None
    return info


def prepare(address: str | None = None) -> Target:
    """Resolve and check the address, and set this process up to present its token (before Ray is imported)."""
    target = resolve_target(address)
    auth.use_token(target.token)
    probe_target(target)
    return target


def job_client(target: Target) -> Any:
    """Ray's JobSubmissionClient for a prepared target."""
    # deferred (heavy import): ray
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(target.url)
