"""Write a directory under a temporary name and rename it into place, so a half-written one never looks done."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cnnray.errors import DataError


def check_output(out: Path, overwrite: bool) -> Path:
    """The absolute output path; DataError when it exists and overwrite is off."""
    out = Path(out).expanduser().resolve()
    if out.exists() and not overwrite:
        raise DataError(f"output {out} already exists; pass --overwrite to replace it")
    return out


@contextmanager
def atomic_directory(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield `OUT.tmp-<pid>` to fill; on success it becomes OUT, on any error it is removed."""
    out = check_output(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():  # --overwrite: move the old one aside first so OUT is only ever absent for an instant
        old = out.with_name(f"{out.name}.old-{os.getpid()}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)
