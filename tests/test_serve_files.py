"""Paths given to `cnnray predict` that are not regular files are named for what they are and never opened."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnray.errors import DataError
from cnnray.serve.files import collect_images

REPO = Path(__file__).resolve().parents[1]

# A named pipe opened for reading blocks until a writer comes: a regression hangs, so every test is bounded.
pytestmark = pytest.mark.timeout(150)


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_named_pipe_is_refused_without_being_opened(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=f"^{fifo} is not a regular file \\(a named pipe\\)$"):
        collect_images([str(fifo)])
    link = tmp_path / "link.png"
    link.symlink_to(fifo)  # followed: what it points to is what is read
    with pytest.raises(DataError, match="link.png is not a regular file \\(a named pipe\\)"):
        collect_images([str(link)])


def test_devices_sockets_broken_links_and_missing_paths_are_named(tmp_path):
    with pytest.raises(DataError, match="^/dev/null is not a regular file \\(a character device\\)$"):
        collect_images(["/dev/null"])
    broken = tmp_path / "gone.png"
    broken.symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(DataError, match="gone.png is a broken symbolic link"):
        collect_images([str(broken)])
    with pytest.raises(DataError, match="missing.png does not exist"):
        collect_images([str(tmp_path / "missing.png")])
    sock_path = f"/tmp/cnnray-test-{os.getpid()}.sock"  # short: AF_UNIX paths are limited to ~108 bytes
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(sock_path)
        try:
            with pytest.raises(DataError, match="is not a regular file \\(a socket\\)"):
                collect_images([sock_path])
        finally:
            os.unlink(sock_path)


def test_directories_skip_pipes_inside_them(tmp_path):
    (tmp_path / "a.png").write_bytes(_png())
    os.mkfifo(tmp_path / "b.png")
    (tmp_path / "sub").mkdir()
    os.mkfifo(tmp_path / "sub" / "c.png")
    files, data = collect_images([str(tmp_path)])
    assert files == [tmp_path / "a.png"] and data == [_png()]


def test_predict_exits_2_on_a_named_pipe(tmp_path):
    """As a user runs it: refused before any model is loaded, with the path and what it is."""
    fifo = tmp_path / "incoming.png"
    os.mkfifo(fifo)
    proc = subprocess.run([sys.executable, "-m", "cnnray.cli", "predict", "--model", "models:/any/1", str(fifo),
                           f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"error: {fifo} is not a regular file (a named pipe)" in proc.stderr, proc.stderr


def test_a_parquet_input_that_is_missing_or_not_parquet_is_named(tmp_path):
    from cnnray.errors import DataError
    from cnnray.serve.batch import parquet_source

    with pytest.raises(DataError, match="does not exist"):
        parquet_source(str(tmp_path / "nonexist"), None)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="is not a readable Parquet file"):
        parquet_source(str(tmp_path / "bad.parquet"), None)
