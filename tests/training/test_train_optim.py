"""Optimizer groups as the reference solvers set them (lr_mult 2 and decay_mult 0 on biases)."""
import pytest
import torch
from torch import nn

from training.optim import create_optimizer, param_groups


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.score = nn.Conv2d(4, 2, 1)
        self.up = nn.ConvTranspose2d(2, 2, 4, stride=2, bias=False)
        self.up.weight.requires_grad_(False)  # fixed bilinear upsampling, as in the reference


def test_groups_bias_double_lr_no_decay_frozen_left_out():
    net = _Net()
    groups = param_groups(net, lr=1e-3, weight_decay=5e-4)
    assert [g["name"] for g in groups] == ["weights", "biases"]
    weights, biases = groups
    assert weights["lr"] == 1e-3 and weights["weight_decay"] == 5e-4
    assert biases["lr"] == 2e-3 and biases["weight_decay"] == 0.0
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(weights["params"]) == ids([net.conv.weight, net.score.weight])
    assert ids(biases["params"]) == ids([net.conv.bias, net.score.bias])
    assert id(net.up.weight) not in ids(weights["params"]) | ids(biases["params"])


def test_one_sgd_step_matches_the_update_written_out():
    torch.manual_seed(0)
    net = _Net()
    frozen = net.up.weight.clone()
    opt = create_optimizer(net, lr=0.1, momentum=0.9, weight_decay=0.01)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.9
    w0, b0 = net.conv.weight.detach().clone(), net.conv.bias.detach().clone()
    out = net.up(net.score(net.conv(torch.randn(1, 3, 6, 6))))
    out.sum().backward()
    gw, gb = net.conv.weight.grad.clone(), net.conv.bias.grad.clone()
    opt.step()
    # first step: momentum buffer = gradient (+ decay for weights)
    torch.testing.assert_close(net.conv.weight.detach(), w0 - 0.1 * (gw + 0.01 * w0))
    torch.testing.assert_close(net.conv.bias.detach(), b0 - 0.2 * gb)
    assert torch.equal(net.up.weight, frozen)


def test_no_trainable_parameters_is_an_error():
    net = nn.Conv2d(1, 1, 1).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        create_optimizer(net, lr=1.0, momentum=0.0, weight_decay=0.0)
