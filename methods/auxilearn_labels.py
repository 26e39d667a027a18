"""AuxiLearn, learned auxiliary labels ("Auxiliary Learning by Implicit Differentiation", Navon et al., ICLR 2021,
arXiv:2007.02693, §3.2; the official Oxford-Pet experiment)."""
from __future__ import annotations

import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from torch import Tensor, nn

from auxbench.meta import LabelGenerator, generated_task, generated_task_unavailable, params_of
from auxbench.method import HParam, TrainContext
from auxbench.method_card import Code, CostFloor, Paper, add_passes, hyper_step
from auxbench.problems import Batch, Problem, TaskSpec
from methods.auxilearn import COMBINERS, AuxiLearn


class AuxiLearnLabels(AuxiLearn):
    """AuxiLearn's second setting: a label network generates the auxiliary task, learned implicitly.

    AuxiLearn §3.2 (no useful auxiliary task is known): an auxiliary network g_φ(x, y) produces
    soft labels over ψ sub-classes of the sample's primary class (MAXL-style masked softmax), the
    primary network learns them with an auxiliary head, and a combiner merges the per-sample losses
    [ℓ_main, aux_scale·ℓ_aux]; φ = (label generator, combiner) is learned by the same implicit
    hyper-step as ``auxilearn`` (see its docstring for the hyper-step and every choice shared
    with it, all of which apply). Implemented as ``experiments/oxford_pet/trainer.py`` runs it
    (``AvivNavon/AuxiLearn`` 17495d6), whose defaults are used: ψ = 5, aux_scale 0.25, linear
    combiner with the main-loss skip (the main loss starts at weight 2, the auxiliary at
    1 × 0.25), hyper-step every 30 steps, 3 Neumann iterations with η = the primary learning rate,
    clip 50, one meta SGD optimizer over generator and combiner (lr 1e-3, momentum 0.9, weight
    decay 5e-3); the Pet nonlinear combiner's hidden [10, 10] and init upper 0.2. Both losses use
    the suite's classification loss (the Pet code: focal, γ = 2, on softmax probabilities, for
    both the main and the generated task — ``calc_loss`` in ``experiments/oxford_pet/trainer.py``;
    ``suites/auxilearn_pet.yaml`` sets ``loss: focal``).

    Why a second method rather than a mode of ``auxilearn``: it learns something else (a task, not
    weights over given tasks), applies to other problems (any classification primary, no
    auxiliary task needed, and it ignores the problem's human auxiliary tasks), builds another
    model (a generated-task head), and its official defaults are those of another experiment; a
    leaderboard row should say which of the two it is.

    Deviations from the official code, beyond those of ``auxilearn``:

    - θ of the implicit gradient excludes the generated task's head, as the Pet code's W does
      (it drops ``classifier2``); every other trainable parameter is in it;
    - generated labels are detached in the primary step (the code backpropagates into the
      generator and discards the gradients at the next hyper-step);
    - the generator is the toolkit's ``LabelGenerator``: a trunk like the primary network's (the
      suite's backbone with its own initialisation) and one linear layer to C·ψ logits, with an
      exact masked softmax (the code: an ImageNet ResNet-18 with a 2-layer head and a 1e-8 mask);
    - ψ is the same for every class (the code accepts a list, and uses 5 for all).

    Diagnostics: those of ``auxilearn``; ``weight/auxilearn_aux`` is the effective weight of the
    unscaled generated-task loss (aux_scale times the combiner's weight on its input).

    Cost floor (passes of the primary network: F forward, B backward; G, H, J as in
    ``benchmarks/floors.py``): label network 1F + 1F + 1B per step; every N-th step (``hyper_every``,
    30) a hyper-step as ``auxilearn``'s plus the label network's F + B: 2F + 1B + ((3 + n)F + (4 +
    2n)B)/N.
    """

    name = "auxilearn_labels"
    paper = Paper("Auxiliary Learning by Implicit Differentiation", "ICLR", 2021, arxiv="2007.02693")
    official_code = Code("https://github.com/AvivNavon/AuxiLearn", "17495d6")
    cost_floor = CostFloor("label net 1F, 1F + 1B; every N: label net F+B, 2F+2B + n H + G",
                           lambda T, hp: add_passes((2.0, 1.0), hyper_step(hp["hyper_every"], hp["neumann_iterations"],
                                                                          extra=(1.0, 1.0))))
    version = "1"
    needs_auxiliary_tasks = False
    aux_task = "auxilearn_aux"
    hparams = {
        **AuxiLearn.hparams,
        "psi": HParam(5, "auxiliary classes per primary class", low=2, high=100, space=IntDistribution(2, 10)),
        "aux_scale": HParam(0.25, "factor on the generated task's per-sample loss before the combiner", low=0.0, high=1e4,
                            space=FloatDistribution(0.05, 1.0, log=True)),
        "combiner": HParam("linear_skip", "auxiliary network over [main, scaled aux] per-sample losses",
                           choices=COMBINERS, space=CategoricalDistribution(COMBINERS)),
        "hidden_sizes": HParam([10, 10], "hidden layer widths of the nonlinear combiner", low=1, high=4096),
        "nonlinear_init_upper": HParam(0.2, "nonlinear combiner weights start in U(0, this)", low=0.0, high=100.0,
                                       space=FloatDistribution(0.05, 1.0, log=True)),
        "hyper_every": HParam(30, "N: primary steps between hyper-steps", low=1, high=100_000,
                              space=IntDistribution(5, 100, log=True)),
        "max_grad_norm": HParam(50.0, "global-norm clip of the hypergradient", low=0.0, high=1e6,
                                space=FloatDistribution(1.0, 100.0, log=True)),
        "meta_weight_decay": HParam(5e-3, "weight decay of the meta optimizer", low=0.0, high=10.0,
                                    space=FloatDistribution(1e-6, 1e-2, log=True)),
    }

    @classmethod
    def applicable(cls, problem: Problem) -> str | None:
        return generated_task_unavailable(cls.name, problem)

    def tasks(self, problem: Problem) -> list[TaskSpec]:
        return [problem.primary, generated_task(problem, self.aux_task, self.hp["psi"])]

    def auxiliary_network(self, ctx: TrainContext) -> nn.Module:
        """φ: the label generator, then the combiner (the order of the code's ``phi`` list)."""
        generator = LabelGenerator(ctx.build_backbone(), ctx.problem.primary.num_outputs, self.hp["psi"])
        return nn.ModuleDict({"generator": generator, "combiner": self.make_combiner(2)})

    def task_loss_matrix(self, outputs: dict[str, Tensor], batch: Batch, differentiable: bool) -> Tensor:
        """[ℓ_main, aux_scale · ℓ(f_aux(x), g_φ(x, y))] per sample; targets carry φ's graph only if asked."""
        y = batch.y[self.ctx.problem.primary.name]
        with torch.set_grad_enabled(differentiable):
            targets = self.auxiliary.generator(batch.x, y)
        loss = self.ctx.classification_loss
        return torch.stack(
            [loss(outputs[self.ctx.problem.primary.name], y), self.hp["aux_scale"] * loss(outputs[self.aux_task], targets)],
            dim=1,
        )

    def inner_parameters(self) -> dict[str, Tensor]:
        """θ without the generated task's head (the Pet code's W)."""
        head = f"heads.{self.aux_task}."
        return {name: p for name, p in params_of(self.ctx.model).items() if not name.startswith(head)}

    def effective_weights(self, losses: Tensor) -> Tensor:
        return super().effective_weights(losses) * torch.tensor([1.0, self.hp["aux_scale"]], device=losses.device)
