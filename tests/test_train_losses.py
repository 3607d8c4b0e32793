"""Losses against their closed forms."""

import torch
import torch.nn.functional as F

from cnnray.loop.losses import SoftTargetCrossEntropy, build_loss


def test_hard_targets_with_label_smoothing():
    torch.manual_seed(0)
    logits, y, eps = torch.randn(6, 4), torch.randint(0, 4, (6,)), 0.2
    logp = torch.log_softmax(logits, -1)
    expected = ((1 - eps) * -logp[torch.arange(6), y] + eps * -logp.mean(-1)).mean()
    assert torch.allclose(build_loss(eps)(logits, y), expected, atol=1e-6)


def test_soft_targets():
    torch.manual_seed(0)
    logits = torch.randn(5, 3)
    t = torch.softmax(torch.randn(5, 3), -1)
    expected = -(t * torch.log_softmax(logits, -1)).sum(-1).mean()
    assert torch.allclose(SoftTargetCrossEntropy()(logits, t), expected, atol=1e-6)
    # Soft targets take the soft path even when smoothing is configured (it is already in the targets).
    onehot = F.one_hot(torch.tensor([0, 2, 1, 1, 0]), 3).float()
    assert torch.allclose(build_loss(0.3)(logits, onehot), F.cross_entropy(logits, onehot.argmax(-1)), atol=1e-6)
