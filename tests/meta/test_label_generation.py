import numpy as np
import pytest
import torch
from torch import nn

from auxbench.meta import LabelGenerator, masked_label_softmax, negative_entropy

C, PSI = 4, 3


def _numpy_reference(logits: np.ndarray, y: np.ndarray, psi: int) -> np.ndarray:
    out = np.zeros_like(logits, dtype=np.float64)
    for i, c in enumerate(y):
        block = logits[i, c * psi: (c + 1) * psi].astype(np.float64)
        e = np.exp(block - block.max())
        out[i, c * psi: (c + 1) * psi] = e / e.sum()
    return out


@pytest.mark.parametrize("scale", [1.0, 1e4], ids=["moderate", "large_logits"])
def test_masked_label_softmax_puts_all_mass_in_the_class_block(scale):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(10, C * PSI, generator=gen) * scale
    y = torch.randint(0, C, (10,), generator=gen)
    probs = masked_label_softmax(logits, y, PSI)
    assert torch.isfinite(probs).all()
    block = torch.arange(C * PSI) // PSI
    outside = block.unsqueeze(0) != y.unsqueeze(1)
    assert torch.equal(probs[outside], torch.zeros(int(outside.sum())))  # exactly zero, not 1e-8
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(10))
    np.testing.assert_allclose(probs.numpy(), _numpy_reference(logits.numpy(), y.numpy(), PSI), rtol=1e-5, atol=1e-7)


def test_masked_label_softmax_has_no_gradient_to_logits_outside_the_block():
    logits = torch.randn(5, C * PSI, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 1, 1, 2])
    weights = torch.randn(5, C * PSI, dtype=torch.float64)
    (grad,) = torch.autograd.grad((masked_label_softmax(logits, y, PSI) * weights).sum(), logits)
    outside = (torch.arange(C * PSI) // PSI).unsqueeze(0) != y.unsqueeze(1)
    assert torch.equal(grad[outside], torch.zeros(int(outside.sum()), dtype=torch.float64))
    assert grad[~outside].abs().max() > 0


def test_masked_label_softmax_rejects_a_width_that_is_not_classes_times_psi():
    with pytest.raises(ValueError, match="psi=3"):
        masked_label_softmax(torch.zeros(2, 7), torch.zeros(2, dtype=torch.long), 3)


class _Trunk(nn.Module):
    feature_dim = 6

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU())

    def forward(self, x):
        return self.body(x)


def test_label_generator_is_trunk_then_head_then_masked_softmax():
    torch.manual_seed(0)
    gen = LabelGenerator(_Trunk(), C, PSI)
    assert [n for n, _ in gen.named_parameters()] == [
        "backbone.body.0.weight", "backbone.body.0.bias", "backbone.body.1.weight", "backbone.body.1.bias",
        "head.weight", "head.bias",
    ]
    assert gen.head.out_features == C * PSI
    x, y = torch.randn(8, 5), torch.randint(0, C, (8,))
    torch.testing.assert_close(gen(x, y), masked_label_softmax(gen.head(gen.backbone(x)), y, PSI), rtol=0, atol=0)


def test_negative_entropy_matches_numpy_and_handles_empty_classes():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(7, C * PSI, dtype=torch.float64, generator=gen)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 0])  # class 3's block gets no mass at all
    probs = masked_label_softmax(logits, y, PSI).requires_grad_()
    mean = probs.detach().numpy().mean(axis=0)
    nonzero = mean[mean > 0]
    expected = (nonzero * np.log(nonzero)).sum()
    value = negative_entropy(probs)
    np.testing.assert_allclose(value.item(), expected, rtol=1e-12)
    assert value.item() < 0
    (grad,) = torch.autograd.grad(value, probs)
    assert torch.isfinite(grad).all()
