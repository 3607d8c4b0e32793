"""Loading initial weights into a model that is not quite the one they were saved from (`model.init_from`).

What adapts, and what is refused:
- the classifier head (the model's last nn.Linear, `fc` in the ResNets) is replaced when the number of classes
  differs, or when the class lists differ; with both lists, rows of the classes the weights know are copied by
  name (continual training on a superset of classes keeps the known classes' rows);
- the input conv (the first nn.Conv2d, `conv1`) is adapted to another number of input channels as timm's
  `adapt_input_conv` does (https://github.com/huggingface/pytorch-image-models, timm/models/_manipulate.py);
- attention modules the weights have no tensors for (plain ResNet weights into a CBAM/SE ResNet) start near
  identity (`near_identity_()` in `cnnray.layers`, which says why);
- a stem of another kernel size, and any other missing, unexpected or mis-shaped tensor, raise WeightsError
  (strict) or are skipped and listed (strict=False).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from cnnray.models.load_report import LoadReport, listed
from cnnray.models.weights_file import WeightsError, strip_wrapper_prefixes
from cnnray.models.weights_guess import STEM_NAMES, guess_architecture

TRACKED = "num_batches_tracked"  # BatchNorm's step counter: not a weight, present or absent by torch version


def adapt_input_conv(weight: Tensor, in_chans: int) -> Tensor:
    """`weight` (out, in, kh, kw) of a first conv for `in_chans` input channels: summed over the input channels
    for 1, else repeated to `in_chans` and scaled by in/in_chans (timm's rule, generalized beyond 3 inputs)."""
    dtype, w = weight.dtype, weight.float()
    if in_chans == 1:
        # A grey image is R = G = B: summing the RGB filters gives the RGB response to it.
        w = w.sum(dim=1, keepdim=True)
    else:
        # Repeat and rescale so that an input of identical channels gives the same activation as before.
        source = w.shape[1]
        w = w.repeat(1, math.ceil(in_chans / source), 1, 1)[:, :in_chans] * (source / in_chans)
    return w.to(dtype)


def _describe_conv_adapt(source: int, target: int) -> str:
    how = "summed over RGB" if target == 1 and source == 3 else \
        "summed over the input channels" if target == 1 else f"repeated, scaled by {source}/{target}"
    return f"adapted from {source} to {target} input channels ({how})"


def _first(model: nn.Module, kind: type[nn.Module], last: bool = False) -> str | None:
    names = [name for name, m in model.named_modules() if isinstance(m, kind)]
    return (names[-1] if last else names[0]) if names else None


def _head_name(model: nn.Module) -> str | None:
    return "fc" if isinstance(getattr(model, "fc", None), nn.Linear) else _first(model, nn.Linear, last=True)


def _attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Outermost modules with a `near_identity_()` (a CBAM, not also its channel and spatial parts)."""
    found: list[tuple[str, nn.Module]] = []
    for name, m in model.named_modules():
        if callable(getattr(m, "near_identity_", None)) and not any(name.startswith(f"{n}.") for n, _ in found):
            found.append((name, m))
    return found


def _shape(t: Tensor) -> str:
    return "x".join(map(str, t.shape)) or "scalar"


class _Plan:
    """The tensors to load and what was decided about each key, before anything in the model changes."""

    def __init__(self, target: Mapping[str, Tensor]) -> None:
        self.target = target
        self.out: dict[str, Tensor] = {}
        self.loaded = 0
        self.missing: list[str] = []
        self.unexpected: list[str] = []
        self.mismatched: list[str] = []
        self.stem: str | None = None
        self.reasons: dict[str, str] = {}

    def take(self, key: str, value: Tensor, as_is: bool = True) -> None:
        self.out[key] = value.detach().to(dtype=self.target[key].dtype)
        self.loaded += as_is

    def skip(self, group: list[str], key: str, why: str, shown: str | None = None) -> None:
        group.append(shown or key)
        self.reasons[key] = why


def _head(plan: _Plan, state: Mapping[str, Tensor], name: str, model: nn.Module,
          source_classes: Sequence[str] | None, target_classes: Sequence[str] | None) -> str | None:
    """Plan the head's tensors; the head's report line (None when loaded as-is)."""
    keys = [k for k in (f"{name}.weight", f"{name}.bias") if k in plan.target]
    src, tgt = state.get(f"{name}.weight"), plan.target[f"{name}.weight"]
    if src is None or any(k not in state for k in keys):
        return "new: the weights have no head"
    for what, classes, rows in (("source_classes", source_classes, src.shape[0]),
                                ("target_classes", target_classes, tgt.shape[0])):
        if classes is not None and len(classes) != rows:
            raise WeightsError(f"{what} names {len(classes)} classes but the {'weights' if what[0] == 's' else 'model'}"
                               f"' head has {rows} rows; give one name per row")
    both = source_classes is not None and target_classes is not None
    if src.shape == tgt.shape and (not both or list(source_classes) == list(target_classes)):
        for k in keys:
            plan.take(k, state[k])
        return None
    if both and src.shape[1] == tgt.shape[1]:
        index = {c: i for i, c in enumerate(source_classes)}
        rows = [(j, index[c]) for j, c in enumerate(target_classes) if c in index]
        if rows:
            own = model.state_dict()
            for k in keys:
                new = own[k].detach().clone()
                for j, i in rows:
                    new[j] = state[k][i].to(new.dtype)
                plan.take(k, new, as_is=False)
            return (f"kept {len(rows)} of {len(target_classes)} class rows, {len(target_classes) - len(rows)} new "
                    f"(matched by class name)")
        return (f"replaced: none of the {len(target_classes)} classes is among the weights' {src.shape[0]} "
                f"(new head from the data)")
    if src.shape[0] != tgt.shape[0]:
        return f"replaced: {src.shape[0]} -> {tgt.shape[0]} classes (new head from the data)"
    if src.shape[1] != tgt.shape[1]:
        return f"replaced: {src.shape[1]} -> {tgt.shape[1]} features (new head from the data)"
    return "replaced: the class lists differ (new head from the data)"


def _input_conv(plan: _Plan, key: str, src: Tensor, tgt: Tensor) -> str | None:
    """Plan the first conv's weight; its report line (None when loaded as-is)."""
    if src.shape == tgt.shape:
        plan.take(key, src)
        return None
    if src.dim() == 4 and src.shape[-2:] != tgt.shape[-2:]:
        k_src, k_tgt = src.shape[-1], tgt.shape[-1]
        want = STEM_NAMES.get(k_src)
        fix = f"set model.stem={want}" if want else "choose a model with the weights' stem"
        now = f" (model.stem={STEM_NAMES[k_tgt]})" if k_tgt in STEM_NAMES else ""
        plan.stem = (f"{key}: the weights have a {k_src}x{k_src} stem conv, the model a {k_tgt}x{k_tgt}{now}: "
                     f"{fix}, or model.init_strict=false to load the rest and keep conv1 random")
        plan.skip([], key, "stem of another kernel size")
        return None
    if src.dim() == 4 and src.shape[0] == tgt.shape[0]:
        plan.take(key, adapt_input_conv(src, tgt.shape[1]), as_is=False)
        return _describe_conv_adapt(src.shape[1], tgt.shape[1])
    plan.skip(plan.mismatched, key, "shape differs", f"{key} ({_shape(src)} in the weights, {_shape(tgt)} in the model)")
    return None


def _strict_error(plan: _Plan, state: Mapping[str, Tensor], model: nn.Module) -> WeightsError:
    problems = [f"{len(keys)} {what}: {listed(keys)}" for what, keys in (
        ("missing from the weights", plan.missing), ("in the weights but not in the model", plan.unexpected),
        ("of another shape", plan.mismatched)) if keys]
    if not problems:
        return WeightsError(plan.stem)
    stem = f" Also {plan.stem}." if plan.stem else ""
    return WeightsError(
        f"the weights do not fit the model: {'; '.join(problems)}.{stem} The weights look like: "
        f"{guess_architecture(state)}; the model is: {guess_architecture(model.state_dict())}. Choose the model "
        f"the weights were made for, or set model.init_strict=false to load the tensors that fit and skip the rest")


def load_initial_weights(model: nn.Module, state: Mapping[str, Tensor], *, strict: bool = True,
                         source_classes: Sequence[str] | None = None,
                         target_classes: Sequence[str] | None = None) -> LoadReport:
    """Load `state` into `model` in place, adapting the head, the input conv and absent attention (module doc);
    WeightsError on what does not fit when `strict`, else that is skipped and listed."""
    state = strip_wrapper_prefixes(state)
    target = model.state_dict()
    plan = _Plan(target)
    head = _head_name(model)
    head_keys = {f"{head}.weight", f"{head}.bias"} if head else set()
    conv = _first(model, nn.Conv2d)
    conv_key = f"{conv}.weight" if conv else None
    fresh = [(n, m) for n, m in _attention_modules(model)
             if not any(k.startswith(f"{n}.") for k in state)]
    fresh_keys = {k for k in target for n, _ in fresh if k.startswith(f"{n}.")}

    head_line = _head(plan, state, head, model, source_classes, target_classes) if head else None
    conv_line = None
    for key, tgt in target.items():
        if key in head_keys or key in fresh_keys:
            continue
        src = state.get(key)
        if src is None:
            if not key.endswith(TRACKED):
                plan.skip(plan.missing, key, "not in the weights")
        elif key == conv_key:
            conv_line = _input_conv(plan, key, src, tgt)
        elif src.shape != tgt.shape:
            plan.skip(plan.mismatched, key, "shape differs",
                      f"{key} ({_shape(src)} in the weights, {_shape(tgt)} in the model)")
        else:
            plan.take(key, src)
    for key in state:
        if key not in target and not key.endswith(TRACKED):
            plan.skip(plan.unexpected, key, "not in the model")
    if strict and (plan.missing or plan.unexpected or plan.mismatched or plan.stem):
        raise _strict_error(plan, state, model)

    with torch.no_grad():
        for _, module in fresh:
            module.near_identity_()
    model.load_state_dict(plan.out, strict=False)
    return LoadReport(loaded=plan.loaded, head=head_line, input_conv=conv_line and f"{conv} {conv_line}",
                      near_identity=[n for n, _ in fresh], skipped=list(plan.reasons),
                      skip_reasons=dict(plan.reasons))
