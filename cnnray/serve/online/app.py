"""The Ray Serve application of `cnnray serve`: a gateway (HTTP), classifier replicas, the signal they follow by.

HTTP (route prefix "/", served by the gateway, which batches requests (batcher.py) and retries a batch whose
replica died, then answers 503): POST /invocations (MLflow's scoring bodies; see cnnray.classifier.request),
GET /health, GET /version, GET /status (every replica's version and what it refused), POST /follow
(re-resolve the alias now: what `cnnray promote` / `rollback` send).

Following: each replica waits on the `FollowSignal` deployment for at most `follow_interval` seconds (a
notification ends the wait early), then re-resolves the alias. A new version is loaded beside the one that
serves, smoke-tested on its own input example, and only then swapped in by one reference assignment: a
request holds the version it started with until it is answered (by that version, which it names), and
the old version is freed when the last such request is done.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

import ray
import torch
from ray import serve
from ray.exceptions import RayActorError
from starlette.requests import Request
from starlette.responses import JSONResponse

from cnnray.classifier.classifier import Predictions
from cnnray.classifier.request import BadRequest, accepted, checked_images, parse_body
from cnnray.errors import InvalidCardError, UserInputError
from cnnray.serve.online.batcher import ContinuousBatcher
from cnnray.serve.online.loaded import LoadedVersion, SmokeTestError, load
from cnnray.serve.online.options import ReplicaSettings
from cnnray.tracking.model_store import resolve

log = logging.getLogger("ray.serve")
MAX_BODY = 64 << 20  # bytes of one request body
REFUSED_FOR_GOOD = (SmokeTestError, InvalidCardError, UserInputError, RuntimeError, ValueError, KeyError)
SWITCHES_KEPT = 20


# Short graceful shutdowns: the signal's ongoing calls are long-polls (a drain would wait them out), and
# the gateway and replicas finish a batch in well under a second.
@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=10_000,
                  graceful_shutdown_timeout_s=0.5, graceful_shutdown_wait_loop_s=0.1)
class FollowSignal:
    """A generation counter the replicas long-poll (a notification bumps it) and their reported states."""

    def __init__(self) -> None:
        self.generation = 0
        self._changed = asyncio.Event()
        self._replicas: dict[str, dict[str, Any]] = {}

    async def notify(self) -> int:
        """Wake every waiting replica: they re-resolve the alias now."""
        self.generation += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return self.generation

    async def wait(self, seen: int, timeout: float) -> int:
        """The generation, once it differs from `seen` or after `timeout` seconds."""
        changed = self._changed
        if self.generation == seen:
            try:
                await asyncio.wait_for(changed.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        return self.generation

    def report(self, state: dict[str, Any]) -> None:
        """A replica's view: its version, what it refused, when it last checked."""
        self._replicas[state["replica"]] = {**state, "reported": time.time()}

    def status(self, stale_after: float) -> list[dict[str, Any]]:
        """The replicas that reported within `stale_after` seconds (a replaced replica drops out)."""
        now = time.time()
        self._replicas = {k: v for k, v in self._replicas.items() if now - v["reported"] <= stale_after}
        return sorted(self._replicas.values(), key=lambda v: v["replica"])


@dataclass(frozen=True)
class _Item:
    """One request in a batch: the version it was checked against and its images."""

    loaded: LoadedVersion
    x: torch.Tensor
    top_k: int
    logits: bool


def _predict_groups(items: list[_Item]) -> list[list[dict[str, Any]]]:
    """Records per item; items checked against different versions (a switch mid-batch) run apart."""
    out: list[list[dict[str, Any]]] = [[] for _ in items]
    groups: dict[int, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(id(it.loaded), []).append(i)
    for idxs in groups.values():
        lv = items[idxs[0]].loaded
        x = torch.cat([items[i].x for i in idxs]) if len(idxs) > 1 else items[idxs[0]].x
        p = lv.clf.predict_uint8(x, top_k=max(items[i].top_k for i in idxs))
        start = 0
        for i in idxs:
            end, k = start + items[i].x.shape[0], items[i].top_k
            part = Predictions(p.logits[start:end], p.probs[start:end], p.index[start:end],
                               p.top_index[start:end, :k], p.top_prob[start:end, :k])
            out[i] = part.records(lv.clf.class_names, logits=items[i].logits)
            start = end
    return out


def _json(content: dict[str, Any], status: int = 200, version: str | None = None, retries: int = 0) -> JSONResponse:
    headers = {"X-Model-Version": version} if version else {}
    if retries:
        headers["X-Retries"] = str(retries)
    return JSONResponse(content, status_code=status, headers=headers or None)


RETRY_FOR_S = 30.0  # a request whose replica died is retried on another (or its replacement) this long, then 503
ROUTES = "POST /invocations, GET /health, GET /version, GET /status, POST /follow"


class Unavailable(RuntimeError):
    """No classifier replica answered within RETRY_FOR_S (every one died and none came back yet)."""


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=10_000,
                  graceful_shutdown_timeout_s=5, graceful_shutdown_wait_loop_s=0.2)
class Gateway:
    """The HTTP ingress. It batches POST /invocations bodies (ContinuousBatcher: one batch in flight per
    classifier replica) and sends each batch to a replica in one call: one hop per batch, not per request.
    A batch whose replica died under it is sent again to another replica or to the replacement (a
    prediction is idempotent), so a killed replica costs latency, not an error; after RETRY_FOR_S the
    batch's requests get 503."""

    async def __init__(self, classifier: Any, settings: ReplicaSettings, slots: int) -> None:
        self.classifier, self.settings = classifier, settings
        self.retried = self.unavailable = 0  # requests answered after a retry; requests answered 503
        self.batcher = ContinuousBatcher(self._send, settings.max_batch_size, settings.batch_wait_s, slots)

    async def __call__(self, request: Request) -> JSONResponse:
        """Route by method and path."""
        path, method = request.url.path.rstrip("/") or "/", request.method
        if path == "/invocations" and method == "POST":
            body = await request.body()
            if len(body) > MAX_BODY:
                return _json({"error": f"the body has {len(body)} bytes, more than {MAX_BODY}"}, 413)
            status, content, version, retries = await self.batcher.submit(body)
            return _json(content, status, version, retries)
        routes = {("GET", "/health"): "health", ("GET", "/ping"): "health", ("GET", "/version"): "version_view",
                  ("GET", "/status"): "status", ("POST", "/follow"): "follow"}
        if (method, path) not in routes:
            return _json({"error": f"no route {method} {path}; routes: {ROUTES}"}, 404)
        try:
            (status, content, version), retries = await self._call(routes[method, path])
        except Unavailable as e:
            return _json({"error": str(e)}, 503)
        if routes[method, path] == "status":
            content = {**content, "gateway": {"retried": self.retried, "unavailable": self.unavailable,
                                              "batches": self.batcher.batches, "mean_batch": self.batcher.mean_batch}}
        return _json(content, status, version, retries)

    async def _send(self, bodies: list[bytes]) -> list[tuple[int, dict[str, Any], str | None, int]]:
        try:
            answers, retries = await self._call("invocations", bodies)
        except Unavailable as e:
            self.unavailable += len(bodies)
            return [(503, {"error": str(e)}, None, 0)] * len(bodies)
        self.retried += len(bodies) if retries else 0
        return [(*a, retries) for a in answers]

    async def _call(self, method: str, *args: Any) -> tuple[Any, int]:
        """(the classifier method's result, retries); Unavailable after RETRY_FOR_S of dead replicas."""
        deadline, retries = time.monotonic() + RETRY_FOR_S, 0
        while True:
            try:
                return await getattr(self.classifier, method).remote(*args), retries
            except RayActorError as e:
                if time.monotonic() > deadline:
                    raise Unavailable(f"no classifier replica answered within {RETRY_FOR_S:.0f} s "
                                      f"({type(e).__name__}); retry later") from None
                retries += 1
                await asyncio.sleep(min(0.05 * retries, 1.0))


@serve.deployment(max_constructor_retry_count=3, graceful_shutdown_timeout_s=5, graceful_shutdown_wait_loop_s=0.2,
                  health_check_period_s=5)
class ClassifierServer:
    """A model replica: answers with the version it holds and follows the alias. Its methods return
    (HTTP status, JSON content, version) for the gateway."""

    async def __init__(self, signal: Any, settings: ReplicaSettings) -> None:
        self.settings, self.signal = settings, signal
        self.replica = _replica_id()
        resolved = await asyncio.to_thread(resolve, settings.model, settings.tracking_uri)
        self.current: LoadedVersion = await asyncio.to_thread(load, resolved, settings.tracking_uri, settings.device)
        self.refused: dict[str, str] = {}
        self.switches: list[dict[str, Any]] = []
        self.last_check, self.last_error = time.time(), None
        self.batches = self.batched = 0  # forward passes and the requests they answered (mean batch size)
        self._follower = asyncio.get_running_loop().create_task(self._follow())

    # -- what the gateway calls -----------------------------------------------------------------------------
    def health(self) -> tuple[int, dict[str, Any], str]:
        """200 with the version held."""
        return 200, {"status": "ok", "version": self.current.version}, self.current.version

    def version_view(self) -> tuple[int, dict[str, Any], str]:
        """What is served and what it accepts."""
        return 200, self._version_view(), self.current.version

    async def status(self) -> tuple[int, dict[str, Any], str]:
        """Every replica's reported state (its version, what it refused, when it last checked)."""
        replicas = await self.signal.status.remote(3 * self.settings.follow_interval + 5)
        return 200, {**self._version_view(), "replicas": replicas or [self._state()]}, self.current.version

    async def follow(self) -> tuple[int, dict[str, Any], str]:
        """Wake every replica's follower: they re-resolve the alias now."""
        generation = await self.signal.notify.remote() if self.settings.follow else None
        return 200, {"following": self.settings.model if self.settings.follow else None,
                     "generation": generation}, self.current.version

    async def invocations(self, bodies: list[bytes]) -> list[tuple[int, dict[str, Any], str | None]]:
        """A batch of POST /invocations bodies -> per body: predictions by one version, or 400 naming the problem."""
        loaded = self.current  # one version for the whole batch, from each body's check to its answer
        # Off the event loop: health checks, /status and the follower stay responsive during a forward pass.
        return await asyncio.to_thread(self._answer, loaded, bodies)

    def _answer(self, loaded: LoadedVersion, bodies: list[bytes]) -> list[tuple[int, dict[str, Any], str | None]]:
        out: list[tuple[int, dict[str, Any], str | None]] = [(500, {}, None)] * len(bodies)
        items, where = [], []
        for i, body in enumerate(bodies):
            try:
                try:
                    parsed = json.loads(body)
                except ValueError as e:
                    raise BadRequest(f"the body is not JSON ({e}); {accepted(self.settings.max_images)}") from None
                req = parse_body(parsed, self.settings.max_images)
                x = checked_images(req.images, loaded.clf.card.input, self.settings.max_images)
            except BadRequest as e:
                out[i] = (400, {"error_code": "BAD_REQUEST", "message": str(e)}, None)
                continue
            items.append(_Item(loaded, x, req.top_k, req.return_logits))
            where.append(i)
        if items:
            self.batches, self.batched = self.batches + 1, self.batched + len(items)
            for i, records in zip(where, _predict_groups(items)):
                out[i] = (200, {"predictions": records, "version": loaded.version, "model": loaded.label},
                          loaded.version)
        return out

    def _version_view(self) -> dict[str, Any]:
        return {"app": self.settings.app, "model": self.current.label, "version": self.current.version,
                "following": self.settings.model if self.settings.follow else None,
                "follow_interval_s": self.settings.follow_interval, "classes": list(self.current.clf.class_names),
                "input": {"image_size": self.current.clf.card.input.image_size,
                          "channels": self.current.clf.card.input.channels},
                "accepted": accepted(self.settings.max_images)}

    # -- following ----------------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"replica": self.replica, "pid": os.getpid(), "node": socket.gethostname(),
                "node_id": ray.get_runtime_context().get_node_id(),
                "version": self.current.version, "model": self.current.label, "loaded_at": self.current.loaded_at,
                "last_check": self.last_check, "last_error": self.last_error, "refused": dict(self.refused),
                "switches": list(self.switches), "batches": self.batches,
                "mean_batch": self.batched / self.batches if self.batches else None}

    async def _follow(self) -> None:
        generation = 0
        while True:
            await self._report()
            if not self.settings.follow:
                await asyncio.sleep(self.settings.follow_interval)
                continue
            try:
                generation = await self.signal.wait.remote(generation, self.settings.follow_interval)
            except Exception as e:  # noqa: BLE001 - the signal is being replaced: fall back to the interval
                self.last_error = f"follow signal unreachable ({type(e).__name__}); polling"
                await asyncio.sleep(self.settings.follow_interval)
            await self._check()

    async def _check(self) -> None:
        try:
            resolved = await asyncio.to_thread(resolve, self.settings.model, self.settings.tracking_uri)
        except Exception as e:  # noqa: BLE001 - the registry is unreachable: keep serving, say why
            self.last_error = f"cannot resolve {self.settings.model}: {type(e).__name__}: {e}"
            return
        self.last_check, self.last_error = time.time(), None
        new = str(resolved.version)
        if new == self.current.version or new in self.refused:
            return
        try:
            loaded = await asyncio.to_thread(load, resolved, self.settings.tracking_uri, self.settings.device)
        except REFUSED_FOR_GOOD as e:
            self.refused[new] = f"{type(e).__name__}: {e}"
            log.warning("cnnray serve: not switching to %s: %s", resolved.label, e)
            return
        except Exception as e:  # noqa: BLE001 - a download that failed: try again at the next check
            self.last_error = f"loading {resolved.label}: {type(e).__name__}: {e}"
            return
        old, self.current = self.current, loaded  # the switch: one assignment, between two requests' reads
        self.switches = [*self.switches, {"from": old.version, "to": loaded.version, "at": time.time()}][-SWITCHES_KEPT:]
        log.info("cnnray serve: switched %s -> %s", old.label, loaded.label)
        await self._report()

    async def _report(self) -> None:
        try:
            await self.signal.report.remote(self._state())
        except Exception:  # noqa: BLE001 - status is best effort; serving is not
            pass

    def check_health(self) -> None:
        """Serve's health check: a replica whose follower died is restarted."""
        if self._follower.done():
            raise RuntimeError(f"the follower task ended: {self._follower.exception()!r}")


def _replica_id() -> str:
    try:
        ctx = serve.get_replica_context()
        rid = getattr(ctx, "replica_id", None)
        return str(getattr(rid, "unique_id", rid) or ctx.replica_tag)
    except Exception:  # noqa: BLE001 - outside Serve (tests of the class itself)
        return f"pid-{os.getpid()}"


def build_app(settings: ReplicaSettings, *, replicas: int, autoscale: tuple[int, int] | None,
              cpus: float, gpus: float) -> Any:
    """The bound application: classifier replicas (fixed or autoscaled) composed with their follow signal."""
    # A replica takes one batch at a time from the gateway (plus status calls); more would queue there.
    options: dict[str, Any] = {"ray_actor_options": {"num_cpus": cpus, "num_gpus": gpus}, "max_ongoing_requests": 8}
    if autoscale:
        lo, hi = autoscale
        # A replica gets one batch at a time: more than one in flight on average means it is behind.
        # Up within seconds of a sustained queue, down only after a minute without one.
        options["autoscaling_config"] = {"min_replicas": lo, "max_replicas": hi, "initial_replicas": max(lo, 1),
                                         "target_ongoing_requests": 1, "upscale_delay_s": 5,
                                         "downscale_delay_s": 60, "look_back_period_s": 5}
    else:
        options["num_replicas"] = replicas
    classifier = ClassifierServer.options(**options).bind(FollowSignal.bind(), settings)
    return Gateway.bind(classifier, settings, autoscale[1] if autoscale else replicas)
