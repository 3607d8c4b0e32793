"""sha256 helpers for content fingerprints (data lineage)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def combine(parts: Iterable[str]) -> str:
    """One sha256 over an ordered list of strings (e.g. shard hashes), unambiguous by newline framing."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\n")
    return h.hexdigest()
