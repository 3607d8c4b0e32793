"""Post-training static int8 quantization for x86 CPUs with PT2E (torch.export + torchao's X86InductorQuantizer).

    q = quantize_pt2e(model, calibration)            # q.model: int8 GraphModule, q.state: what gets registered
    rebuilt = finish_quantized(quantized_structure(fresh_model, q.step), ...)  # after load_state_dict(q.state)

Convs get static int8 (per-channel symmetric weights, per-tensor uint8 activations from histogram
calibration); the Linear head optionally dynamic int8 (activation qparams chosen per batch at run time).

Storage: after calibration every static observer is replaced by a frozen one holding the
scale/zero point it computed, and every observed weight is replaced by its int8 round trip
(dequantize(quantize(w))). The state then holds int8 weights, float biases and those qparams, nothing
else (no histograms, ~4x smaller than fp32). A rebuild exports and prepares a fresh model the same way,
freezes its observers empty, and a load_state_dict pre-hook dequantizes the int8 weights with the
stored scales by the same op: the prepared models are bitwise equal, so convert_pt2e gives the same
int8 model. The live model is converted from the round-tripped weights too, for that reason.
"""

from __future__ import annotations

import copy
import functools
import logging
import types
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch._inductor.config as inductor_config
from torch import Tensor, fx, nn

from cnnray.compress.measure import MB

SCHEME = "pt2e-x86-inductor"
_QDQ = torch.ops.quantized_decomposed  # registered by torch.ao / torchao imports below, at first use


@dataclass
class Quantized:
    """The int8 model, the state to register, and the card entry to rebuild it."""

    model: nn.Module
    state: dict[str, Tensor]
    step: dict[str, Any]


@contextmanager
def _quiet() -> Iterator[None]:
    # torchao's own notes, by message: an observer no calibration batch reached (its qparams default to 1/0,
    # which the frozen state then records), and the static/dynamic mixing it refuses (the step says so).
    with warnings.catch_warnings():
        for message in (r"must run observer before calling calculate_qparams", r"Mixed (dynamic and static|QAT)",
                        r"Skip the (global )?quantization config"):
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        yield


def _pt2e() -> tuple[Any, Any, Any]:
    # torch 2.10+ removed torch.ao.quantization.quantize_pt2e; torchao carries it. Imported lazily: it is slow.
    # Its import logs a deprecation note about its own enum through torch's pytree logger: not the user's concern.
    import logging

    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    # deferred (heavy import): torchao
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    return prepare_pt2e, convert_pt2e, xiq


def _versions() -> dict[str, str]:
    # deferred (heavy import): torchao
    import torchao

    return {"torch": torch.__version__, "torchao": torchao.__version__}


def _quantizer(dynamic_head: bool) -> Any:
    _, _, xiq = _pt2e()
    static = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
    if not dynamic_head:
        return static
    # deferred (heavy import): torchao
    from torchao.quantization.pt2e.quantizer.composable_quantizer import ComposableQuantizer

    # One X86InductorQuantizer refuses static and dynamic configs together (it skips one with a warning);
    # two composed work: the dynamic one annotates the Linear first, the static one skips annotated nodes.
    # reduce_range (7-bit activations, head only): inductor's dynamic int8 linear on x86 CPUs without VNNI
    # (AVX2 u8*s8 pairs saturate int16) gave logits 15% off the eager model; with it they agree. Fixed
    # here, not per machine: the rebuild of a registered version must quantize the same way anywhere.
    dynamic = xiq.X86InductorQuantizer().set_module_type_qconfig(
        nn.Linear, xiq.get_default_x86_inductor_quantization_config(is_dynamic=True, reduce_range=True))
    return ComposableQuantizer([dynamic, static])


def _prepare(model: nn.Module, example: Tensor, dynamic_head: bool) -> fx.GraphModule:
    prepare_pt2e, _, _ = _pt2e()
    batch = torch.export.Dim("batch", min=1)
    # The example has batch 2: export specializes a size-1 dimension to the constant 1.
    gm = torch.export.export(model, (example,), dynamic_shapes=({0: batch},)).module()
    return prepare_pt2e(gm, _quantizer(dynamic_head))


@functools.cache
def _frozen_class() -> type:
    """The observer class that returns fixed (calibrated or loaded) qparams; convert_pt2e reads it as any other."""
    # Built lazily: convert_pt2e recognises observers by isinstance(ObserverBase), and importing torchao is slow.
    from torchao.quantization.pt2e import ObserverBase

    class FrozenQParams(ObserverBase):
        def __init__(self, like: nn.Module, channels: int) -> None:
            super().__init__(dtype=like.dtype, is_dynamic=False)
            self.qscheme, self.quant_min, self.quant_max = like.qscheme, like.quant_min, like.quant_max
            self.ch_axis = getattr(like, "ch_axis", 0)
            # Fixed dtypes, not the source observer's: the rebuilt graph must carry identical constants.
            self.register_buffer("scale", torch.ones(channels, dtype=torch.float32))
            self.register_buffer("zero_point", torch.zeros(channels, dtype=torch.int64))

        def forward(self, x: Tensor) -> Tensor:
            return x

        def calculate_qparams(self) -> tuple[Tensor, Tensor]:
            return self.scale, self.zero_point

    return FrozenQParams


def _attr(gm: nn.Module, target: str) -> Tensor:
    owner, _, leaf = target.rpartition(".")
    return getattr(gm.get_submodule(owner), leaf)


def _observers(gm: fx.GraphModule) -> Iterator[tuple[str, nn.Module, str | None]]:
    """(observer name, observer, observed weight attribute or None) for each static observer call."""
    seen = set()
    for node in gm.graph.nodes:
        if node.op != "call_module" or node.target in seen or not hasattr(gm.get_submodule(node.target), "qscheme"):
            continue
        obs = gm.get_submodule(node.target)
        if getattr(obs, "is_dynamic", False) or not hasattr(obs, "calculate_qparams"):
            continue  # dynamic activations get qparams per batch at run time: nothing to store
        seen.add(node.target)
        src = node.args[0]
        yield node.target, obs, (src.target if isinstance(src, fx.Node) and src.op == "get_attr" else None)


def _freeze(gm: fx.GraphModule, calibrated: bool) -> dict[str, str]:
    """Swap static observers for frozen ones (with their qparams if `calibrated`); weight attr -> observer."""
    frozen_cls, weights, done = _frozen_class(), {}, {}
    for name, obs, weight in list(_observers(gm)):
        per_channel = obs.qscheme in (torch.per_channel_symmetric, torch.per_channel_affine)
        channels = _attr(gm, weight).shape[obs.ch_axis] if per_channel and weight else 1
        if id(obs) not in done:  # an observer shared by two edges stays shared
            frozen = frozen_cls(obs, channels)
            if calibrated:
                scale, zero_point = obs.calculate_qparams()
                frozen.scale.copy_(scale.reshape(-1))
                frozen.zero_point.copy_(zero_point.reshape(-1))
            done[id(obs)] = frozen
        setattr(gm, name, done[id(obs)])
        if weight is not None and per_channel:
            weights[weight] = name
    return weights


def _quant_args(obs: nn.Module) -> tuple[Any, ...]:
    return obs.scale, obs.zero_point, obs.ch_axis, obs.quant_min, obs.quant_max, torch.int8


def _int8_weights(gm: fx.GraphModule, weights: dict[str, str]) -> dict[str, Tensor]:
    """Quantize each observed weight with its frozen qparams; put the round trip back in the model."""
    out = {}
    for weight, obs_name in weights.items():
        param, args = _attr(gm, weight), _quant_args(gm.get_submodule(obs_name))
        q = _QDQ.quantize_per_channel(param.detach(), *args)
        param.data.copy_(_QDQ.dequantize_per_channel(q, *args))
        out[weight] = q
    return out


def _dequantize_hook(weights: dict[str, str]) -> Callable[..., None]:
    def hook(module: nn.Module, state: dict[str, Tensor], prefix: str, *args: Any) -> None:
        error_msgs = args[-1]
        for weight, obs_name in weights.items():
            key, scale_key, zp_key = prefix + weight, f"{prefix}{obs_name}.scale", f"{prefix}{obs_name}.zero_point"
            if key not in state or state[key].dtype != torch.int8:
                continue  # absent: strict loading reports it; float: loaded as is
            if scale_key not in state or zp_key not in state:
                # Copying raw int8 codes into a float weight would "load" silently wrong numbers.
                error_msgs.append(f"{key}: int8 weight without its qparams {scale_key} / {zp_key}")
                continue
            obs = module.get_submodule(obs_name)
            args_ = (state[scale_key].float(), state[zp_key].long(), obs.ch_axis, obs.quant_min, obs.quant_max,
                     torch.int8)
            state[key] = _QDQ.dequantize_per_channel(state[key], *args_)

    return hook


def _check_calibration(model: nn.Module, calibration: Any, batch: int) -> Tensor:
    if not isinstance(calibration, Tensor):
        raise ValueError(f"calibration must be a torch.Tensor of images, got {type(calibration).__name__}")
    if calibration.ndim != 4:
        raise ValueError(f"calibration must have shape (N, C, H, W), got shape {tuple(calibration.shape)}")
    if calibration.shape[0] == 0:
        raise ValueError("calibration is empty (0 images): static quantization needs real images to calibrate on")
    if not calibration.is_floating_point() or not bool(torch.isfinite(calibration).all()):
        raise ValueError("calibration must be finite floating-point images (preprocessed as for training)")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    try:
        with torch.no_grad():
            model(calibration[:1].float())
    except RuntimeError as err:
        raise ValueError(f"calibration images of shape {tuple(calibration.shape[1:])} do not fit the model: "
                         f"{str(err).splitlines()[0]}") from err
    return calibration.float().cpu()


def _has_dynamic(gm: fx.GraphModule) -> bool:
    return any(getattr(m, "is_dynamic", False) for m in gm.modules())


@torch.no_grad()
def quantize_pt2e(model: nn.Module, calibration: Tensor, *, dynamic_head: bool = True, batch: int = 32) -> Quantized:
    """Static int8 PT2E quantization of an eval-mode copy of `model`, calibrated on `calibration` (N, C, H, W)."""
    model = copy.deepcopy(model).cpu().eval()
    calibration = _check_calibration(model, calibration, batch)
    example = calibration[:1].repeat(2, 1, 1, 1)
    step: dict[str, Any] = {"method": "quantize", "scheme": SCHEME, "input_shape": list(calibration.shape[1:])}
    with _quiet():
        try:
            prepared = _prepare(model, example, dynamic_head)
            if dynamic_head and not _has_dynamic(prepared):
                step["dynamic_head_reason"] = "no nn.Linear in the graph to quantize dynamically"
                dynamic_head = False
        except Exception as err:  # noqa: BLE001 - torchao's mixed-config support varies by version; fall back
            if not dynamic_head:
                raise
            step["dynamic_head_reason"] = f"dynamic Linear quantization failed, all static: {err}"[:300]
            dynamic_head = False
            prepared = _prepare(model, example, dynamic_head)
        for chunk in calibration.split(batch):
            prepared(chunk)
        weights = _freeze(prepared, calibrated=True)
        int8 = _int8_weights(prepared, weights)
    step.update(dynamic_head=dynamic_head, **_versions())
    state = {k: int8.get(k, v).detach().clone() for k, v in prepared.state_dict().items()}
    return Quantized(finish_quantized(prepared, step), state, step)


def quantized_structure(model: nn.Module, step: dict[str, Any]) -> nn.Module:
    """The prepared (observed) graph of a freshly built fp32 `model`, ready for `load_state_dict(state)`."""
    if step.get("method") != "quantize" or step.get("scheme") != SCHEME:
        raise ValueError(f"compression: expected method 'quantize' with scheme {SCHEME!r}, got "
                         f"{step.get('method')!r} / {step.get('scheme')!r}")
    shape = step.get("input_shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(s, int) and s > 0 for s in shape)):
        raise ValueError(f"compression.input_shape must be [C, H, W] positive ints, got {shape!r}")
    with _quiet():
        prepared = _prepare(copy.deepcopy(model).cpu().eval(), torch.zeros(2, *shape), bool(step.get("dynamic_head")))
        weights = _freeze(prepared, calibrated=False)
    prepared.register_load_state_dict_pre_hook(_dequantize_hook(weights))
    return prepared


def _drop_unused(gm: fx.GraphModule) -> fx.GraphModule:
    # convert_pt2e folds int8 weights into new constants but leaves the fp32 originals attached: drop them,
    # or the "int8" model carries both and saving or sizing it counts the fp32 copy.
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name in [n for n, _ in gm.named_parameters()] + [n for n, _ in gm.named_buffers()]:
        if name not in used:
            owner, _, leaf = name.rpartition(".")
            delattr(gm.get_submodule(owner), leaf)
    return gm


@torch.no_grad()
def finish_quantized(prepared: nn.Module, step: dict[str, Any]) -> nn.Module:
    """convert_pt2e on a prepared graph whose state is loaded (or calibrated): the int8 model, eval mode."""
    if not isinstance(prepared, fx.GraphModule):
        raise ValueError(f"finish_quantized needs the GraphModule from quantized_structure, got "
                         f"{type(prepared).__name__}")
    _, convert_pt2e, _ = _pt2e()
    with _quiet():
        converted = convert_pt2e(prepared)
    return _inference_only(_drop_unused(converted))


def _inference_only(gm: fx.GraphModule) -> fx.GraphModule:
    # An exported graph has its eval-mode ops baked in, and torchao makes .eval()/.train() raise on it. Callers
    # (latency, export, gates) call .eval() on any model: make that a no-op returning the model; train() refuses.
    for module in gm.modules():
        module.training = False

    def train(self: nn.Module, mode: bool = True) -> nn.Module:
        if mode:
            raise RuntimeError("an int8 PT2E model is inference-only: it has no train mode")
        return self

    gm.train = types.MethodType(train, gm)  # type: ignore[method-assign]
    gm.eval = types.MethodType(lambda self: self, gm)  # type: ignore[method-assign]
    return gm


def _tensors(model: nn.Module) -> Iterator[Tensor]:
    for module in model.modules():
        yield from (t for t in module._parameters.values() if t is not None)
        yield from (t for t in module._buffers.values() if t is not None)
        yield from (t for t in vars(module).values() if isinstance(t, Tensor))  # plain attributes / constants


def int8_size(model: nn.Module) -> dict[str, Any]:
    """Elements and bytes of every tensor `model` holds (parameters, buffers, tensor attributes), real dtypes."""
    seen, params, size = set(), 0, 0
    for t in _tensors(model):
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)
        if key in seen:
            continue
        seen.add(key)
        params += t.numel()
        size += t.numel() * t.element_size()
    return {"params": params, "size_bytes": size, "size_mb": size / MB}


def compiled(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """torch.compile(model) run with inductor freezing and no_grad: for speed measurement of the int8 model.

    Freezing turns weights into constants, which is what lets inductor prepack int8 weights for its
    oneDNN kernels (without it the int8 graph is barely faster than fp32 eager). It is patched into the
    inductor config around each call, not set globally. The first call compiles (~40 s for the default
    model on one slow CPU core); each batch size compiles once (warm up with the shapes to time).
    """
    # A CPU build compiling C++ logs that it found no CUDA runtime: true and irrelevant here.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)

    # dynamic=False: a symbolic batch dimension (what a second shape triggers by default) breaks inductor's
    # int8 conv lowering in torch 2.14 (a stride assertion in the generated code at batch 64 after batch 1).
    fn = torch.compile(model, dynamic=False)

    def run(x: Tensor) -> Tensor:
        # Compilation happens lazily inside a call, so the patch must wrap calls; torch.compile(options=
        # {"freezing": True}) is not enough (torch 2.14: the weights stay graph inputs and prepacking fails).
        # Inductor also freezes only with autograd off.
        with torch.no_grad(), inductor_config.patch(freezing=True), warnings.catch_warnings():
            # Inductor's own int8 lowering trips a torch.tensor(tensor) UserWarning: library noise, not the user's.
            warnings.filterwarnings("ignore", message=r"To copy construct from a tensor", category=UserWarning)
            return fn(x)

    return run
