"""`cnnray serve` options, checked before Ray or MLflow is imported: bad input exits 2 before any work."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

from cnnray.classifier.request import MAX_IMAGES
from cnnray.errors import UserInputError
from cnnray.tracking.uri import ModelRef, parse_model_uri

APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LOOPBACK = "127.0.0.1"


def check_app_name(name: str) -> str:
    """`name` when it is a plain app name (it names a state file: no path, no spaces); UserInputError if not."""
    if not APP_NAME.match(name or "") or ".." in name:
        raise UserInputError(f"--name {name!r} is not an app name: use 1-64 letters, digits, '_', '.', '-' "
                             "(starting with a letter or digit; not a path)")
    return name


def parse_autoscale(text: str | None) -> tuple[int, int] | None:
    """"MIN:MAX" -> (min, max) replicas, 0 <= MIN <= MAX, MAX >= 1; UserInputError naming the form."""
    if text is None:
        return None
    m = re.fullmatch(r"(\d+):(\d+)", text.strip())
    if not m or int(m[2]) < 1 or int(m[1]) > int(m[2]):
        raise UserInputError(f"--autoscale {text!r}: expected MIN:MAX replicas with 0 <= MIN <= MAX and MAX >= 1, "
                             "e.g. 1:4")
    return int(m[1]), int(m[2])


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on host:port (a bind test: nothing is left open)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


@dataclass(frozen=True)
class ServeOptions:
    """What `cnnray serve` was asked for; `validate()` raises UserInputError naming the flag."""

    model: str
    tracking_uri: str = ""
    name: str = "cnnray"
    replicas: int = 1
    autoscale: str | None = None
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0
    max_batch_size: int = 32
    batch_wait_ms: float = 2.0
    max_images: int = MAX_IMAGES
    follow_interval: float = 10.0
    host: str = LOOPBACK
    port: int = 8000
    address: str | None = None
    verbose: bool = False

    @property
    def ref(self) -> ModelRef:
        """The parsed --model."""
        return parse_model_uri(self.model)

    @property
    def follows(self) -> bool:
        """An alias is followed; a fixed version is served as is."""
        return self.ref.alias is not None

    @property
    def autoscale_range(self) -> tuple[int, int] | None:
        """(min, max) replicas under --autoscale, or None for a fixed --replicas."""
        return parse_autoscale(self.autoscale)

    def validate(self) -> None:
        """UserInputError for the first bad flag, before any work starts."""
        if self.ref.run_id:
            raise UserInputError(f"--model {self.model}: serve a registered model (models:/NAME@ALIAS to follow an "
                                 "alias, or models:/NAME/VERSION); a run's model has no alias to follow")
        check_app_name(self.name)
        self.autoscale_range  # noqa: B018 - parses and refuses a bad MIN:MAX
        checks = [
            (self.replicas >= 1 and float(self.replicas).is_integer(), "--replicas", "an integer >= 1"),
            (0 < self.cpus_per_replica <= 1024, "--cpus-per-replica", "a number > 0"),
            (0 <= self.gpus_per_replica <= 64, "--gpus-per-replica", "a number >= 0 (fractions share a GPU)"),
            (1 <= self.max_batch_size <= 4096, "--max-batch-size", "an integer 1-4096 (requests per forward pass)"),
            (0 <= self.batch_wait_ms <= 10_000, "--batch-wait-ms", "0-10000 milliseconds"),
            (1 <= self.max_images <= 100_000, "--max-images", "an integer 1-100000 (images per request)"),
            (0.1 <= self.follow_interval <= 86_400, "--follow-interval", "0.1-86400 seconds"),
            (1 <= self.port <= 65535, "--port", "1-65535"),
        ]
        for ok, flag, allowed in checks:
            if not ok:
                raise UserInputError(f"{flag} {getattr(self, flag[2:].replace('-', '_'))!r}: expected {allowed}")
        if self.autoscale and self.replicas != 1:
            raise UserInputError("--replicas and --autoscale exclude each other: give one")
        if self.address is None and port_in_use(self.host, self.port):
            raise UserInputError(f"--port {self.port}: {self.host}:{self.port} is already in use (another "
                                 "`cnnray serve`, or another server); stop it or pick another --port")


@dataclass(frozen=True)
class ReplicaSettings:
    """What every replica of the app is built with (crosses to the replicas' processes)."""

    app: str
    model: str
    tracking_uri: str
    follow: bool
    follow_interval: float
    max_batch_size: int
    batch_wait_s: float
    max_images: int
    device: str


def replica_settings(opt: ServeOptions) -> ReplicaSettings:
    """The replicas' settings for validated options."""
    return ReplicaSettings(opt.name, opt.model, opt.tracking_uri, opt.follows, opt.follow_interval,
                           opt.max_batch_size, opt.batch_wait_ms / 1000.0, opt.max_images,
                           "cuda" if opt.gpus_per_replica > 0 else "cpu")
