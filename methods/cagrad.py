"""CAGrad: conflict-averse gradient descent (Liu, Liu, Jin, Stone, Liu, NeurIPS 2021, arXiv:2110.14048, Algorithm 1)."""
from __future__ import annotations

import numpy as np
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution
from scipy.optimize import minimize
from torch import Tensor
from torchjd.aggregation import GramianWeightedAggregator, Weighting

from auxbench.method import HParam, Method
from auxbench.method_card import Code, CostFloor, Paper, per_task_backward


class CAGradWeighting(Weighting):
    """The weights of CAGrad's update on the task Gramian G = J Jᵀ, solved as the official code does.

    Dual (Algorithm 1): w* = argmin_{w ∈ simplex} wᵀG𝟙/T + c̃ √(wᵀGw), c̃ = c‖g₀‖, ‖g₀‖² = 𝟙ᵀG𝟙/T²,
    by SciPy's SLSQP from the uniform start (official ``cagrad``); the update
    d = g₀ + (c̃/‖g_w‖) g_w is returned as row weights 𝟙/T + (c̃/‖g_w‖) w*, divided by 1 + c²
    when ``rescale`` (the official ``rescale=1``) and multiplied by T when ``sum_scale`` (the
    official ``overwrite_grad``, "to match the sum loss"). The official code's 1e-8 guards are kept.

    Deviations, all in how the same problem is solved (version 3):

    - the dual is minimised on G/s with s = ‖g₀‖², which puts its value at the uniform start near
      1 + c (the dual is homogeneous in (G, c̃², the 1e-8 guard), so the minimiser is the same;
      s falls back to tr(G)/T when g₀ = 0). SLSQP's
      tolerance is absolute, and on G itself (the official code) it stops early when gradients
      are large or small: on the 40 random Gramians of ``tests/methods/test_gradient_surgery.py``
      (task gradients scaled 1e-3…1e3) it left a Frank-Wolfe gap, an upper bound on f(w) − min f,
      above 1e-5·f on 26, up to 0.87·f; normalised, on none;
    - ``ftol`` is 1e-12 (on the normalised dual), not SciPy's default 1e-6, which stops up to
      ~2e-3 away from the optimal w (the brute-force test catches that);
    - SLSQP gets the dual's gradient G𝟙/T + c̃ Gw/√(wᵀGw + 1e-8) and the constraint's Jacobian
      −𝟙, which the official code leaves SciPy to difference numerically (T + 1 evaluations of
      each per iteration): at T = 11 the official solve took 7.7 ms a step, as long as four of a
      LeNet-5 step's backward passes, and this one 1.6 ms.
    """

    def __init__(self, c: float, rescale: bool, sum_scale: bool) -> None:
        super().__init__()
        self.c, self.rescale, self.sum_scale = c, rescale, sum_scale

    def forward(self, gramian: Tensor, /) -> Tensor:
        gram = gramian.detach().cpu().double().numpy()
        tasks = gram.shape[0]
        uniform = np.full(tasks, 1.0 / tasks)
        c_tilde = self.c * np.sqrt(uniform @ gram @ uniform + 1e-8) + 1e-8
        w = self.dual_minimiser(gram, c_tilde)
        gw_norm = np.sqrt(max(w @ gram @ w, 0.0))
        weights = uniform + c_tilde / (gw_norm + 1e-8) * w
        if self.rescale:
            weights = weights / (1.0 + self.c**2)
        if self.sum_scale:
            weights = weights * tasks
        return torch.from_numpy(weights).to(device=gramian.device, dtype=gramian.dtype)

    @staticmethod
    def dual_minimiser(gram: np.ndarray, c_tilde: float) -> np.ndarray:
        """argmin over the simplex of w·G𝟙/T + c̃ √(wᵀGw + 1e-8), solved on G/s (class docstring)."""
        tasks = len(gram)
        uniform = np.full(tasks, 1.0 / tasks)
        scale = float(uniform @ gram @ uniform) or float(np.trace(gram)) / tasks or 1.0
        gram, c_tilde, guard = gram / scale, c_tilde / np.sqrt(scale), 1e-8 / scale
        gram_b = gram @ uniform

        def dual(w: np.ndarray) -> tuple[float, np.ndarray]:
            gram_w = gram @ w
            root = np.sqrt(w @ gram_w + guard)
            return float(w @ gram_b + c_tilde * root), gram_b + (c_tilde / root) * gram_w

        return minimize(dual, uniform, jac=True, bounds=[(0.0, 1.0)] * tasks, options={"ftol": 1e-12},
                        constraints={"type": "eq", "fun": lambda x: 1.0 - x.sum(),
                                     "jac": lambda x: -np.ones((1, tasks))}).x


class CAGrad(Method):
    """Update d maximising the worst task improvement within a ball around the mean gradient.

    "Conflict-Averse Gradient Descent for Multi-task Learning" (Liu, Liu, Jin, Stone, Liu, NeurIPS
    2021, arXiv:2110.14048), Algorithm 1: max_d min_i ⟨gᵢ, d⟩ s.t. ‖d − g₀‖ ≤ c‖g₀‖ with g₀ the mean
    shared gradient, solved by its dual over the simplex (:class:`CAGradWeighting`). c = 0.4 (the
    paper's and the official NYUv2 script's value; LibMTL defaults to 0.5). Heads get their own
    task's gradient.

    Paper and official code (``Cranial-XIX/CAGrad``, ``nyuv2/utils.py``) differ in the scale of
    the shared update; the official code produced the published numbers and is the default:

    - ``scale: sum`` (official): the update is multiplied by T before it is written to the shared
      gradients ("to match the sum loss", the scale of the other aggregators); ``scale: mean`` is
      Algorithm 1's update on the scale of the mean gradient g₀;
    - ``rescale: true`` (official ``rescale=1``): divided by 1 + c²; Algorithm 1 has no division.

    The paper's rule is ``scale: mean, rescale: false``. Version 2: version 1 used the mean scale
    with the division, a mixture of the two whose shared step was 1/T of the official one.

    The aggregation runs in torchjd's aggregator machinery with our own weighting: torchjd's
    ``CAGrad`` needs cvxpy and clarabel (not in auxbench's ``aggregators`` extra), and solves the
    same problem on a trace-normalised Gramian without the 1/(1+c²) rescaling; here the solver and
    rescaling are the official code's. Tested against a brute-force solution of the primal problem
    and, step for step, against the official rule (``tests/parity/test_cagrad.py``).

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): 1F + T·B per step (T task gradients through the backbone) plus the
    aggregation on the T×T Gramian, not counted. Where the passes come from: ``mtl_backward`` computes
    the Jacobian with T backbone backward passes (one batched, vmapped backward) plus one through the
    heads (≤ T+1); one SLSQP solve on the T×T Gramian on the host (a device-to-host copy of T² numbers
    per step, as the official code).
    """

    name = "cagrad"
    paper = Paper("Conflict-Averse Gradient Descent for Multi-task Learning", "NeurIPS", 2021, arxiv="2110.14048")
    official_code = Code("https://github.com/Cranial-XIX/CAGrad", "dc3d481")
    cost_floor = CostFloor("1F + T·B (+ T×T Gramian)", per_task_backward)
    version = "3"  # 3: the dual solved on a normalised Gramian with analytic gradients (CAGradWeighting)
    hook = "aggregator"
    hparams = {
        "c": HParam(0.4, "radius of the ball around the mean gradient, relative to its norm", low=0.0, high=100.0,
                    space=FloatDistribution(0.0, 1.0)),
        "rescale": HParam(True, "divide the update by 1 + c² (official rescale=1; the paper: false)"),
        "scale": HParam("sum", "'sum': the update times T (official code); 'mean': the mean-gradient scale (paper)",
                        choices=("sum", "mean"), space=CategoricalDistribution(("sum", "mean"))),
    }

    def aggregator(self) -> GramianWeightedAggregator:
        return GramianWeightedAggregator(CAGradWeighting(self.hp["c"], self.hp["rescale"], self.hp["scale"] == "sum"))
