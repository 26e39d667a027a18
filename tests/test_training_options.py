"""Training options added after boards were published: ``eval_every``, ``test_eval``,
``precision``, ``channels_last`` and ``data_on_device`` (tests/test_data_on_device.py). At their
defaults they change neither a trial's id nor its numbers; set, they skip evaluations without
changing any value computed, and bf16 keeps MAXL's hypergradient close to fp32's."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

import auxbench.engine.trial as engine_loop
from auxbench.backbones import build_model
from auxbench.config import LATER_TRAINING_DEFAULTS
from auxbench.engine import Trial, evaluate, run_trial
from auxbench.leaderboard.tables import build_board, curve_key, curves
from auxbench.losses import metric_sum
from auxbench.problems import build_problem
from auxbench.results import METRICS_FILE, load_results, load_run_record
from auxbench.suite import expand, load_suite, trial_id
from tests.conftest import deterministic_result, expanded_trials, metric_rows, tiny_suite

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = sorted((ROOT / "leaderboards").glob("*/reproduce.json"))
_SUITE_NUMBER = itertools.count()


def _config(write_suite, method="stl", problem="digits_coarse", backbone="mlp", epochs=5, **training):
    suite = tiny_suite(methods=[method], problem=problem, backbone=backbone)
    suite["defaults"].update(epochs=epochs, **training)
    (trial,) = expanded_trials(write_suite(suite, f"suite{next(_SUITE_NUMBER)}.yaml"))
    return trial["config"]


# ----- ids ------------------------------------------------------------------------------------
@pytest.mark.parametrize("record", PUBLISHED, ids=[p.parent.name for p in PUBLISHED])
def test_published_trials_keep_their_configs_and_ids(record):
    """Every trial of a published board expands, today, to the same config and id."""
    published = json.loads(record.read_text())
    suite_file = ROOT / published["suite_file"]
    fake = {t["config"]["fake_data"] for t in published["trials"]}
    assert len(fake) == 1
    suite = load_suite(suite_file)
    trials, _ = expand(suite, suite_file, fake_data=fake.pop())
    now = {t["id"]: t["config"] for t in trials}
    by_cell = {(t["column"], t["method"], t["config"]["seed"]): t["config"] for t in trials}
    for trial in published["trials"]:
        config = now.get(trial["id"])
        if config is None and suite.tuning is not None:  # a tuned cell: its expansion with the chosen values
            base = by_cell[(trial["column"], trial["method"], trial["config"]["seed"])]
            config = {**base, "hparams": trial["config"]["hparams"]}
            assert trial_id(config) == trial["id"], f"tuned trial {trial['id']} ({trial['method']}) has a new id"
        assert config is not None, f"published trial {trial['id']} ({trial['method']}) has a new id"
        assert config == trial["config"]


def test_a_later_option_enters_the_config_and_id_only_when_set(write_suite):
    plain = _config(write_suite)
    assert not set(LATER_TRAINING_DEFAULTS) & set(plain["training"])
    explicit = _config(write_suite, **LATER_TRAINING_DEFAULTS)  # written out at their defaults
    assert explicit == plain
    ids = {json.dumps(plain, sort_keys=True)}
    for key, value in {"eval_every": 2, "test_eval": "selected", "precision": "bf16", "channels_last": True,
                       "data_on_device": "never"}.items():
        config = _config(write_suite, **{key: value})
        assert config["training"][key] == value
        ids.add(json.dumps(config, sort_keys=True))
    assert len(ids) == 6


# ----- evaluation -----------------------------------------------------------------------------
@torch.no_grad()
def _reference_evaluate(model, split, problem, batch_size):
    """The engine's evaluation before device-side sums: a host read per batch and task."""
    model.eval()
    tasks = [t for t in problem.tasks if t.name in split.y]
    sums = {t.name: 0.0 for t in tasks}
    for batch in split.batches(batch_size):
        out = model(batch.x)
        for t in tasks:
            if t.name in out:
                sums[t.name] += float(metric_sum(t, out[t.name], batch.y[t.name]))
    model.train()
    return {f"{t.name}/{t.metric}": sums[t.name] / len(split) for t in tasks if t.name in model.heads}


@pytest.mark.parametrize("problem", ["digits_coarse", "toy_regression"])
def test_device_side_sums_give_the_same_bits_as_host_sums(problem):
    p = build_problem(problem, 0, fake=True)
    torch.manual_seed(0)
    model = build_model("mlp", p.input_shape, p.tasks)
    for split in ("val", "test"):
        # 7 does not divide the split: the last batch is short
        ours = evaluate(model, p.splits[split], p, 7, "cpu")
        assert ours == _reference_evaluate(model, p.splits[split], p, 7)
        assert len(ours) == len(p.tasks)


def _trial_rows(config, trial_dir):
    result = run_trial(config, trial_dir)
    return metric_rows(trial_dir / METRICS_FILE), deterministic_result(result)


def test_sparse_evaluation_skips_epochs_and_changes_no_value(write_suite, tmp_path):
    """Evaluation draws no random number and leaves the model as it was, so every value a sparse
    run records is the one the every-epoch run records at that epoch."""
    full, full_result = _trial_rows(_config(write_suite), tmp_path / "full")
    sparse, sparse_result = _trial_rows(_config(write_suite, eval_every=2, test_eval="selected"), tmp_path / "sparse")
    val, test = "val/coarse/accuracy", "test/coarse/accuracy"
    assert [e for e, r in enumerate(sparse) if r[val] != ""] == [1, 3, 4]  # every 2nd and the last
    for a, b in zip(full, sparse, strict=True):
        assert {k: v for k, v in b.items() if v != ""}.items() <= a.items()
        assert all(a[k] == b[k] for k in a if not k.startswith(("val/", "test/")))
    assert sparse[-1][test] != ""
    best = sparse_result["best_val"]
    assert best[test] == float(full[best["epoch"]][test])  # the selected epoch has its test score
    assert sparse_result["final"] == full_result["final"]


def test_selected_tests_the_last_epoch_and_each_new_best_on_val(write_suite, tmp_path, monkeypatch):
    """Scripted val scores: ties and drops are not new bests (selection keeps the earliest best)."""
    vals = iter([0.5, 0.7, 0.6, 0.7, 0.4])
    calls = []

    def scripted(model, split, problem, batch_size, device):
        calls.append(split)
        value = next(vals) if split is problem.splits["val"] else 0.25
        return {f"{t.name}/{t.metric}": value for t in problem.tasks}

    monkeypatch.setattr(engine_loop, "evaluate", scripted)
    result = run_trial(_config(write_suite, test_eval="selected"), tmp_path / "t")
    rows = metric_rows(tmp_path / "t" / METRICS_FILE)
    assert [e for e, r in enumerate(rows) if r["test/coarse/accuracy"] != ""] == [0, 1, 4]
    assert len(calls) == 5 + 3
    assert result["best_val"]["epoch"] == 1 and result["best_val"]["test/coarse/accuracy"] == 0.25


def test_a_board_of_sparse_trials_publishes(cli, write_suite, in_tmp):
    from auxbench.leaderboard.record import from_store

    suite = tiny_suite(methods=["stl", "human_aux"], seeds=2, problem="digits_coarse")
    suite["defaults"].update(epochs=4, eval_every=2, test_eval="selected")
    code, out, err = cli("run", write_suite(suite))
    assert code == 0, err
    assert "curves_" in (in_tmp / "leaderboards" / "tiny.md").read_text()
    runs = in_tmp / "runs" / "tiny"
    df = load_results(runs)
    board = build_board(df, load_run_record(runs))
    (column,) = board.columns
    points = curves(board, from_store(runs).metrics, column, curve_key(board, df, column))
    assert 4 - 1 in set(points["epoch"])  # the last epoch, which every seed tested
    assert (points["n"] == 2).all() and points["mean"].notna().all()  # no point from fewer seeds
    code, out, err = cli("leaderboard", runs, "--selection", "best_val", "-o", in_tmp / "best.md")
    assert code == 0, err
    best = build_board(df, load_run_record(runs), selection="best_val")
    assert best.trials["counted"].all()  # each selected epoch has its test score


# ----- precision and memory format ------------------------------------------------------------
def _maxl_hypergradient(config, tmp_path) -> torch.Tensor:
    """The gradient MAXL's φ step gives its label network, on the trial's first training batch."""
    trial = Trial(config, tmp_path)
    batch = next(iter(trial.train_split.batches(config["training"]["batch_size"]))).to(trial.device)
    trial.step(batch, "phi")
    return torch.cat([p.grad.reshape(-1) for p in trial.method.label_net.parameters()])


# bf16 keeps 8 significant bits, and a hypergradient is a small quantity built from products of
# gradients, so its error is far above fp32's round-off: on this MLP 0.15 relative (L2) with cosine
# 0.99. (On convnet4 with batch norm at initialisation it is 0.5, cosine 0.86, where even its
# first-order conv gradients differ by 10-20 %.) The bounds leave room for other BLAS kernels.
BF16_HYPERGRADIENT_RELATIVE_ERROR = 0.3
BF16_HYPERGRADIENT_COSINE = 0.97


def test_maxl_hypergradient_under_bf16_stays_close_to_fp32(write_suite, tmp_path):
    """The look-ahead (virtual_step), its backward and the JVP of unrolled_surrogate under bf16 autocast."""
    fp32 = _config(write_suite, "maxl", epochs=1, batch_size=64)
    bf16 = _config(write_suite, "maxl", epochs=1, batch_size=64, precision="bf16")
    exact = _maxl_hypergradient(fp32, tmp_path / "fp32")
    assert exact.norm() > 1e-6  # not trivially zero
    again = _maxl_hypergradient(fp32, tmp_path / "fp32-again")
    assert torch.equal(exact, again)  # fp32 is deterministic, so any difference below is bf16's
    approx = _maxl_hypergradient(bf16, tmp_path / "bf16")
    assert not torch.equal(approx, exact)  # autocast did engage
    error = (approx - exact).norm() / exact.norm()
    assert error < BF16_HYPERGRADIENT_RELATIVE_ERROR, f"relative error {error:.3g}"
    assert torch.cosine_similarity(approx, exact, dim=0) > BF16_HYPERGRADIENT_COSINE


def test_a_bf16_channels_last_trial_runs(write_suite, tmp_path):
    config = _config(write_suite, "stl", backbone="convnet4", epochs=2, precision="bf16", channels_last=True)
    trial = Trial(config, tmp_path)
    convs = [p for p in trial.model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    result = trial.run()
    assert result["status"] == "done"
    assert all(p.dtype == torch.float32 for p in trial.model.parameters())  # autocast casts, never stores
