"""Dynamic weight average (Liu, Johns, Davison, "End-to-end multi-task learning with attention", CVPR 2019)."""
from __future__ import annotations

import torch
from optuna.distributions import FloatDistribution
from torch import Tensor

from auxbench.method import HParam, Method, TrainContext
from auxbench.method_card import Code, CostFloor, Paper


class DWA(Method):
    """Task weights from how fast each task's loss fell over the last two epochs (MTAN, Eq. 7).

    λ_k(t) = K · exp(w_k(t−1)/T) / Σ_i exp(w_i(t−1)/T),  w_k(t−1) = L_k(t−1) / L_k(t−2),

    with K the number of tasks, T = 2 (the paper's temperature), L_k(t) the mean over epoch t's
    training batches of task k's batch-mean loss, and λ_k = 1 for the first two epochs (t = 0, 1).
    The engine minimises Σ_k λ_k · mean ℓ_k with λ constant. Checked against the official MTAN
    code (lorenmt/mtan: the ``dwa`` branch of the training loop: ``avg_cost[index - 1] /
    avg_cost[index - 2]``, λ = 1 for index 0 and 1).

    The epoch's loss sums stay on the device (a tensor added to each step, read only when the
    epoch ends), so a step costs no host synchronisation. No deviation from the paper.

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 1F + 1B per step (the weights change once per epoch).
    """

    name = "dwa"
    paper = Paper("End-to-End Multi-Task Learning with Attention", "CVPR", 2019, arxiv="1803.10704")
    official_code = Code("https://github.com/lorenmt/mtan", "c36c30b")
    cost_floor = CostFloor("1F + 1B", (1.0, 1.0))
    hook = "weights"
    hparams = {
        "temperature": HParam(2.0, "T: softmax temperature of the loss ratios", low=1e-3, high=1e4,
                              space=FloatDistribution(0.5, 10.0, log=True)),
    }

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        n = len(ctx.tasks)
        self.lambdas = torch.ones(n, device=ctx.device)
        self.loss_sums = torch.zeros(n, device=ctx.device)
        self.batches = 0
        self.last_means = torch.ones(n, device=ctx.device)
        self.before_last_means = torch.ones(n, device=ctx.device)
        self.epochs_seen = 0

    def weights(self, losses: dict[str, Tensor]) -> dict[str, Tensor]:
        tasks = [t.name for t in self.ctx.tasks]
        self.loss_sums += torch.stack([losses[t].detach().mean() for t in tasks])
        self.batches += 1
        return dict(zip(tasks, self.lambdas, strict=True))

    def end_epoch(self, epoch: int) -> None:
        self.before_last_means, self.last_means = self.last_means, self.loss_sums / max(self.batches, 1)
        self.loss_sums = torch.zeros_like(self.loss_sums)
        self.batches = 0
        self.epochs_seen += 1
        if self.epochs_seen >= 2:
            ratios = self.last_means / self.before_last_means
            self.lambdas = len(self.ctx.tasks) * torch.softmax(ratios / self.hp["temperature"], dim=0)
