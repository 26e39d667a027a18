"""Building one trial from its config: method, problem, stream plan, placed splits, model,
optimizers, training context and stepper (:func:`build_trial`), in the order that fixes every
random draw.

Paired seeds: the backbone, then the heads in task order, are built from the same seed for every
method, so the shared model starts from identical weights; a method's ``setup`` draws after them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from auxbench.backbones import block_map, build_backbone, build_model
from auxbench.config import training_option
from auxbench.context import Streams, TrainContext
from auxbench.engine.placement import pick_device, place_splits, placed, precision_context
from auxbench.errors import AuxbenchError
from auxbench.losses import TaskLosses
from auxbench.method import Learned, Method, check_declaration, resolve_method
from auxbench.method_state import collect_state
from auxbench.optim import make_optimizer, make_scheduler
from auxbench.problems import Problem, TensorSplit, build_problem
from auxbench.problems.images import backbone_image_config
from auxbench.rng import seed_everything
from auxbench.smoke import SMOKE_IMAGE_SIZE, shrink_problem
from auxbench.steps import Stepper, WeightLog
from auxbench.stream_plan import StreamPlan, plan_streams


def build_method(config: dict) -> Method:
    cls: type[Method] = resolve_method(config["method"])
    check_declaration(cls)
    return cls(**config["hparams"])


def build_trial_problem(config: dict) -> Problem:
    """The trial's problem for its seed (cut down under ``smoke``)."""
    training = config["training"]
    problem = build_problem(
        config["problem"], int(config["seed"]), meta_fraction=training["meta_fraction"],
        meta_source=training["meta_source"], fake=config["fake_data"],
        image=backbone_image_config(config["backbone"]),
        max_image_size=SMOKE_IMAGE_SIZE if config.get("smoke") else None, **config["problem_options"],
    )
    return shrink_problem(problem, training["batch_size"]) if config.get("smoke") else problem


class EngineOptimizers:
    """The engine's optimizer (the model's, plus learned tensors without a dedicated one), the
    optimizers it steps each training step and the schedulers it steps each epoch."""

    def __init__(self, model: torch.nn.Module, training: dict, method: Method, plan: StreamPlan) -> None:
        self.training, self.method, self.plan = training, method, plan
        self.optimizer = make_optimizer(model.parameters(), training["optimizer"])
        self.stepped: list[torch.optim.Optimizer] = [self.optimizer]
        self.schedulers: list = []
        self.scheduler: Any = None

    def attach_learned(self, entry: Learned) -> None:
        """Give learned tensors an optimizer: a group of the engine's, or a dedicated one."""
        if entry.optimizer_cfg is None:
            lr = self.training["optimizer"]["lr"] if entry.lr is None else entry.lr
            self.optimizer.add_param_group({"params": entry.params, "lr": lr, "weight_decay": entry.weight_decay})
            return
        what = f"method {self.method.name!r} learned {entry.name!r}"
        entry.optimizer = make_optimizer(entry.params, entry.optimizer_cfg, f"{what} optimizer")
        if self.plan.engine_steps_learned:
            self.stepped.append(entry.optimizer)
        if entry.scheduler_cfg is not None:
            entry.scheduler = make_scheduler(entry.optimizer, entry.scheduler_cfg, self.training["epochs"],
                                             f"{what} scheduler")
            self.schedulers.append(entry.scheduler)

    def start_schedule(self) -> None:
        """The engine's scheduler, made after the method's setup: learned tensors may have joined
        the optimizer as groups of their own."""
        self.scheduler = make_scheduler(self.optimizer, self.training["scheduler"], self.training["epochs"])
        self.schedulers.insert(0, self.scheduler)


@dataclass
class TrialParts:
    """Everything built for one trial (read as the :class:`~auxbench.engine.Trial`'s attributes)."""

    config: dict
    training: dict
    seed: int
    device: torch.device
    method: Method
    problem: Problem
    plan: StreamPlan
    train_split: TensorSplit
    data: dict[str, TensorSplit]  # every split the trial reads, by role, where data_on_device puts it
    model: torch.nn.Module
    optimizers: EngineOptimizers
    losses: TaskLosses
    weight_log: WeightLog
    ctx: TrainContext
    stepper: Stepper

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.optimizers.optimizer

    @property
    def own_optimizers(self) -> list[torch.optim.Optimizer]:
        return self.optimizers.stepped

    def precision(self):
        return precision_context(self.device, training_option(self.training, "precision"))

    def engine_owned(self) -> tuple:
        """What the method's state may refer to but the engine checkpoints itself."""
        return (self.model, self.optimizer, self.ctx, *self.optimizers.stepped)


def build_trial(config: dict) -> TrialParts:
    """Build the trial ``config`` describes, ready for its first epoch."""
    training, seed = config["training"], int(config["seed"])
    device = pick_device(training["device"])
    on_device = partial(placed, device=device, channels_last=training_option(training, "channels_last"))
    method = build_method(config)
    problem = build_trial_problem(config)
    tasks = method.tasks(problem)
    plan = plan_streams(method, problem, tasks)
    if plan.unserved:
        raise AuxbenchError(plan.unserved)
    train_split = plan.training_split(problem)
    data = place_splits(
        {"train": train_split, "val": problem.splits["val"], "test": problem.splits["test"],
         **plan.stream_splits(problem, train_split)},
        device, training_option(training, "data_on_device"),
    )

    seed_everything(seed)  # paired seeds (module docstring)
    pretrained = bool(config.get("pretrained")) and not config["fake_data"]  # fake data: random init
    model = on_device(build_model(config["backbone"], problem.input_shape, tasks,
                                  head_hidden=training["head_hidden"], pretrained=pretrained))
    optimizers = EngineOptimizers(model, training, method, plan)
    losses = TaskLosses(tasks, training["loss"])
    weight_log = WeightLog()
    ctx = _context(config, method, problem, plan, tasks, data, model, optimizers, losses, weight_log, device,
                   on_device, pretrained)
    method.setup(ctx)
    optimizers.start_schedule()
    stepper = Stepper(method, ctx, optimizers.stepped, plan.hook)
    parts = TrialParts(config, training, seed, device, method, problem, plan, train_split, data, model, optimizers,
                       losses, weight_log, ctx, stepper)
    collect_state(method, parts.engine_owned())  # unsavable state fails here, not at epoch 1
    return parts


def _context(config: dict, method: Method, problem: Problem, plan: StreamPlan, tasks: list, data: dict,
             model: torch.nn.Module, optimizers: EngineOptimizers, losses: TaskLosses, weight_log: WeightLog,
             device: torch.device, on_device, pretrained: bool) -> TrainContext:
    """What the method is handed (:class:`~auxbench.context.TrainContext`)."""
    training, seed = config["training"], int(config["seed"])
    batch_size, epochs = training["batch_size"], training["epochs"]
    block_of = block_map(model)
    return TrainContext(
        model=model,
        problem=problem,
        tasks=tasks,
        optimizer=optimizers.optimizer,
        build_backbone=lambda: on_device(build_backbone(config["backbone"], problem.input_shape, pretrained)),
        task_losses=losses,
        classification_loss=losses.classification_loss,
        streams=Streams(method.name, {name: data[name] for name in plan.streams}, batch_size, seed, device),
        make_optimizer=make_optimizer,
        make_scheduler=lambda optimizer, cfg: make_scheduler(optimizer, cfg, epochs),
        log_weights=weight_log,
        attach_learned=optimizers.attach_learned,
        shared_params={
            name: p for name, p in model.named_parameters()
            if p.requires_grad and not block_of[name].startswith("head:")
        },
        block_of=block_of,
        aux_input_tasks=list(plan.aux_input_tasks),
        head_hidden=training["head_hidden"],
        device=device,
        epochs=epochs,
        seed=seed,
        train_size=len(data["train"]),
        steps_per_epoch=sum(math.ceil(len(data[role]) / batch_size) for _, role in plan.passes),
    )
