"""A closed-loop HTTP load generator: C clients, each on its own keep-alive connection, posting one body
over and over; every answer is recorded (status, latency, the version that answered). Standard library
only, so the same client measures `cnnray serve` and `mlflow models serve`."""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Answer:
    """One request: when it was sent (monotonic s), how long it took, its status (0: no answer), its version."""

    sent: float
    latency: float
    status: int
    version: str | None
    error: str | None = None
    retries: int = 0  # how often the server retried it on another replica (X-Retries)
    body: bytes = b""  # the answer's body (kept when the caller asks: `keep_bodies`)


@dataclass
class LoadResult:
    """Every answer of one load run, with the wall time it covered."""

    answers: list[Answer] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: int) -> int:
        """Answers with this status."""
        return sum(a.status == status for a in self.answers)

    def statuses(self) -> dict[int, int]:
        """Answers per status (0: no answer: connection refused or reset)."""
        out: dict[int, int] = {}
        for a in self.answers:
            out[a.status] = out.get(a.status, 0) + 1
        return out

    def requests_per_s(self) -> float:
        """Successful answers per second of wall time."""
        return self.count(200) / self.seconds if self.seconds else 0.0

    def latency_ms(self, q: float) -> float:
        """The q-quantile (0-1) of successful answers' latency, in milliseconds."""
        lat = sorted(a.latency for a in self.answers if a.status == 200)
        if not lat:
            return float("nan")
        return 1000.0 * lat[min(len(lat) - 1, int(q * len(lat)))]


def _version(status: int, raw: bytes, headers: http.client.HTTPMessage) -> str | None:
    if status != 200:
        return None
    v = headers.get("X-Model-Version")
    if v:
        return v
    try:
        return str(json.loads(raw).get("version")) if raw.startswith(b"{") else None
    except ValueError:
        return None


def _client(url: str, body: bytes, stop: threading.Event, until: float, limit: int | None,
            out: list[Answer], lock: threading.Lock, timeout: float, keep_bodies: bool) -> None:
    parts = urlsplit(url)
    conn: http.client.HTTPConnection | None = None
    sent = 0
    while not stop.is_set() and time.monotonic() < until and (limit is None or sent < limit):
        t0 = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
            conn.request("POST", parts.path, body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            raw = r.read()
            a = Answer(t0, time.monotonic() - t0, r.status, _version(r.status, raw, r.headers),
                       None if r.status == 200 else raw[:300].decode(errors="replace"),
                       int(r.headers.get("X-Retries") or 0), raw if keep_bodies else b"")
        except (OSError, http.client.HTTPException) as e:
            a = Answer(t0, time.monotonic() - t0, 0, None, f"{type(e).__name__}: {e}")
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.05)  # a refused connection returns at once: do not spin
        sent += 1
        with lock:
            out.append(a)
    if conn is not None:
        conn.close()


def run_load(url: str, body: bytes, concurrency: int, *, seconds: float | None = None, requests: int | None = None,
             stop: threading.Event | None = None, timeout: float = 60.0, keep_bodies: bool = False) -> LoadResult:
    """Post `body` to `url` from `concurrency` clients for `seconds`, or `requests` each, or until `stop` is set."""
    stop = stop or threading.Event()
    until = time.monotonic() + (seconds if seconds is not None else 1e9)
    answers: list[Answer] = []
    lock = threading.Lock()
    threads = [threading.Thread(target=_client, args=(url, body, stop, until, requests, answers, lock, timeout, keep_bodies),
                                daemon=True) for _ in range(concurrency)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return LoadResult(sorted(answers, key=lambda a: a.sent), time.monotonic() - t0)
