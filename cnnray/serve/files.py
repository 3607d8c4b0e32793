"""Image files named on the command line: expand directories, read bytes, refuse what is not an image."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from cnnray.data.codec import IMAGE_EXTENSIONS
from cnnray.errors import DataError

# What a path is when it is neither a file nor a directory. Nothing here is ever opened: a named pipe
# opened for reading blocks until a writer appears, a device may never end.
_SPECIAL = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def not_a_file_reason(p: Path) -> str | None:
    """Why `p` cannot be read as an image file ("does not exist", "is not a regular file (a named pipe)"...),
    or None for a regular file; found with stat alone, without opening it."""
    try:
        st = os.stat(p)  # follows symlinks: a link to a regular file is one
    except FileNotFoundError:
        return "is a broken symbolic link" if os.path.islink(p) else "does not exist"
    except OSError as e:  # permission denied on a parent, a loop of links, a name too long...
        return f"cannot be read ({e.strerror or e})"
    if stat.S_ISREG(st.st_mode):
        return None
    if stat.S_ISDIR(st.st_mode):
        return "is a directory"
    kind = next((what for test, what in _SPECIAL if test(st.st_mode)), "a special file")
    return f"is not a regular file ({kind})"


def collect_images(paths: list[str]) -> tuple[list[Path], list[bytes]]:
    """(files, their bytes): files as given, directories searched recursively for image extensions."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            # is_file() is a stat: pipes, devices and sockets inside a directory are skipped, never opened.
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise DataError(f"{p} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            files += found
        elif (reason := not_a_file_reason(p)) is not None:
            raise DataError(f"{p} {reason}")
        else:
            files.append(p)
    data = []
    for f in files:
        try:
            buf = f.read_bytes()
        except OSError as e:  # permission denied, removed since it was listed...
            raise DataError(f"{f} cannot be read ({e.strerror or e})") from None
        try:
            with Image.open(io.BytesIO(buf)) as img:
                img.load()
        except UnidentifiedImageError:
            reason = "empty file (0 bytes)" if not buf else "not a format PIL recognizes"
            raise DataError(f"{f} is not a readable image: {reason}") from None
        except Exception as e:  # PIL raises OSError, SyntaxError, ValueError...
            reason = f"{type(e).__name__}: {e}"
            raise DataError(f"{f} is not a readable image: {reason}") from None
        data.append(buf)
    return files, data
