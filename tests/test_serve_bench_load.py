"""The load generator `cnnray bench serve` and the serving tests measure with, against a real local HTTP
server: every answer counted by status, its version read, latencies in order, a dead server seen as
status 0; and the bench table naming every server, concurrency and the goal."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cnnray.bench.http_load import run_load
from cnnray.bench.serve import format_serve_bench


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the load clients use it
    count = 0
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            type(self).count += 1
            n = type(self).count
        status, body = (503, b"busy") if n % 5 == 0 else (200, json.dumps({"version": "7"}).encode())
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if n % 10 == 1:
            self.send_header("X-Retries", "2")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    _Handler.count = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/invocations"
    httpd.shutdown()
    httpd.server_close()


def test_every_answer_is_counted_with_its_status_and_version(server):
    r = run_load(server, b"{}", 4, requests=25)
    assert len(r.answers) == 100 == _Handler.count
    assert r.statuses() == {200: 80, 503: 20}
    assert {a.version for a in r.answers if a.status == 200} == {"7"} and all(a.version is None for a in r.answers
                                                                            if a.status == 503)
    assert sum(a.retries == 2 for a in r.answers) == 10
    assert r.latency_ms(0.5) <= r.latency_ms(0.99) and r.requests_per_s() > 0
    assert [a.sent for a in r.answers] == sorted(a.sent for a in r.answers)


def test_a_server_that_is_gone_is_status_0_not_an_exception(server):
    dead = server.replace(server.split(":")[2].split("/")[0], "1")  # port 1: nothing listens
    r = run_load(dead, b"{}", 2, requests=3)
    assert r.statuses() == {0: 6} and all("Error" in a.error for a in r.answers)
    assert r.requests_per_s() == 0 and r.latency_ms(0.5) != r.latency_ms(0.5)  # NaN: no successful answer


def test_the_table_names_every_server_concurrency_and_the_goal():
    def rows(base):
        return [{"concurrency": c, "requests_per_s": base * c ** 0.5, "p50_ms": 10.0 * c, "p99_ms": 20.0 * c,
                 "errors": 0, "ratio_vs_mlflow": base / 40.0, "mean_batch": c / 3 if base > 40 else None}
                for c in (1, 8, 32)]

    r = {"model": "cbam_resnet18", "image_size": 32, "cpus": 2, "cpu_flags": "CPU; avx2", "seconds": 10.0,
         "max_batch_size": 32, "batch_wait_ms": 2.0, "goal_ratio_at_32": 1.5, "ratio_at_32": 2.5, "goal_met": True,
         "servers": {"mlflow models serve (1 worker)": rows(40.0), "cnnray serve (1 replica)": rows(100.0),
                     "cnnray serve (2 replicas)": rows(90.0)}}
    text = format_serve_bench(r)
    assert len(text.splitlines()) == 2 + 9 + 1  # description, column names, 3 servers x 3 rows, the goal
    for name in r["servers"]:
        assert sum(line.startswith(name) for line in text.splitlines()) == 3 + ("1 replica" in name)  # + the goal
    assert "x2.50 (goal >= 1.5: met)" in text and "CPU; avx2" in text and "10.7" in text
