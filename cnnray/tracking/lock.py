"""A cross-process, cross-host lock held on the MLflow tracking server itself.

MLflow has no compare-and-set, but creating a registered model is atomic: the store's primary key on
the name lets exactly one `create_registered_model(NAME.cnnray-lock)` succeed while the others get
RESOURCE_ALREADY_EXISTS (or RESOURCE_DOES_NOT_EXIST if the holder deleted it just after: see _try_create),
whichever host they run on, as long as they talk to one tracking server (SQLite or PostgreSQL store: tested).

- acquire: create the lock model with tags `token` (a fresh uuid4) and `expires` (unix time, a lease);
  on RESOURCE_ALREADY_EXISTS wait and retry until `timeout`.
- release: delete the lock model, only while our lease still runs and the token is still ours; an
  expired holder never deletes (a breaker may already have replaced its lock).
- a dead holder: once its lease has expired, a waiter breaks the lock. Breaking is itself serialized by
  an atomic create of `NAME.cnnray-lock.break.<stale token>`: one breaker per stale token wins, re-reads
  that the lock still carries that token, deletes it, and retries the normal acquire. A lock with a new
  token is never deleted by a breaker that saw the old one.
Leases assume host clocks agree to well within `lease_s` (NTP); holders must finish their critical
section inside the lease (promotion only writes a few tags and aliases there).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from cnnray.tracking.model_store import LOCK_SUFFIX, client

LEASE_S = 120.0
TIMEOUT_S = 300.0


class LockTimeout(RuntimeError):
    """The lock stayed held by another process for longer than the timeout."""


def _exists_error(e: Exception) -> bool:
    return "RESOURCE_ALREADY_EXISTS" in str(getattr(e, "error_code", ""))


def _missing_error(e: Exception) -> bool:
    return "RESOURCE_DOES_NOT_EXIST" in str(getattr(e, "error_code", ""))


def _read(c, lock_name: str) -> dict[str, str] | None:
    # deferred (heavy import): mlflow
    from mlflow.exceptions import MlflowException

    try:
        return dict(c.get_registered_model(lock_name).tags or {})
    except MlflowException as e:
        if _missing_error(e):
            return None
        raise


def _try_create(c, name: str, tags: dict[str, str], description: str) -> bool:
    # deferred (heavy import): mlflow
    from mlflow.exceptions import MlflowException

    try:
        c.create_registered_model(name, tags=tags, description=description)
        return True
    except MlflowException as e:
        # RESOURCE_DOES_NOT_EXIST is a lost race too: on the insert's IntegrityError MLflow's SQL store re-reads
        # the existing model to word its error, and a holder that released (deleted) it in between makes that
        # read fail. Either way the name was taken when we tried: not acquired, try again.
        if _exists_error(e) or _missing_error(e):
            return False
        raise


def _delete(c, name: str) -> None:
    # deferred (heavy import): mlflow
    from mlflow.exceptions import MlflowException

    try:
        c.delete_registered_model(name)
    except MlflowException as e:
        if not _missing_error(e):
            raise


def _break_if_stale(c, lock_name: str, seen: dict[str, str]) -> None:
    token = seen.get("token", "")
    if float(seen.get("expires", "0")) > time.time() or not token:
        return
    breaker = f"{lock_name}.break.{token}"
    if not _try_create(c, breaker, {}, "breaking an expired cnnray lock"):
        return  # another waiter is breaking this one
    try:
        now = _read(c, lock_name)
        if now is not None and now.get("token") == token:
            _delete(c, lock_name)
    finally:
        _delete(c, breaker)


@contextmanager
def registry_lock(tracking_uri: str, name: str, *, lease_s: float = LEASE_S, timeout_s: float = TIMEOUT_S,
                  poll_s: float = 0.2) -> Iterator[str]:
    """Hold the promotion lock of registered model `name`; yields the token."""
    c = client(tracking_uri)
    lock_name = f"{name}{LOCK_SUFFIX}"
    token = uuid.uuid4().hex
    holder = f"{os.environ.get('USER', 'unknown')}@{socket.gethostname()}:{os.getpid()}"
    deadline = time.time() + timeout_s
    while True:
        expires = time.time() + lease_s
        if _try_create(c, lock_name, {"token": token, "expires": f"{expires:.3f}", "holder": holder},
                       f"cnnray promotion lock of {name!r}, held by {holder}; removed when done"):
            break
        seen = _read(c, lock_name)
        if seen is not None:
            _break_if_stale(c, lock_name, seen)
        if time.time() > deadline:
            raise LockTimeout(f"the promotion lock of {name!r} is held by {(seen or {}).get('holder', '?')}; "
                              f"waited {timeout_s:.0f} s")
        time.sleep(poll_s * (0.5 + uuid.uuid4().int % 100 / 100))  # jitter: waiters do not retry in lockstep
    try:
        yield token
        if time.time() > expires:
            raise LockTimeout(f"the promotion lock of {name!r} expired while held ({lease_s:.0f} s lease)")
    finally:
        if time.time() < expires:
            now = _read(c, lock_name)
            if now is not None and now.get("token") == token:
                _delete(c, lock_name)
