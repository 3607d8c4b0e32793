"""Optimizer with parameter groups: no decay on norms/biases, separate lr multipliers for head and backbone."""

from __future__ import annotations

import torch
from torch import nn

from cnnray.config.schema import OptimSection


def _is_head(name: str, head_names: tuple[str, ...]) -> bool:
    name = name.removeprefix("_orig_mod.")  # parameters seen through a torch.compile wrapper
    return any(name == h or name.startswith(h + ".") for h in head_names)


def param_groups(model: nn.Module, cfg: OptimSection, head_names: tuple[str, ...]) -> list[dict]:
    """Split trainable parameters into (head | backbone) x (decay | no decay) groups, dropping empty ones."""
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # ndim <= 1 is every bias and norm scale/shift: decaying them only fights normalization.
        no_decay = cfg.no_decay_norm_bias and p.ndim <= 1
        buckets.setdefault((_is_head(name, head_names), no_decay), []).append(p)
    groups = []
    for (head, no_decay), params in sorted(buckets.items()):
        mult = cfg.head_lr_mult if head else cfg.backbone_lr_mult
        groups.append({
            "params": params,
            "name": f"{'head' if head else 'backbone'}{'_no_decay' if no_decay else ''}",
            "lr": cfg.lr * mult,
            "initial_lr": cfg.lr * mult,
            "lr_mult": mult,  # the schedule sets lr = schedule(step) * lr_mult
            "weight_decay": 0.0 if no_decay else cfg.weight_decay,
        })
    return groups


def build_optimizer(
    model: nn.Module, cfg: OptimSection, head_names: tuple[str, ...] = ("fc", "head", "classifier"),
    *, fused: bool = False,
) -> torch.optim.Optimizer:
    """AdamW or SGD over the parameter groups of the (unwrapped) model.

    `fused=True` (the engine asks for it on CUDA) runs the whole update in one kernel and lets the step
    be skipped on the device (`found_inf`), which the non-finite guard relies on to avoid host syncs.
    On CPU the default foreach implementation is as fast and a host read there is free.
    """
    groups = param_groups(model, cfg, head_names)
    impl = {"fused": True} if fused else {}
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, **impl)
    # torch refuses nesterov without momentum; momentum=0 means plain SGD.
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           nesterov=cfg.nesterov and cfg.momentum > 0, **impl)
