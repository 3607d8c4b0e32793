"""Reading a file of initial weights (`model.init_from`) into a plain state_dict, without running pickled code.

`.pt`/`.pth`/`.bin` go through `torch.load(..., weights_only=True)`; `.safetensors` through safetensors. Common
checkpoint containers (`{"state_dict": ...}`, `{"model": ...}`, ...) are unwrapped, and the key prefixes that
DDP (`module.`) and torch.compile (`_orig_mod.`) add are stripped, so a checkpoint of a wrapped model loads
into the bare one.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cnnray.errors import UserInputError

# Tried in this order: a training checkpoint often holds several (model, optimizer, ...), the model's comes first.
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "weights")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
SAFETENSORS_SUFFIX = ".safetensors"


class WeightsError(UserInputError):
    """Initial weights that cannot be read or loaded; the message names the problem, the source and the way out.
    A UserInputError (so a ValueError): commands exit 2 with it."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks (weight files can be hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def strip_wrapper_prefixes(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """`state` with leading `module.` / `_orig_mod.` prefixes removed from its keys (in any nesting)."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix):], True
        out[key] = value
    return out


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def _describe(obj: Any) -> str:
    """What a loaded object is, for a "not a state_dict" message."""
    if isinstance(obj, Tensor):
        return f"a single tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, (list, tuple)):
        return f"a {type(obj).__name__} of {len(obj)} items"
    if isinstance(obj, Mapping):
        odd = [f"{k!r} ({type(v).__name__})" for k, v in obj.items() if not isinstance(v, Tensor)]
        keys = ", ".join(repr(k) for k in list(obj)[:8])
        return (f"a dict whose values are not all tensors: {', '.join(odd[:5])}"
                f"{' ...' if len(odd) > 5 else ''} (keys: {keys}{' ...' if len(obj) > 8 else ''})")
    return f"a {type(obj).__name__}"


def as_state_dict(obj: Any, where: str) -> dict[str, Tensor]:
    """A loaded object as a state_dict: containers unwrapped, wrapper prefixes stripped; WeightsError otherwise."""
    if isinstance(obj, Mapping) and not _is_tensor_dict(obj):
        for key in CONTAINER_KEYS:
            if _is_tensor_dict(obj.get(key)):
                obj = obj[key]
                break
    if isinstance(obj, Mapping) and not obj:
        raise WeightsError(f"{where} holds an empty dict: no tensors to load; save model.state_dict() of a "
                           f"built model")
    if not _is_tensor_dict(obj):
        raise WeightsError(f"{where} is not a state_dict (a dict of tensor names to tensors): it holds "
                           f"{_describe(obj)}; save model.state_dict() instead")
    return strip_wrapper_prefixes(obj)


def _load_pickle(path: Path) -> Any:
    try:
        # weights_only=True: unpickling arbitrary objects runs their code; a weights file must never need that.
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower():
            raise WeightsError(
                f"{path}: refused: it needs Python code to unpickle (a pickled object, not a state_dict); cnnray "
                f"loads weights with weights_only=True — save model.state_dict() instead") from None
        raise WeightsError(f"{path} is truncated or corrupt ({e}); copy or save it again") from None
    except (EOFError, RuntimeError, zipfile.BadZipFile, ValueError, OSError) as e:
        why = str(e).split(". ")[0] or type(e).__name__
        raise WeightsError(f"{path} is truncated or corrupt ({why}); copy or save it again") from None
    except Exception as e:  # noqa: BLE001 - torch's legacy (non-zip) reader fails on other files in any way
        raise WeightsError(f"{path} is not a PyTorch weights file (torch.load: {type(e).__name__}); give a "
                           "state_dict saved with torch.save, or a .safetensors file") from None


def _load_safetensors(path: Path) -> Any:
    # deferred: safetensors is needed only for this file format
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as e:  # safetensors raises its own SafetensorError (and OSError/ValueError) on bad files
        raise WeightsError(f"{path} is not a readable .safetensors file ({e}); copy or save it again") from None


def read_state_file(path: str | Path) -> dict[str, Tensor]:
    """The state_dict in a .pt/.pth/.bin (weights-only pickle) or .safetensors file; WeightsError naming the path."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: no such file; give the path of a saved state_dict (.pt, .pth, .safetensors)")
    if not path.is_file():
        raise WeightsError(f"{path} is not a file; give the path of a saved state_dict (.pt, .pth, .safetensors)")
    obj = _load_safetensors(path) if path.suffix == SAFETENSORS_SUFFIX else _load_pickle(path)
    return as_state_dict(obj, str(path))
