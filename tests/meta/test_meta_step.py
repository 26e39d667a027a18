import pytest
import torch

from auxbench.meta import apply_hypergrad


def _params():
    return [torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64)),
            torch.nn.Parameter(torch.tensor([3.0], dtype=torch.float64))]


def test_replaces_stale_gradients_and_steps_with_the_hypergradient():
    params = _params()
    for p in params:
        p.grad = torch.full_like(p, 100.0)  # e.g. left by a backward through the learned parameters
    optimizer = torch.optim.SGD(params, lr=0.5)
    grads = [torch.tensor([0.2, -0.4], dtype=torch.float64), torch.tensor([0.6], dtype=torch.float64)]
    norm = apply_hypergrad(optimizer, params, grads, max_grad_norm=None)
    torch.testing.assert_close(params[0].detach(), torch.tensor([0.9, 2.2], dtype=torch.float64))
    torch.testing.assert_close(params[1].detach(), torch.tensor([2.7], dtype=torch.float64))
    torch.testing.assert_close(norm, torch.tensor(0.56, dtype=torch.float64).sqrt())


def test_clips_the_global_norm_of_all_parameters_together():
    params = _params()
    optimizer = torch.optim.SGD(params, lr=1.0)
    grads = [torch.tensor([3.0, 0.0], dtype=torch.float64), torch.tensor([4.0], dtype=torch.float64)]  # norm 5
    norm = apply_hypergrad(optimizer, params, grads, max_grad_norm=1.0)
    assert norm.item() == pytest.approx(5.0)  # the norm before clipping
    step = [before - after.detach() for before, after in zip(_params(), params, strict=True)]
    torch.testing.assert_close(torch.cat([s.detach() for s in step]), torch.tensor([0.6, 0.0, 0.8], dtype=torch.float64))


def test_does_not_clip_below_the_max_norm():
    params = _params()
    optimizer = torch.optim.SGD(params, lr=1.0)
    grads = [torch.tensor([0.3, 0.0], dtype=torch.float64), torch.tensor([0.4], dtype=torch.float64)]
    apply_hypergrad(optimizer, params, grads, max_grad_norm=1.0)
    torch.testing.assert_close(params[1].detach(), torch.tensor([2.6], dtype=torch.float64))


def test_rejects_a_length_mismatch():
    params = _params()
    with pytest.raises(ValueError, match="2 parameters but 1 hypergradients"):
        apply_hypergrad(torch.optim.SGD(params, lr=1.0), params, [torch.zeros(2)])
