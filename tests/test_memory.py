"""Peak memory: what a CPU trial records, and that the leaderboard gives it no ratio."""
from __future__ import annotations

import pandas as pd
import torch

from auxbench.leaderboard import tables
from auxbench.memory import PeakMemory


def test_cpu_trial_records_the_labelled_process_peak():
    with PeakMemory(torch.device("cpu")) as meter:
        torch.ones(1000)
    assert meter.kind == "process_peak_rss"
    assert meter.peak_mb > 0


def test_memory_ratio_only_between_cuda_measurements():
    def trials(kind):
        return pd.DataFrame({
            "trial_id": ["a", "b"], "column": ["c", "c"], "method": ["stl", "maxl"],
            "time_per_epoch_s": [1.0, 5.0], "peak_memory_mb": [100.0, 300.0], "memory_kind": [kind, kind],
        })

    class Board:
        columns, methods, baseline = ["c"], ["stl", "maxl"], "stl"
        trials = pd.DataFrame({"trial_id": ["a", "b"], "counted": [True, True]})

    cuda = tables.cost_table(Board, trials("cuda_peak_allocated")).set_index("method")
    cpu = tables.cost_table(Board, trials("process_peak_rss")).set_index("method")
    assert cuda.loc["maxl", "peak_memory_mb_ratio"] == 3.0
    assert cpu.loc["maxl", "time_per_epoch_s_ratio"] == 5.0
    assert pd.isna(cpu.loc["maxl", "peak_memory_mb_ratio"])


# ----- the estimate before training ----------------------------------------------------------
def _config(path, **overrides):
    from tests.conftest import expanded_trials

    return expanded_trials(path)[0]["config"] | overrides


def test_the_estimate_counts_the_models_parameters_and_grows_with_the_batch(write_suite):
    from auxbench.backbones import build_model
    from auxbench.memory import estimate_trial_memory
    from auxbench.problems import build_problem
    from tests.conftest import tiny_suite

    config = _config(write_suite(tiny_suite(methods=["human_aux"], problem="digits_coarse")))
    config["training"] = config["training"] | {"optimizer": {"name": "adam", "lr": 1e-3}}
    problem = build_problem("digits_coarse", 0, fake=True, n_train=120)
    model = build_model("mlp", problem.input_shape, problem.tasks)
    small = estimate_trial_memory(config)
    assert small.parameters == small.gradients == 4 * sum(p.numel() for p in model.parameters())
    assert small.optimizer_state == 2 * small.gradients  # Adam's two moments
    config["training"] = config["training"] | {"batch_size": 4 * config["training"]["batch_size"]}
    large = estimate_trial_memory(config)
    assert large.parameters == small.parameters
    assert large.activations == 4 * small.activations > 0


def test_a_trial_the_machine_cannot_hold_is_refused_before_training(cli, write_suite, in_tmp, monkeypatch):
    from auxbench import memory
    from tests.conftest import tiny_suite

    path = write_suite(tiny_suite(methods=["stl", {"name": "maxl", "hparams": {"psi": 100}}], problem="digits_coarse"))
    assert cli("validate", path)[0] == 0
    need = {t["method"]: memory.estimate_trial_memory(t["config"]).total for t in _trials(path)}
    assert need["maxl"] > need["stl"]  # ψ = 100 sub-classes per class: a wider generated head
    between = (need["stl"] + need["maxl"]) // 2
    monkeypatch.setattr(memory, "available_memory", lambda device: (between, "available RAM (test)"))
    for command in (["validate", path], ["run", path, "--dry-run"], ["run", path]):
        code, out, err = cli(*command)
        assert code == 2, (command, out, err)
        assert "method maxl, hparams {'psi': 100}, backbone mlp, batch_size 32) needs at least" in err
        assert "activations of one batch" in err and "available RAM (test)" in err
        assert err.startswith(f"auxbench: error: {path}: trial ")  # one message, naming the file
    assert not (in_tmp / "runs" / "tiny").exists() or not any((in_tmp / "runs" / "tiny").iterdir())


def _trials(path):
    from tests.conftest import expanded_trials

    return expanded_trials(path)
