"""SGD as the reference solvers configure it: momentum, weight decay, biases at 2x rate, no decay."""
from __future__ import annotations

import torch


def param_groups(model: torch.nn.Module, *, lr: float, weight_decay: float,
                 bias_lr_mult: float = 2.0) -> list[dict]:
    """Two optimizer groups: weights (``lr``, ``weight_decay``) and biases (``lr * bias_lr_mult``, no decay).

    Frozen parameters (``requires_grad`` False, e.g. the fixed bilinear upsampling) are left out,
    so weight decay never moves them. Empty groups are dropped.
    """
    weights, biases = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (biases if name.endswith("bias") else weights).append(param)
    groups = [
        {"params": weights, "lr": lr, "weight_decay": weight_decay, "name": "weights"},
        {"params": biases, "lr": lr * bias_lr_mult, "weight_decay": 0.0, "name": "biases"},
    ]
    return [g for g in groups if g["params"]]


def create_optimizer(model: torch.nn.Module, *, lr: float, momentum: float, weight_decay: float,
                     bias_lr_mult: float = 2.0) -> torch.optim.SGD:
    """SGD with momentum over :func:`param_groups`.

    With a fixed learning rate PyTorch's momentum update (v = m v + g; w -= lr v) equals Caffe's
    (v = m v + lr g; w -= v), so the reference learning rates carry over unchanged.
    """
    groups = param_groups(model, lr=lr, weight_decay=weight_decay, bias_lr_mult=bias_lr_mult)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
