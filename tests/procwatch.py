"""Find a test's own processes by a marker in their environment: a check that no process outlived a command
must not see another test's processes (pytest-xdist runs several test files at once on this machine)."""

from __future__ import annotations

import os
import time
import uuid


def new_marker() -> dict[str, str]:
    """An environment entry that every descendant of a command inherits."""
    return {"CNNRAY_TEST_MARK": uuid.uuid4().hex}


def marked(mark: dict[str, str], pattern: str = "") -> list[int]:
    """Live processes (not zombies) whose environment holds `mark` and whose command line contains `pattern`."""
    needle = "CNNRAY_TEST_MARK={}".format(mark["CNNRAY_TEST_MARK"]).encode() + b"\0"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read() + b"\0"
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env and pattern in cmd and state != "Z":
            found.append(int(entry))
    return found


def wait_gone(mark: dict[str, str], pattern: str = "", timeout_s: float = 10.0) -> list[int]:
    """Poll until no marked process matches; the survivors if some are still there after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while (left := marked(mark, pattern)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left
