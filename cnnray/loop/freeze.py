"""Fine-tuning with a frozen backbone: the head trains alone for the first epochs, then every layer does.

The freeze drops the backbone's gradients after backward instead of setting `requires_grad=False`:
a DDP wrapper is built once with every parameter in its reducer, and toggling `requires_grad`
afterwards breaks its gradient reduction (unless `find_unused_parameters=True`, which costs a graph
walk every step). A parameter whose `.grad` is None is skipped whole by AdamW and SGD: no update, no
weight decay, no momentum or Adam state created or advanced; grad clipping never sees it either.
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from cnnray.loop.optim import _is_head

# The optimizer's head names (lr multipliers) and the freeze's: the engine passes this to build_optimizer,
# so "head" means the same parameters for both.
HEAD_NAMES: tuple[str, ...] = ("fc", "head", "classifier")


def is_head(name: str, head_names: tuple[str, ...] = HEAD_NAMES) -> bool:
    """True when a parameter or module name (of the plain model) belongs to the classifier head."""
    return _is_head(name, head_names)


def backbone_parameters(model: nn.Module, head_names: tuple[str, ...] = HEAD_NAMES) -> list[nn.Parameter]:
    """Every trainable parameter outside the head; raises if the model has no head parameter at all."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not any(is_head(n, head_names) for n, _ in named):
        # Freezing everything would train nothing while reporting success: refuse it.
        raise ValueError(f"train.freeze_backbone_epochs needs a classifier head, but no parameter is under "
                         f"any of {list(head_names)}")
    return [p for n, p in named if not is_head(n, head_names)]


def _tracks_running_stats(m: nn.Module) -> bool:
    return isinstance(m, _BatchNorm) or getattr(m, "track_running_stats", False) is True


def backbone_norms(model: nn.Module, head_names: tuple[str, ...] = HEAD_NAMES) -> list[nn.Module]:
    """The backbone's normalization layers that keep running statistics (BatchNorm, SyncBatchNorm, ...)."""
    return [m for n, m in model.named_modules() if n and not is_head(n, head_names) and _tracks_running_stats(m)]


def drop_grads(params: list[nn.Parameter]) -> None:
    """Set `.grad = None` so the optimizer step and grad clipping skip these parameters entirely."""
    for p in params:
        p.grad = None


def hold_running_stats(norms: list[nn.Module]) -> None:
    """Eval mode for these norm layers: their running mean/var stay as they are (call after model.train())."""
    for m in norms:
        m.eval()
