"""WAMAL: weight-aware meta auxiliary learning (anonymous ICLR 2025 submission, "Weight-Aware Meta Auxiliary Learning")."""
from __future__ import annotations

import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution
from torch import Tensor, nn

from auxbench.meta import LabelGenerator, masked_label_softmax
from auxbench.method import HParam, TrainContext
from auxbench.method_card import Code, CostFloor, Paper
from methods.maxl import MAXL


class LabelWeightNetwork(nn.Module):
    """g_φ with two heads on one trunk: masked-softmax labels (Eq. 7) and a bounded weight (Eqs. 9–10).

    ``labels`` is the same :class:`LabelGenerator` MAXL uses (registered first, so under one seed it
    starts from MAXL's weights); the weight head is W₂·ReLU(W₁ z + b₁) + b₂ with W₁: d → d, as
    the official ``LabelWeightWrapper`` builds it, and the weight is 2^(2·r·σ(·) − r) ∈ [2^−r, 2^r].
    """

    def __init__(self, labels: LabelGenerator, weight_range: float) -> None:
        super().__init__()
        self.labels = labels
        dim = labels.backbone.feature_dim
        self.weight_head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 1))
        self.weight_range = weight_range

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        z = self.labels.backbone(x)
        targets = masked_label_softmax(self.labels.head(z), y, self.labels.psi)
        unscaled = torch.sigmoid(self.weight_head(z)).squeeze(-1)  # Eq. 9
        r = self.weight_range
        return targets, torch.exp2(2.0 * r * unscaled - r)  # Eq. 10


class WAMAL(MAXL):
    """Weight-Aware Meta Auxiliary Learning: MAXL's label network also learns per-sample weights.

    Paper: "Weight-Aware Meta Auxiliary Learning", an anonymous ICLR 2025 submission (under
    double-blind review). Implements its §3 (Eq. 5: per-sample loss ℓ_pri + g_weight(x)·ℓ_aux(f_aux(x),
    g_label(x)); Eq. 6: φ is updated only through the primary loss, with the one-step look-ahead
    estimate of the bilevel gradient of Eq. 4; Eq. 7 masked softmax; Eq. 8 batch-mean entropy;
    Eqs. 9–10 the bounded weight head) and Algorithm 1 (App. A.13: a θ pass, then a φ pass, every
    epoch), with MAXL's machinery (``methods.maxl``; see its docstring for the look-ahead, the
    ``generator_hidden`` and ``phi_updates_bn_stats`` options and every convention shared with
    MAXL). Defaults: Table 18 (ψ = 5, entropy 0.2, r = 5, label/weight network SGD 1e-3, weight
    decay 5e-4, StepLR 50 / 0.5; the primary network's SGD 0.01 is the suite's). Diagnostics: the
    generated labels' entropy, and the per-sample weights the weight head gives in the θ pass as
    ``weight/wamal_aux/{mean,min,max,p05,p50,p95}`` per epoch.

    Where paper and official code (``MatthewSo/wamal``, commit f8c9117, ``wamal/train_network.py``)
    differ:

    - ``aux_weighting``: Eq. 5 weights each sample's auxiliary loss, mean_i(w_i·ℓ_i)
      (``per_sample``, the default: the paper's algorithm). The released code multiplies the [B]
      losses by the [B, 1] weights in both passes, which broadcasts to [B, B], so its
      ``mean(loss * weight)`` is mean(w)·mean(ℓ): one scale per batch, and every sample's weight
      gets the same gradient (``batch_mean``). The published numbers were produced by that code,
      i.e. by ``batch_mean``;
    - r: the paper's 5 (Table 18, and its ablation, Table 13: r = 10 → 61 %, r = 5 → 81.6 %), not
      the 15 of the only runnable official script; ``weight_range`` sets it;
    - φ's data: the official code (and the paper's best configuration, App. A.3.2 Table 4: a 10 %
      meta set gave 80.74 % against 81.53 % without) runs φ on training batches, while Algorithm 1
      splits D into D_meta and D_prim and runs φ over D_meta. Default ``phi_data: train`` (the code
      and the reported numbers); ``phi_data: meta`` gives Algorithm 1: θ trains on ``train`` only and
      the φ pass iterates the held-out ``meta`` split;
    - order within an epoch: θ then φ, as the code and Algorithm 1 do (§5.2's text says φ first);
    - the weights are not normalised per batch (App. A.9 ablates normalisation; the default has none).

    Deviations from the official code, beyond MAXL's (which all apply):

    - generated labels *and weights* are detached in the θ step (the official code lets the θ
      backward flow into g and discards it);
    - the look-ahead's forward at θ⁺ never updates BatchNorm running statistics (the official
      ``functional_call`` passes only parameters, so it updates the module's own buffers: a second
      update per φ batch besides the one ``phi_updates_bn_stats`` gives);
    - model selection never uses test data (the official loop keeps the best model by test accuracy);
    - the weight head's input is the trunk's feature vector, as Eq. 9 states; it is
      W₂·ReLU(W₁ z + b₁) + b₂ with W₁: d → d, as the official ``LabelWeightWrapper`` builds it.

    With ``weight_range = 0`` every weight is exactly 1 and the weight head gets no gradient, so
    WAMAL takes exactly MAXL's steps under either weighting (tested).

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): as MAXL's, 5F + 5B per step (θ step + φ step); the weight head is two
    linear layers on the label network's features, not counted.
    """

    name = "wamal"
    paper = Paper("Weight-Aware Meta Auxiliary Learning", "OpenReview", 2025)
    official_code = Code("https://github.com/MatthewSo/wamal", "f8c91176dc42")
    cost_floor = CostFloor("as MAXL (the weight head is two linear layers): 5F + 5B", (5.0, 5.0))
    version = "2"  # 2: φ's gradient by one JVP (MAXL's version 3)
    aux_task = "wamal_aux"
    hparams = {
        **MAXL.hparams,
        "weight_range": HParam(5.0, "r: auxiliary sample weights lie in [2^-r, 2^r] (Eq. 10)", low=0.0, high=40.0,
                               space=FloatDistribution(0.0, 10.0)),
        "phi_data": HParam("train", "data of the φ pass: 'train' (official code) or 'meta' (Algorithm 1)",
                           choices=("train", "meta"), space=CategoricalDistribution(("train", "meta"))),
        "aux_weighting": HParam("per_sample", "'per_sample': mean of w_i·ℓ_i (Eq. 5); 'batch_mean': mean(w)·mean(ℓ) "
                                "(the released code, which produced the published numbers)",
                                choices=("per_sample", "batch_mean"), later=True),
    }

    def uses_streams(self) -> tuple[str, ...]:
        return ("meta",) if self.hp["phi_data"] == "meta" else ()

    def pass_data(self, phase: str) -> str:
        return "meta" if phase == "phi" and self.hp["phi_data"] == "meta" else "train"

    def label_network(self, ctx: TrainContext) -> nn.Module:
        return LabelWeightNetwork(super().label_network(ctx), self.hp["weight_range"]).to(ctx.device)

    def generate(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return self.label_net(x, y)

    def auxiliary_term(self, aux: Tensor, weights: Tensor) -> Tensor:
        """Eq. 5's weighted mean, or the released code's mean(w)·mean(ℓ) (``aux_weighting``)."""
        if self.hp["aux_weighting"] == "batch_mean":
            return weights.mean() * aux.mean()
        return (weights * aux).mean()
