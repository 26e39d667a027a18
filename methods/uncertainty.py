"""Homoscedastic-uncertainty task weighting (Kendall, Gal, Cipolla, CVPR 2018)."""
from __future__ import annotations

import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution
from torch import Tensor

from auxbench.method import HParam, Method, TrainContext
from auxbench.method_card import Code, CostFloor, Paper


class Uncertainty(Method):
    """Each task's loss weighted by a learned homoscedastic variance σ_t² (Kendall et al. 2018).

    With s_t = log σ_t² learned jointly with the network (``self.learn``), the loss is

        L = Σ_t c_t · exp(−s_t) · mean ℓ_t + s_t / 2

    where the factor c_t follows the paper's likelihoods (``factors = "kendall"``, default):
    c_t = 1/2 for a regression task (Gaussian likelihood, Eq. 5–7: 1/(2σ²)·L + log σ) and c_t = 1
    for a classification task (scaled softmax likelihood, Eq. 8–10: 1/σ²·L + log σ); binary and
    multilabel tasks are treated as classification (the paper derives only the softmax case: our
    extension). ``factors = "half"`` uses c_t = 1/2 for every task, as LibMTL
    (LibMTL/weighting/UW.py) and Auto-Lambda (trainer_cifar.py) do; ``factors = "one"`` is
    exp(−s)·L + s, the form of the README's ``uncertainty_example``. The three differ by a
    rescaling of σ and of the loss, not in kind.

    Checked against LibMTL's UW (loss/(2·exp(s)) + s/2, s learned by the model's optimizer) and
    s starts at 0 (σ = 1; the paper states no initialisation; LibMTL
    −0.5, Auto-Lambda −0.7: ``init_log_var``). s joins the engine's optimizer as its own group
    at the suite's learning rate with no weight decay (the paper trains s with the network).
    The method is not designed for auxiliary learning: every task, the primary included, is
    down-weighted when its loss is high.

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 1F + 1B per step (the T log-variances cost nothing that counts).
    """

    name = "uncertainty"
    paper = Paper("Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry and Semantics", "CVPR", 2018,
                  arxiv="1705.07115")
    official_code = Code(None, note="none released")
    cost_floor = CostFloor("1F + 1B", (1.0, 1.0))
    hparams = {
        "factors": HParam("kendall", "c_t: 'kendall' (½ regression, 1 classification), 'half', 'one'",
                          choices=("kendall", "half", "one"),
                          space=CategoricalDistribution(("kendall", "half", "one"))),
        "init_log_var": HParam(0.0, "initial s_t = log σ_t²", low=-5.0, high=5.0,
                               space=FloatDistribution(-1.0, 1.0)),
    }

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        (self.log_vars,) = self.learn("log_vars", torch.full((len(ctx.tasks),), self.hp["init_log_var"]))
        self.factors = torch.tensor([self._factor(t.kind) for t in ctx.tasks], device=ctx.device)

    def _factor(self, kind: str) -> float:
        if self.hp["factors"] == "kendall":
            return 0.5 if kind == "regression" else 1.0
        return 0.5 if self.hp["factors"] == "half" else 1.0

    def _regulariser(self) -> Tensor:
        return self.log_vars if self.hp["factors"] == "one" else 0.5 * self.log_vars

    def combine(self, losses: dict[str, Tensor]) -> Tensor:
        means = torch.stack([losses[t.name].mean() for t in self.ctx.tasks])
        return (self.factors * torch.exp(-self.log_vars) * means + self._regulariser()).sum()

    def diagnostics(self) -> dict[str, float]:
        weights = (self.factors * torch.exp(-self.log_vars.detach())).tolist()
        return {f"weight/{t.name}": w for t, w in zip(self.ctx.tasks, weights, strict=True)}
