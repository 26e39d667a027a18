import pytest
import torch
import torch.nn.functional as F
from torch import nn

from auxbench.meta import functional_forward, params_of, per_sample_dots


def _bn_two_task_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Tanh(), nn.Flatten(), nn.Linear(27, 6)).double()
    with torch.no_grad():
        net[1].weight.uniform_(0.5, 1.5)
        net[1].bias.uniform_(-0.5, 0.5)
    return net.train()


def _two_task_losses(labels):
    """[B, 2]: cross-entropy of two 3-class tasks read from the 6 outputs."""
    def losses(out):
        return torch.stack(
            [F.cross_entropy(out[:, 3 * t: 3 * t + 3], labels[:, t], reduction="none") for t in range(2)], dim=1
        )
    return losses


def _mlp():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def _loop_reference(model, names, v, loss_fn, x):
    """⟨∇θ ℓ_i, v⟩ one backward per entry of the batch-forward loss vector/matrix."""
    params = params_of(model)
    losses = loss_fn(functional_forward(model, params, x))
    out = torch.zeros_like(losses)
    for idx in torch.cartesian_prod(*[torch.arange(s) for s in losses.shape]).view(-1, losses.ndim):
        grads = torch.autograd.grad(losses[tuple(idx)], [params[n] for n in names], retain_graph=True, allow_unused=True)
        out[tuple(idx)] = sum((g * v[n]).sum() for n, g in zip(names, grads, strict=True) if g is not None)
    return out


CASES = {
    "bn_all_params_two_tasks": (_bn_two_task_net, None, 8, "task"),
    "bn_trunk_only_two_tasks": (_bn_two_task_net, ["0.weight", "0.bias", "1.weight", "1.bias"], 8, "task"),
    "mlp_all_params": (_mlp, None, 7, "single"),
    "mlp_first_layer": (_mlp, ["0.weight"], 7, "single"),
}


@pytest.mark.parametrize("make, subset, batch, kind", CASES.values(), ids=CASES.keys())
def test_per_sample_dots_equal_the_per_sample_gradient_loop(make, subset, batch, kind):
    model = make()
    gen = torch.Generator().manual_seed(2)
    if kind == "task":
        x = torch.randn(batch, 2, 5, 5, dtype=torch.float64, generator=gen)
        loss_fn = _two_task_losses(torch.randint(0, 3, (batch, 2), generator=gen))
    else:
        x = torch.randn(batch, 4, dtype=torch.float64, generator=gen)
        y = torch.randint(0, 3, (batch,), generator=gen)
        loss_fn = lambda out: F.cross_entropy(out, y, reduction="none")  # noqa: E731
    params = params_of(model)
    names = subset or list(params)
    v = {n: torch.randn(params[n].shape, dtype=torch.float64, generator=gen) for n in names}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    weights = {n: p.detach().clone() for n, p in params.items()}

    dots = per_sample_dots(model, params, v, loss_fn, x)

    expected = _loop_reference(model, names, v, loss_fn, x)
    assert dots.shape == expected.shape == ((batch, 2) if kind == "task" else (batch,))
    assert not dots.requires_grad
    torch.testing.assert_close(dots, expected, rtol=1e-10, atol=1e-12)
    for n, b in model.named_buffers():
        assert torch.equal(b, buffers[n]), n
    for n, p in params.items():
        assert torch.equal(p.detach(), weights[n]), n


def test_per_sample_dots_rejects_unknown_names():
    model = _mlp()
    with pytest.raises(KeyError, match="nope"):
        per_sample_dots(model, params_of(model), {"nope": torch.zeros(1)}, lambda o: o.sum(1), torch.zeros(2, 4))


@pytest.mark.parametrize("names", [None, ["0.weight", "0.bias", "1.weight", "1.bias"]], ids=["all", "trunk"])
def test_losses_and_dots_is_a_training_forward_and_the_jvp_in_one(names):
    """The loss matrix is the training forward's (same values, gradients to every parameter,
    BatchNorm's running statistics moved once, as by ``model(x)``) and its tangent is the dots."""
    from auxbench.meta import losses_and_dots

    torch.manual_seed(2)
    x, labels = torch.randn(8, 2, 5, 5, dtype=torch.double), torch.randint(0, 3, (8, 2))
    loss_fn = _two_task_losses(labels)
    shared, reference = _bn_two_task_net(), _bn_two_task_net()
    names = names or list(params_of(shared))
    v = {n: torch.randn_like(p) for n, p in params_of(shared).items() if n in names}

    matrix, dots = losses_and_dots(shared, v, loss_fn, x)
    want = loss_fn(reference(x))
    assert torch.equal(matrix, want)
    assert torch.equal(shared[1].running_mean, reference[1].running_mean) and shared[1].num_batches_tracked == 1
    assert torch.allclose(dots, _loop_reference(_bn_two_task_net(), names, v, loss_fn, x), atol=1e-10)
    assert not dots.requires_grad
    matrix.sum().backward()
    want.sum().backward()
    for p, q in zip(shared.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-12)
