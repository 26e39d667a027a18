"""The engine: one trial, from its config to ``result.json``.

A trial is a plain JSON-able config (see :mod:`auxbench.spec`) and a folder. The engine seeds
everything, builds problem, model and method, trains for ``epochs`` and after every epoch
evaluates every task on ``val`` and ``test`` (fewer evaluations with ``eval_every`` and
``test_eval: selected``), rewrites ``metrics.csv`` and saves a checkpoint, each atomically.
``result.json`` is written last: it marks the trial finished. A run that is killed resumes
from its last checkpoint and ends bit-identical to an uninterrupted one on CPU (on a GPU with
``training.deterministic``), because data order, augmentation and every stream are functions of
(seed, epoch, stream), and the random generators, the method's state and its learned tensors are
checkpointed.

Its parts, in the order a trial uses them:

- :mod:`~auxbench.engine.build`: method, problem, stream plan (:mod:`auxbench.stream_plan`),
  splits, model, optimizers, training context, stepper;
- :mod:`~auxbench.engine.placement`: the device, precision, which splits live on the device;
- :mod:`~auxbench.engine.trial`: the epoch loop (steps at the method's hook level,
  :mod:`auxbench.steps`) and :func:`run_trial`;
- :mod:`~auxbench.engine.evaluation`: metrics, which epochs are evaluated, final and best rows;
- :mod:`~auxbench.engine.checkpoint`: ``metrics.csv`` and the checkpoint, each epoch.
"""
from auxbench.engine.evaluation import evaluate, summarise
from auxbench.engine.placement import place_splits
from auxbench.engine.trial import Trial, run_trial

__all__ = ["Trial", "evaluate", "place_splits", "run_trial", "summarise"]
