"""A restricted unpickler for the CIFAR python batches: plain containers and numpy arrays, nothing else."""

from __future__ import annotations

import _codecs
import io
import pickle
from typing import Any

import numpy as np

from cnnray.errors import DataError


def _allowed() -> dict[tuple[str, str], Any]:
    # The globals a pickled ndarray needs (both numpy 1 and 2 module names), plus _codecs.encode, which
    # Python 3 writes for bytes in protocol 2 pickles. Each only rebuilds data; none runs user-named code.
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    scalar = np.float64(0).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5 pickles arrays as a buffer + dtype + shape
    found: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                         ("_codecs", "encode"): _codecs.encode}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        found[(module, "_reconstruct")] = reconstruct
        found[(module, "scalar")] = scalar
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        found[(module, "_frombuffer")] = frombuffer
    return found


class SafeUnpickler(pickle.Unpickler):
    """Unpickler whose find_class refuses every global except numpy's array reconstruction."""

    ALLOWED = _allowed()

    def __init__(self, file: io.BufferedIOBase, source: str = "<pickle>") -> None:
        super().__init__(file, encoding="bytes")  # the CIFAR batches were written by Python 2
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        """Return an allowed reconstruction global or raise DataError naming the refused one."""
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise DataError(f"{self.source}: refusing to unpickle global {module}.{name}; CIFAR batches "
                            "may only hold dicts, lists, bytes and numpy arrays") from None


def safe_loads(data: bytes, source: str = "<pickle>") -> Any:
    """Unpickle bytes with SafeUnpickler; malformed data raises DataError naming `source`."""
    try:
        return SafeUnpickler(io.BytesIO(data), source).load()
    except DataError:
        raise
    except Exception as e:  # a truncated or foreign file: report it as bad data, not a crash
        raise DataError(f"{source}: not a readable CIFAR pickle ({type(e).__name__}: {e})") from None
