"""Image files named on the command line: expand directories, read bytes, refuse what is not an image."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from cnnray.data.codec import IMAGE_EXTENSIONS
from cnnray.errors import DataError


def collect_images(paths: list[str]) -> tuple[list[Path], list[bytes]]:
    """(files, their bytes): files as given, directories searched recursively for image extensions."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise DataError(f"{p} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"{p} does not exist")
    data = []
    for f in files:
        buf = f.read_bytes()
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
