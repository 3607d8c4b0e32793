"""SIGTERM -> SIGINT for a search: Tune stops gracefully on SIGINT and saves its state for --resume."""

from __future__ import annotations

import os
import signal
import threading


class SearchInterrupt:
    """Context manager; `signalled` tells the driver the search ended because it was told to stop."""

    def __init__(self) -> None:
        self.signalled = False
        self._old: dict[int, object] = {}

    def __enter__(self) -> "SearchInterrupt":
        if threading.current_thread() is threading.main_thread():
            self._old[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_term)
            self._old[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_int)
        return self

    def _on_term(self, signum, frame) -> None:
        self.signalled = True
        os.kill(os.getpid(), signal.SIGINT)  # Tune's handler (installed during fit) takes it from here

    def _on_int(self, signum, frame) -> None:
        # Reached outside Tune's fit (before it starts, or after it restored this handler).
        self.signalled = True
        raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
