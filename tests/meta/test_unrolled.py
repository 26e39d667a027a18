"""The JVP route to the unrolled hypergradient equals the direct double backward for every optimizer."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from auxbench.meta import functional_forward, params_of, unrolled_surrogate, virtual_step

from .test_optim_step import OPTIMIZERS


class TwoHeads(nn.Module):
    """A BatchNorm trunk with a primary and an auxiliary head: outputs as a dict, like auxbench's models."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten())
        self.pri, self.aux = nn.Linear(27, 4), nn.Linear(27, 6)

    def forward(self, x):
        z = self.trunk(x)
        return {"pri": self.pri(z), "aux": self.aux(z)}


def _setup(optimizer_name):
    torch.manual_seed(0)
    model, labels = TwoHeads().double().train(), nn.Linear(50, 7).double()
    x, y = torch.randn(8, 2, 5, 5, dtype=torch.float64), torch.randint(0, 4, (8,))
    optimizer = OPTIMIZERS[optimizer_name](model.parameters())
    for _ in range(2):  # momentum buffers, Adam moments and step counts
        optimizer.zero_grad()
        F.cross_entropy(model(x)["pri"], y).backward()
        optimizer.step()
    out = labels(x.flatten(1))
    targets, weights = out[:, :6].softmax(-1), torch.sigmoid(out[:, 6]) * 2
    return model, labels, optimizer, x, y, targets, weights


def _training_loss(outputs, y, targets, weights):
    aux = -(targets * outputs["aux"].log_softmax(-1)).sum(-1)
    return F.cross_entropy(outputs["pri"], y) + (weights * aux).mean()


@pytest.mark.parametrize("optimizer_name", sorted(OPTIMIZERS))
def test_jvp_route_equals_the_double_backward(optimizer_name):
    model, labels, optimizer, x, y, targets, weights = _setup(optimizer_name)
    theta = params_of(model)

    inner = _training_loss(functional_forward(model, theta, x), y, targets, weights)
    grads = torch.autograd.grad(inner, list(theta.values()), create_graph=True)
    ahead = virtual_step(optimizer, theta, dict(zip(theta, grads, strict=True)))
    direct_outer = F.cross_entropy(functional_forward(model, ahead, x)["pri"], y)
    direct = torch.autograd.grad(direct_outer, list(labels.parameters()), retain_graph=True)

    surrogate, outer = unrolled_surrogate(
        model, optimizer, x, functional_forward(model, theta, x),
        lambda outputs, t, w: _training_loss(outputs, y, t, w), (targets, weights),
        lambda ahead: F.cross_entropy(functional_forward(model, ahead, x)["pri"], y),
    )
    ours = torch.autograd.grad(surrogate, list(labels.parameters()))
    torch.testing.assert_close(outer, direct_outer.detach(), rtol=1e-12, atol=1e-14)
    for a, b in zip(ours, direct, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert all(g.abs().sum() > 0 for g in ours)


def test_leaves_parameters_optimizer_state_and_running_statistics_alone():
    model, _, optimizer, x, y, targets, weights = _setup("sgd_momentum")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    buffers = {p: optimizer.state[p]["momentum_buffer"].clone() for p in model.parameters() if p in optimizer.state}
    unrolled_surrogate(model, optimizer, x, functional_forward(model, params_of(model), x),
                       lambda outputs, t, w: _training_loss(outputs, y, t, w), (targets, weights),
                       lambda ahead: F.cross_entropy(functional_forward(model, ahead, x)["pri"], y))
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value), key
    assert buffers and all(torch.equal(b, optimizer.state[p]["momentum_buffer"]) for p, b in buffers.items())
    assert set(optimizer.state) == set(buffers)

