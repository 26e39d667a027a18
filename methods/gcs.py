"""Gradient cosine similarity (Du, Czarnecki, Jayakumar, Farajtabar, Pascanu, Lakshminarayanan 2018)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from optuna.distributions import CategoricalDistribution
from torch import Tensor

from auxbench.method import HParam, Method
from auxbench.method_card import Code, CostFloor, Paper, per_task_backward


class GCS(Method):
    """Use an auxiliary gradient only as far as it points the primary gradient's way (Du et al. 2018).

    "Adapting auxiliary losses using gradient similarity": with g_main the primary task's
    gradient and g_k auxiliary task k's, each over *all* shared parameters flattened into one
    vector, and c_k = cos(g_main, g_k), the shared update is

    - ``variant = "unweighted"`` (default; the paper's Algorithm 1):
      g_main + Σ_k 1[c_k > 0] · g_k;
    - ``variant = "weighted"`` (the paper's weighted variant): g_main + Σ_k max(0, c_k) · g_k.

    Task heads get their own task's gradient unchanged (the engine's ``combine_grads`` level).
    Checked against AuxiLearn's GradCosine (AvivNavon/AuxiLearn: experiments/weight_methods.py:
    one cosine over all flattened shared parameters, ``F.cosine_similarity`` with eps 1e-8, as
    here). The SLGrad repository's CosSim, which keeps only the last
    auxiliary task's gradient and normalises every layer's gradient to unit norm,
    is not copied. No per-block variant is offered (the paper computes one cosine over the
    shared parameters). Logged weights: 1 for the primary task, each auxiliary task's factor.
    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 1F + T·B per step (T task gradients through the backbone) plus the
    aggregation on the T×T Gramian, not counted. Where the passes come from: one backward pass per task
    per step.
    """

    name = "gcs"
    paper = Paper("Adapting Auxiliary Losses Using Gradient Similarity", "preprint", 2018, arxiv="1812.02224")
    official_code = Code(None, note="none released; AuxiLearn's GradCosine read as a reference")
    cost_floor = CostFloor("1F + T·B", per_task_backward)
    needs_auxiliary_tasks = True
    hook = "combine_grads"
    hparams = {
        "variant": HParam("unweighted", "'unweighted': add g_k iff cos > 0; 'weighted': scale g_k by max(0, cos)",
                          choices=("unweighted", "weighted"),
                          space=CategoricalDistribution(("unweighted", "weighted"))),
    }

    def combine_grads(self, task_grads: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        primary = self.ctx.problem.primary.name
        main = task_grads[primary]
        names = list(main)
        main_flat = torch.cat([main[n].reshape(-1) for n in names])
        combined = dict(main)
        factors: dict[str, Tensor | float] = {primary: 1.0}
        for task, grads in task_grads.items():
            if task == primary:
                continue
            cosine = F.cosine_similarity(main_flat, torch.cat([grads[n].reshape(-1) for n in names]), dim=0)
            factor = (cosine > 0).to(cosine.dtype) if self.hp["variant"] == "unweighted" else cosine.clamp_min(0.0)
            factors[task] = factor
            combined = {n: combined[n] + factor * grads[n] for n in names}
        self.ctx.log_weights(factors)
        return combined
