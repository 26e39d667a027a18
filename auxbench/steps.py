"""The engine's training step for each hook level a method can declare (``Method.hook``).

The levels share one shape: forward, losses, gradients, then every optimizer the engine owns
steps (the model's, plus dedicated ones of learned tensors). Only ``train_step`` hands the whole
step to the method. Nothing here reads a tensor back to the host: metrics stay on the device
until the epoch ends.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from auxbench.context import TrainContext
from auxbench.errors import AuxbenchError
from auxbench.method import Method
from auxbench.problems.base import Batch


class WeightLog:
    """Task and sample weights seen during an epoch, summarised as ``weight/<task>[/stat]``.

    A scalar weight per task is averaged over steps (``weight/<task>``); per-sample weights are
    kept for the epoch and summarised as ``weight/<task>/{mean,min,max,p05,p50,p95}``.
    """

    QUANTILES = {"p05": 0.05, "p50": 0.5, "p95": 0.95}

    def __init__(self) -> None:
        self.scalars: dict[str, list[Tensor]] = {}
        self.samples: dict[str, list[Tensor]] = {}

    def __call__(self, weights: Mapping[str, Tensor | float]) -> None:
        for task, w in weights.items():
            w = torch.as_tensor(w).detach()
            (self.samples if w.dim() > 0 else self.scalars).setdefault(task, []).append(w.float().reshape(-1))

    def summary(self) -> dict[str, float]:
        """The epoch's summary (one host read per task), then a fresh log."""
        out: dict[str, float] = {}
        for task, values in self.scalars.items():
            out[f"weight/{task}"] = float(torch.cat(values).mean())
        for task, values in self.samples.items():
            v = torch.cat(values)
            out[f"weight/{task}/mean"] = float(v.mean())
            out[f"weight/{task}/min"] = float(v.min())
            out[f"weight/{task}/max"] = float(v.max())
            qs = torch.quantile(v.double().cpu(), torch.tensor(list(self.QUANTILES.values()), dtype=torch.float64))
            out.update({f"weight/{task}/{k}": float(q) for k, q in zip(self.QUANTILES, qs, strict=True)})
        self.scalars, self.samples = {}, {}
        return out


class Stepper:
    """Runs one training step of ``method`` at the level its stream plan names."""

    def __init__(self, method: Method, ctx: TrainContext, optimizers: list[torch.optim.Optimizer],
                 hook: str) -> None:
        """``hook``: the level of the trial's stream plan (:mod:`auxbench.stream_plan`)."""
        self.method, self.ctx, self.optimizers = method, ctx, optimizers
        self.run = getattr(self, f"_{hook}")
        self._jd_aggregator = method.aggregator() if hook == "aggregator" else None
        # torchjd's Jacobian backward: the T task signals one at a time on a CPU, where its vmapped
        # backward (all at once) materialises per-task copies and was slower than T plain
        # backwards (docs/performance.md); vmapped on an accelerator, where it pays.
        self._jacobian_chunk = 1 if ctx.device.type == "cpu" else None

    def _zero_grad(self) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)

    def _step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()

    def _losses(self, batch: Batch) -> dict[str, Tensor]:
        return self.ctx.forward_losses(batch)

    def _minimise(self, loss: Tensor) -> dict[str, Tensor]:
        self._zero_grad()
        loss.backward()
        self._step()
        return {"loss": loss.detach()}

    # -- levels --
    def _combine(self, batch: Batch, phase: str) -> dict[str, Tensor]:
        return self._minimise(self.method.combine(self._losses(batch)))

    def _weights(self, batch: Batch, phase: str) -> dict[str, Tensor]:
        losses = self._losses(batch)
        weights = self.method.weights(losses)
        unknown = set(weights) - set(losses)
        if unknown:
            raise AuxbenchError(f"method {self.method.name!r}: weights() names tasks {sorted(unknown)} without a loss")
        self.ctx.log_weights(weights)
        return self._minimise(sum((torch.as_tensor(w).detach() * losses[t]).mean() for t, w in weights.items()))

    def _combine_grads(self, batch: Batch, phase: str) -> dict[str, Tensor]:
        losses = self._losses(batch)
        means = {task: loss.mean() for task, loss in losses.items()}
        shared = self.ctx.shared_params
        names, params = list(shared), list(shared.values())
        task_grads = {}
        for task, mean in means.items():
            grads = torch.autograd.grad(mean, params, retain_graph=True, allow_unused=True)
            task_grads[task] = {
                n: torch.zeros_like(p) if g is None else g for n, p, g in zip(names, params, grads, strict=True)
            }
        total = sum(means.values())
        heads = [p for p in self.ctx.model.head_parameters() if p.requires_grad]
        head_grads = torch.autograd.grad(total, heads, allow_unused=True)
        combined = self.method.combine_grads(task_grads)
        missing = [n for n in names if n not in combined]
        if missing:
            raise AuxbenchError(f"method {self.method.name!r}: combine_grads() returned no gradient for {missing[:3]}...")
        self._zero_grad()
        for n, p in shared.items():
            p.grad = combined[n]
        for p, g in zip(heads, head_grads, strict=True):
            p.grad = g
        self._step()
        return {"loss": total.detach()}

    def _aggregator(self, batch: Batch, phase: str) -> dict[str, Tensor]:
        from torchjd.autojac import jac_to_grad, mtl_backward

        ctx, model = self.ctx, self.ctx.model
        features: list[Tensor] = []  # one per forward: the batch's, and an aux batch's if any

        def forward(x: Tensor) -> dict[str, Tensor]:
            features.append(model.features(x))
            return model.heads_forward(features[-1])

        losses = ctx.forward_losses(batch, forward)
        tasks = list(losses)
        means = [losses[t].mean() for t in tasks]
        shared = list(ctx.shared_params.values())
        self._zero_grad()
        mtl_backward(
            means, features=features, shared_params=shared,
            tasks_params=[[p for p in model.heads[t].parameters() if p.requires_grad] for t in tasks],
            parallel_chunk_size=self._jacobian_chunk,
        )
        jac_to_grad(shared, self._jd_aggregator)
        self._step()
        return {"loss": torch.stack(means).sum().detach()}

    def _train_step(self, batch: Batch, phase: str) -> dict[str, Tensor]:
        return self.method.train_step(batch, phase)
