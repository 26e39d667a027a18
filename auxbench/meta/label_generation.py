"""A label-generation network: soft auxiliary labels that refine each primary class into ψ sub-classes.

Why: MAXL ("Self-Supervised Generalisation with Meta Auxiliary Learning", NeurIPS 2019,
arXiv:1901.08933), WAMAL (weight-aware meta auxiliary learning, an anonymous ICLR 2025 submission)
and AuxiLearn's label-learning experiment ("Auxiliary Learning by Implicit Differentiation",
ICLR 2021, arXiv:2007.02693) train a second network g_φ whose masked softmax assigns every sample a distribution over the ψ
auxiliary classes of its own primary class (WAMAL Eq. 7), and regularise it with the negative
entropy of the batch-mean label distribution (WAMAL Eq. 8) so that the labels do not collapse
onto a few sub-classes.

Deviation from the official codes, all of which multiply by a mask of 1 inside and 1e-8 outside
the block: the mass outside the block is exactly zero (as Eq. 7 states), and the block's
distribution is a (max-subtracted) softmax of its ψ logits only, which cannot overflow (the
official ``exp·mask/Σ`` does at large logits).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from auxbench.backbones.heads import head_layers
from auxbench.problems.base import Problem, TaskSpec


def masked_label_softmax(logits: Tensor, y: Tensor, psi: int) -> Tensor:
    """[B, C·ψ] probabilities: sample i's mass lies only on columns y_i·ψ … y_i·ψ + ψ − 1.

    ``logits`` are [B, C·ψ] with the ψ sub-classes of primary class c in columns c·ψ … c·ψ + ψ − 1;
    ``y`` [B] holds primary class indices in [0, C). Inside the block the probabilities are the
    softmax of that block's logits; every other entry is exactly 0; each row sums to 1.
    """
    if logits.ndim != 2 or logits.shape[1] % psi:
        raise ValueError(
            f"masked_label_softmax: logits must be [batch, classes·psi] with psi={psi}, got {tuple(logits.shape)}"
        )
    batch, num_primary = len(logits), logits.shape[1] // psi
    blocks = logits.view(batch, num_primary, psi)
    inside = blocks[torch.arange(batch, device=logits.device), y].softmax(dim=-1)
    return (F.one_hot(y, num_primary).unsqueeze(-1) * inside.unsqueeze(1)).flatten(1)


class LabelGenerator(nn.Module):
    """g_φ(x, y): a backbone trunk, a head to C·ψ logits and :func:`masked_label_softmax`.

    The head is one linear layer (``hidden = 0``) or Linear(d, hidden)–ReLU–Linear(hidden, C·ψ),
    the two-layer head of the official MAXL and WAMAL label networks (there with hidden = d, the
    trunk's width). ``backbone`` must expose ``feature_dim`` (the width of its output features).
    Submodules are registered as ``backbone`` then ``head``, so the parameter order (and hence
    optimizer state and seeded initialisation order) is fixed.
    """

    def __init__(self, backbone: nn.Module, num_primary: int, psi: int, hidden: int = 0) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head_layers(backbone.feature_dim, num_primary * psi, hidden)
        self.num_primary, self.psi = num_primary, psi

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return masked_label_softmax(self.head(self.backbone(x)), y, self.psi)


def negative_entropy(probs: Tensor) -> Tensor:
    """Σ_k p̄_k log p̄_k of the batch-mean distribution p̄ of ``probs`` [B, K] (WAMAL Eq. 8).

    Minimising it spreads the generated labels over all auxiliary classes. Zero-mass classes
    contribute 0 (p log p → 0), with a finite gradient.
    """
    mean = probs.mean(dim=0)
    return (mean * mean.clamp_min(torch.finfo(mean.dtype).tiny).log()).sum()


def generated_task_unavailable(method: str, problem: Problem) -> str | None:
    """Why ``problem`` cannot host ψ generated sub-classes per primary class (a skip reason), or ``None``."""
    if problem.primary.kind != "classification":
        return (f"{method} needs a classification primary task "
                f"(its generated labels split each primary class into ψ sub-classes)")
    return None


def generated_task(problem: Problem, name: str, psi: int) -> TaskSpec:
    """The auxiliary task a label generator invents: ψ sub-classes of every primary class."""
    return TaskSpec(name, "auxiliary", "classification", problem.primary.num_outputs * psi, "classification", "accuracy")
