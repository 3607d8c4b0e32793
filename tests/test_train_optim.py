"""Parameter groups: no decay on norm/bias, head and backbone lr multipliers."""

import pytest
import torch
from torch import nn

from cnnray.config.schema import OptimSection, ScheduleSection
from cnnray.loop.optim import build_optimizer
from cnnray.loop.schedules import build_scheduler


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc1 = nn.Linear(4, 4)  # a backbone layer whose name merely starts with "fc"
        self.fc = nn.Linear(4, 3)


def _group_of(opt, p):
    return next(g for g in opt.param_groups if any(q is p for q in g["params"]))


def test_groups_decay_and_lr_mults():
    net = Net()
    cfg = OptimSection(name="adamw", lr=0.01, weight_decay=0.05, head_lr_mult=10.0, backbone_lr_mult=0.5,
                      betas=(0.8, 0.9))
    opt = build_optimizer(net, cfg)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.8, 0.9)
    expect = {  # param: (weight_decay, lr)
        net.conv.weight: (0.05, 0.005), net.bn.weight: (0.0, 0.005), net.bn.bias: (0.0, 0.005),
        net.fc1.weight: (0.05, 0.005), net.fc1.bias: (0.0, 0.005),
        net.fc.weight: (0.05, 0.1), net.fc.bias: (0.0, 0.1),
    }
    for p, (wd, lr) in expect.items():
        g = _group_of(opt, p)
        assert (g["weight_decay"], g["lr"], g["initial_lr"]) == pytest.approx((wd, lr, lr))
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(net.parameters()))
    sched = build_scheduler(opt, ScheduleSection(name="cosine", warmup_epochs=1), base_lr=cfg.lr,
                            steps_per_epoch=4, epochs=3)
    sched.step()
    assert _group_of(opt, net.fc.weight)["lr"] == pytest.approx(10 * sched.lr_at(1))
    assert _group_of(opt, net.bn.bias)["lr"] == pytest.approx(0.5 * sched.lr_at(1))


def test_sgd_and_decay_everywhere():
    net = Net()
    opt = build_optimizer(net, OptimSection(name="sgd", lr=0.1, momentum=0.8, nesterov=True, no_decay_norm_bias=False))
    assert isinstance(opt, torch.optim.SGD)
    assert all(g["weight_decay"] == 0.05 and g["nesterov"] and g["momentum"] == 0.8 for g in opt.param_groups)
    plain = build_optimizer(net, OptimSection(name="sgd", momentum=0.0, nesterov=True))
    assert not plain.param_groups[0]["nesterov"]
