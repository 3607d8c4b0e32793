"""A private PostgreSQL server for the tests: `initdb` into a temp dir, trust on 127.0.0.1 only, a free port.

Production MLflow registries run on PostgreSQL, whose locking and error mapping differ from SQLite's, so
the registry tests run against both. Each test session (each pytest-xdist worker) starts its own server;
`create_database` gives each test module a fresh database. PostgreSQL refuses to run as root: as root the
server runs as the unprivileged `postgres` user that Debian's package creates (or a system user made here).
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

INSTALL_HINT = ("install PostgreSQL's server: `bash .ci/install-system` (apt-get installs Debian's `postgresql`), "
                "or your system's PostgreSQL server package")
_FALLBACK_USER = "cnnray-pg"


def find_bin_dir() -> Path | None:
    """The directory of `initdb`/`pg_ctl`/`postgres`: Debian's /usr/lib/postgresql/<highest>/bin, else PATH's."""
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file()]
    if found:
        return max(found, key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.name)] or [0])
    exe = shutil.which("initdb")
    if exe and shutil.which("pg_ctl", path=str(Path(exe).resolve().parent)):
        return Path(exe).resolve().parent
    return None


def missing_reason() -> str | None:
    """Why a PostgreSQL server cannot be started here (no binaries, no driver), or None."""
    if find_bin_dir() is None:
        return f"no PostgreSQL server binaries (initdb not in /usr/lib/postgresql/*/bin nor on PATH): {INSTALL_HINT}"
    try:
        import psycopg2  # noqa: F401  (MLflow's SQLAlchemy store needs it for postgresql:// URIs)
    except ImportError:
        return "psycopg2 is not installed: `.venv/bin/pip install -e '.[dev]'` (psycopg2-binary)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_user() -> str | None:
    """The OS user to run the server as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", _FALLBACK_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _FALLBACK_USER],
                   check=True, capture_output=True)
    return _FALLBACK_USER


class PostgresServer:
    """One `postgres` process on 127.0.0.1:port with its data, socket and log in a private temp dir."""

    superuser = "postgres"  # the database role (initdb -U), whatever OS user runs the server

    def __init__(self, bin_dir: Path | None = None):
        self.bin_dir = bin_dir or find_bin_dir()
        if self.bin_dir is None:
            raise RuntimeError(missing_reason())
        self.os_user = _server_user()
        # Not under pytest's basetemp: that is mode 0700 for root, and the server's user must reach its dir.
        self.root = Path(tempfile.mkdtemp(prefix="cnnray-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port: int | None = None
        self.start_s: float | None = None
        if self.os_user:
            shutil.chown(self.root, user=self.os_user, group=pwd.getpwnam(self.os_user).pw_gid)

    def _run(self, exe: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(self.bin_dir / exe), *args]
        if self.os_user:
            cmd = ["runuser", "-u", self.os_user, "--", *cmd] if shutil.which("runuser") else \
                ["su", self.os_user, "-s", "/bin/sh", "-c", shlex.join(cmd)]
        return subprocess.run(cmd, check=False, cwd=self.root, capture_output=True, text=True, timeout=timeout)

    def start(self, tries: int = 3, timeout_s: float = 60.0) -> PostgresServer:
        t0 = time.perf_counter()
        r = self._run("initdb", "-D", str(self.data), "-U", self.superuser, "--auth=trust", "-E", "UTF8",
                      "--locale=C", "--no-sync", "--no-instructions")
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed ({r.returncode}): {r.stdout[-1500:]}{r.stderr[-1500:]}")
        # Trust, on 127.0.0.1 only: no socket line (its dir is private anyway), no ::1, no other address.
        (self.data / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
        errors = []
        for _ in range(tries):  # the free port may be taken between _free_port() and the bind
            port = _free_port()
            opts = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={self.root} "
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                    "-c shared_buffers=32MB")
            r = self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w",
                          "-t", str(int(timeout_s)), "-o", opts, timeout=timeout_s + 30)
            if r.returncode == 0 and self._accepts(port, timeout_s):
                self.port = port
                self.start_s = time.perf_counter() - t0
                return self
            errors.append(f"port {port}: pg_ctl start -> {r.returncode}: {r.stderr[-500:]} {self._log_tail()}")
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate")
        self.cleanup()
        raise RuntimeError(f"PostgreSQL did not start in {tries} tries:\n" + "\n".join(errors))

    def _accepts(self, port: int, timeout_s: float) -> bool:
        import psycopg2

        deadline = time.time() + timeout_s
        while time.time() < deadline:
            try:
                psycopg2.connect(host="127.0.0.1", port=port, user=self.superuser, dbname="postgres",
                                 connect_timeout=2).close()
                return True
            except psycopg2.OperationalError:
                time.sleep(0.1)
        return False

    def _log_tail(self) -> str:
        try:
            return self.log.read_text()[-1500:]
        except OSError:
            return ""

    def uri(self, dbname: str) -> str:
        """SQLAlchemy URI of `dbname` (what `mlflow server --backend-store-uri` takes).

        The driver is named: SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3, 2.0 to psycopg2.
        """
        return f"postgresql+psycopg2://{self.superuser}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` (letters, digits, _ only); returns its URI."""
        import psycopg2

        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"database name {name!r}: use lowercase letters, digits and _")
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.superuser, dbname="postgres")
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.uri(name)

    def stop(self) -> None:
        if self.port is not None:
            r = self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", timeout=90)
            if r.returncode != 0:
                self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w", timeout=60)
            self.port = None
        self.cleanup()

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
