"""What network a state_dict belongs to, read from its key names and shapes (for "these weights do not fit" errors).

Key names are torchvision's ResNet names, which cnnray's ResNets share; attention sits under each block's `attn`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

# (block type, blocks per stage) -> the name both torchvision and cnnray use
DEPTHS = {
    ("BasicBlock", (2, 2, 2, 2)): "resnet18",
    ("BasicBlock", (3, 4, 6, 3)): "resnet34",
    ("Bottleneck", (3, 4, 6, 3)): "resnet50",
    ("Bottleneck", (3, 4, 23, 3)): "resnet101",
    ("Bottleneck", (3, 8, 36, 3)): "resnet152",
}
STEM_NAMES = {7: "imagenet", 3: "cifar"}
_BLOCK_KEY = re.compile(r"^layer([1-4])\.(\d+)\.")


def _attention(keys: list[str]) -> str | None:
    if any(".attn.channel." in k or ".attn.spatial." in k for k in keys):
        return "cbam"
    if any(".attn.fc1." in k for k in keys):
        return "se"
    return "unknown" if any(".attn." in k for k in keys) else None


def _not_resnet(keys: list[str]) -> str:
    first = ", ".join(keys[:5])
    return f"not a ResNet: first keys {first}{' ...' if len(keys) > 5 else ''} ({len(keys)} tensors)"


def guess_architecture(state: Mapping[str, Tensor]) -> str:
    """A human description of the network `state` belongs to, e.g. "resnet50 (Bottleneck 3-4-6-3, width 1.0,
    imagenet 7x7 stem, 3 input channels, 1000 classes, no attention)"."""
    keys = list(state)
    conv1 = state.get("conv1.weight")
    blocks: dict[int, set[int]] = {1: set(), 2: set(), 3: set(), 4: set()}
    for k in keys:
        m = _BLOCK_KEY.match(k)
        if m:
            blocks[int(m.group(1))].add(int(m.group(2)))
    if conv1 is None or conv1.dim() != 4 or not all(blocks.values()):
        return _not_resnet(keys)
    block = "Bottleneck" if "layer1.0.conv3.weight" in state else "BasicBlock"
    depths = tuple(len(blocks[s]) for s in (1, 2, 3, 4))
    attn = _attention(keys)
    name = DEPTHS.get((block, depths), "an unnamed ResNet")
    if attn in ("cbam", "se") and name in {v for v in DEPTHS.values()}:
        name = f"{attn}_{name}"
    out_chs, in_chs, kernel = conv1.shape[0], conv1.shape[1], conv1.shape[-1]
    stem = f"{STEM_NAMES[kernel]} {kernel}x{kernel}" if kernel in STEM_NAMES else f"{kernel}x{kernel}"
    parts = [f"{block} {'-'.join(map(str, depths))}", f"width {round(out_chs / 64, 4)}"]
    inner = state.get("layer1.0.conv1.weight")
    if block == "Bottleneck" and inner is not None and inner.shape[0] != out_chs:
        parts.append(f"bottleneck x{inner.shape[0] / out_chs:g} (wide)")  # torchvision's wide_resnet50_2 etc.
    parts += [f"{stem} stem", f"{in_chs} input channel{'s' if in_chs != 1 else ''}"]
    fc = state.get("fc.weight")
    parts.append(f"{fc.shape[0]} classes" if fc is not None and fc.dim() == 2 else "no fc head")
    parts.append(f"{attn} attention" if attn else "no attention")
    return f"{name} ({', '.join(parts)})"
