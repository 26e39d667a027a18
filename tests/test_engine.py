"""The engine: determinism, exact resume, divergence, selection by val, atomic checkpoints."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch

from auxbench.engine import Trial, run_trial, summarise
from auxbench.method import Method
from auxbench.method_state import collect_state
from auxbench.problems import build_problem
from auxbench.results import CHECKPOINT_FILE, METRICS_FILE, RESULT_FILE, TIMES_FILE, atomic_write_bytes
from tests.conftest import deterministic_result, expanded_trials, metric_rows, tiny_suite


class NaNMethod(Method):
    """Returns a NaN loss from the second step on (referenced as ``tests.test_engine:NaNMethod``)."""

    name = "nan_test"

    def setup(self, ctx):
        super().setup(ctx)
        self.steps = 0

    def combine(self, losses):
        self.steps += 1
        loss = losses[self.ctx.problem.primary.name].mean()
        return loss * float("nan") if self.steps > 1 else loss


class Killed(Exception):
    """Stands in for SIGKILL: raised by the report callback after some epoch."""


def kill_after(epoch_to_die: int):
    def report(info: dict) -> None:
        if info["epoch"] == epoch_to_die:
            raise Killed
    return report


def _config(write_suite, method="stl", problem="toy_regression", epochs=3, **training):
    suite = tiny_suite(methods=[method], problem=problem)
    suite["defaults"].update(epochs=epochs, **training)
    (trial,) = expanded_trials(write_suite(suite, f"{method.replace(':', '_')}.yaml"))
    return trial["config"]


def _state_equal(a: dict, b: dict) -> bool:
    """Nested state dicts (tensors, numbers, lists) equal bitwise."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_state_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_state_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def _full_run(config, trial_dir) -> Trial:
    trial_dir.mkdir(parents=True)
    trial = Trial(config, trial_dir)
    trial.run()
    return trial


def test_same_seed_same_config_is_bitwise_identical(write_suite, tmp_path):
    config = _config(write_suite, "human_aux", epochs=2)
    a, b = _full_run(config, tmp_path / "a"), _full_run(config, tmp_path / "b")
    rows_a, rows_b = metric_rows(a.dir / METRICS_FILE), metric_rows(b.dir / METRICS_FILE)
    assert len(rows_a) == 2 and rows_a == rows_b
    # wall-clock times are kept out of metrics.csv (in times.csv), so equal trials give equal bytes
    assert (a.dir / METRICS_FILE).read_bytes() == (b.dir / METRICS_FILE).read_bytes()
    assert (a.dir / TIMES_FILE).read_text().splitlines()[0] == "epoch,time/epoch_s"
    assert _state_equal(a.model.state_dict(), b.model.state_dict())
    assert _state_equal(a.optimizer.state_dict(), b.optimizer.state_dict())
    ra = json.loads((a.dir / RESULT_FILE).read_text())
    rb = json.loads((b.dir / RESULT_FILE).read_text())
    assert deterministic_result(ra) == deterministic_result(rb)
    # ... and a different seed gives a different model
    other = dict(config, seed=1)
    c = _full_run(other, tmp_path / "c")
    assert not _state_equal(a.model.state_dict(), c.model.state_dict())


@pytest.mark.parametrize("method, problem", [("stl", "toy_regression"), ("maxl", "digits_coarse")])
def test_resume_after_kill_equals_uninterrupted_run(write_suite, tmp_path, method, problem, monkeypatch):
    config = _config(write_suite, method, problem, epochs=3)
    reference = _full_run(config, tmp_path / "uninterrupted")

    killed = tmp_path / "killed"
    with pytest.raises(Killed):
        run_trial(config, killed, report=kill_after(0))
    assert not (killed / RESULT_FILE).exists()
    assert (killed / CHECKPOINT_FILE).exists()
    assert len(metric_rows(killed / METRICS_FILE)) == 1
    assert not [f for f in os.listdir(killed) if f.endswith(".tmp")]
    # a second kill, later, on the resumed run
    with pytest.raises(Killed):
        run_trial(config, killed, report=kill_after(1))
    assert len(metric_rows(killed / METRICS_FILE)) == 2

    # Scramble the global RNG as a fresh process would have it: resume must restore it.
    torch.manual_seed(12345)
    loads = []
    real_load = torch.load

    def spy_load(*args, **kwargs):
        loads.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy_load)
    resumed = Trial(config, killed)
    resumed.run()
    assert loads == [True]  # the checkpoint was read, with weights_only

    assert metric_rows(killed / METRICS_FILE) == metric_rows(reference.dir / METRICS_FILE)
    assert len(metric_rows(killed / METRICS_FILE)) == 3
    got = json.loads((killed / RESULT_FILE).read_text())
    want = json.loads((reference.dir / RESULT_FILE).read_text())
    assert got["status"] == "done"
    assert deterministic_result(got) == deterministic_result(want)
    assert _state_equal(resumed.model.state_dict(), reference.model.state_dict())
    assert _state_equal(resumed.optimizer.state_dict(), reference.optimizer.state_dict())
    method_state = collect_state(resumed.method, resumed._engine_owned())
    assert _state_equal(method_state, collect_state(reference.method, reference._engine_owned()))
    if method == "maxl":
        assert set(method_state["attributes"]) >= {"label_net", "_entropy_sum"}
        assert set(method_state["learned"]["label_net"]) == {"params", "optimizer", "scheduler"}
        assert "diag/label_entropy" in metric_rows(killed / METRICS_FILE)[-1]
    assert not (killed / CHECKPOINT_FILE).exists()  # removed once finished


def test_finished_trial_is_returned_not_rerun(write_suite, tmp_path, monkeypatch):
    config = _config(write_suite, epochs=1)
    first = run_trial(config, tmp_path / "t")
    before = (tmp_path / "t" / RESULT_FILE).read_bytes()

    def boom(self, report=None):
        raise AssertionError("a finished trial was recomputed")

    monkeypatch.setattr(Trial, "run", boom)
    assert run_trial(config, tmp_path / "t") == first
    assert (tmp_path / "t" / RESULT_FILE).read_bytes() == before


def test_a_folder_with_another_config_is_refused(write_suite, tmp_path):
    config = _config(write_suite, epochs=1)
    with pytest.raises(Killed):
        run_trial(config, tmp_path / "t", report=kill_after(0))
    with pytest.raises(RuntimeError, match="different config"):
        run_trial(dict(config, seed=7), tmp_path / "t")


def test_checkpoint_is_atomic_and_weights_only(write_suite, tmp_path):
    config = _config(write_suite, "maxl", "digits_coarse", epochs=2)
    with pytest.raises(Killed):
        run_trial(config, tmp_path / "t", report=kill_after(0))
    path = tmp_path / "t" / CHECKPOINT_FILE
    assert not [f for f in os.listdir(tmp_path / "t") if f.endswith(".tmp")]
    state = torch.load(path, weights_only=True)  # no pickled code in a checkpoint
    assert state["epoch"] == 0
    assert {"model", "optimizer", "scheduler", "method", "rng", "rows"} <= set(state)
    assert {"torch_cpu", "python", "numpy"} <= set(state["rng"])
    assert set(state["method"]["learned"]) == {"label_net"}


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "x.bin"
    atomic_write_bytes(target, b"old")

    def fail(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new-and-longer")
    assert target.read_bytes() == b"old"


def test_nan_loss_marks_trial_diverged(write_suite, tmp_path):
    config = _config(write_suite, "tests.test_engine:NaNMethod", epochs=3)
    result = run_trial(config, tmp_path / "t")
    assert result["status"] == "diverged"
    assert result["diverged_at_epoch"] == 0
    assert result["final"] is None and result["best_val"] is None
    assert json.loads((tmp_path / "t" / RESULT_FILE).read_text())["status"] == "diverged"
    assert not (tmp_path / "t" / CHECKPOINT_FILE).exists()


def test_exploding_learning_rate_diverges(write_suite, tmp_path):
    config = _config(write_suite, "stl", epochs=3, optimizer={"name": "sgd", "lr": 1e6})
    result = run_trial(config, tmp_path / "t")
    assert result["status"] == "diverged", result
    assert result["epochs_completed"] == result["diverged_at_epoch"]


def _rows(vals, tests, key):
    return [
        {"epoch": e, "time/epoch_s": 1.0, f"val/{key}": v, f"test/{key}": t}
        for e, (v, t) in enumerate(zip(vals, tests, strict=True))
    ]


def test_best_val_selection_never_looks_at_test():
    # accuracy: higher is better
    digits = build_problem("digits_coarse", 0, fake=True, n_train=50)
    key = "coarse/accuracy"
    rows = _rows([0.5, 0.9, 0.7, 0.9], [0.99, 0.1, 0.98, 0.97], key)
    result = summarise(rows, digits, "done", None)
    assert result["best_val"]["epoch"] == 1  # best val, earliest on ties; test would pick 0
    assert result["final"]["epoch"] == 3
    assert result["higher_is_better"] is True
    # mse: lower is better
    toy = build_problem("toy_regression", 0, fake=True, n_train=20, n_val=5, n_test=5)
    key = "main/mse"
    rows = _rows([3.0, 1.0, 2.0], [0.1, 5.0, 0.2], key)
    result = summarise(rows, toy, "done", None)
    assert result["best_val"]["epoch"] == 1
    assert result["higher_is_better"] is False


def test_best_val_from_a_real_run_is_the_val_argmax(write_suite, tmp_path):
    config = _config(write_suite, "stl", "digits_coarse", epochs=3)
    result = run_trial(config, tmp_path / "t")
    rows = metric_rows(tmp_path / "t" / METRICS_FILE)
    vals = [float(r["val/coarse/accuracy"]) for r in rows]
    assert result["best_val"]["epoch"] == vals.index(max(vals))
    assert result["final"]["epoch"] == 2
    assert {"test/coarse/accuracy", "val/coarse/accuracy", "train/loss", "lr"} <= set(rows[0])


@pytest.mark.realdata
@pytest.mark.parametrize("method", ["stl", "maxl"])
def test_trial_on_real_cifar100_20(real_data_dir, tmp_path, method):
    """One short trial end to end on the real CIFAR-100 files: the real loader, augmentation and
    evaluation path, not only fake data."""
    from tests.methods.helpers import trial_config

    config = trial_config(method, problem="cifar100_20", backbone="lenet5", epochs=1, batch_size=50)
    config["fake_data"] = False
    config["problem_options"] = {"n_train": 300, "val_size": 100, "n_test": 200}
    result = run_trial(config, tmp_path)
    assert result["status"] == "done"
    rows = (tmp_path / METRICS_FILE).read_text().splitlines()
    assert len(rows) == 2 and "test/coarse/accuracy" in rows[0].split(",")
    assert 0.0 <= result["final"]["test/coarse/accuracy"] <= 1.0


class AuxInputProbe(Method):
    """Records the auxiliary-input batches the engine hands it."""

    name = "aux_input_probe"
    streams = ("aux",)

    def setup(self, ctx):
        super().setup(ctx)
        self.seen = []

    def combine(self, losses):
        self.seen.append(self.ctx.next_batch("aux").index.clone())
        return losses[self.ctx.problem.primary.name].mean()


@pytest.fixture
def digits_with_aux_input(monkeypatch):
    """``digits_aux_input``: digits_coarse whose validation images double as an auxiliary input split."""
    from auxbench.problems import PROBLEMS

    digits = PROBLEMS["digits_coarse"]

    def factory(seed, fake, data_dir):
        problem = digits(seed=seed, fake=fake, data_dir=data_dir)
        problem.aux_input = problem.splits["val"]
        return problem

    monkeypatch.setitem(PROBLEMS, "digits_aux_input", factory)
    return "digits_aux_input"


def test_auxiliary_input_stream_is_served_and_seeded(tmp_path, digits_with_aux_input):
    """A problem with a separate auxiliary input split gets an endless, seeded batch stream."""
    from tests.methods.helpers import build_trial

    def seen_in_epoch(folder):
        trial = build_trial(folder, "tests.test_engine:AuxInputProbe", problem=digits_with_aux_input)
        trial._train_epoch(0)
        return trial.method.seen

    first, second = seen_in_epoch(tmp_path / "a"), seen_in_epoch(tmp_path / "b")
    assert len(first) > 1 and all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.equal(first[0], torch.arange(len(first[0])))  # shuffled, not in file order


class UsesHostRandomness(Method):
    """Scales its loss with Python's and numpy's global generators, as a careless method might."""

    name = "host_randomness"

    def combine(self, losses):
        import random

        import numpy as np

        scale = 1.0 + 0.1 * float(np.random.rand()) + 0.1 * random.random()
        return losses[self.ctx.problem.primary.name].mean() * scale


def test_python_and_numpy_generators_are_seeded_and_resumed(tmp_path):
    """A kill after epoch 1 resumes bitwise although the method draws from random and numpy.random."""
    from tests.methods import conformance

    conformance.check_resume_is_bitwise("tests.test_engine:UsesHostRandomness", tmp_path / "a")
    first = run_trial(conformance.small_config("tests.test_engine:UsesHostRandomness"), tmp_path / "b")
    second = run_trial(conformance.small_config("tests.test_engine:UsesHostRandomness"), tmp_path / "c")
    # seeded per trial, not by whatever ran before in the process
    assert deterministic_result(first)["final"] == deterministic_result(second)["final"]
