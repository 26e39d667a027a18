from __future__ import annotations

import pytest
import torch

from auxbench.errors import AuxbenchError
from auxbench.problems import build_problem
from auxbench.problems.toy import toy_function
from tests.problems.helpers import assert_same_problem, assert_splits_basic, row_keys


def clean(problem, x, task):
    info = problem.info
    return toy_function(x, info["basis"], info["eps"][task], info["sigma"][task])


def test_shapes_and_tasks():
    p = build_problem("toy_regression", 0, meta_fraction=0.1, output_dim=3)
    assert p.input_shape == (10,)
    assert p.hierarchy is None
    assert_splits_basic(p, {"main": 3, "aux": 3})
    assert [t.metric for t in p.tasks] == ["mse", "mse"] and p.tasks[0].loss == "mse"
    assert {k: len(v) for k, v in p.splits.items()} == {"train": 900, "meta": 100, "val": 200, "test": 200}


def test_seeds():
    a, b = (build_problem("toy_regression", 3) for _ in range(2))
    assert_same_problem(a, b)
    c = build_problem("toy_regression", 4)
    assert not torch.equal(a.splits["train"].x, c.splits["train"].x)
    assert not torch.equal(a.splits["val"].x, c.splits["val"].x)
    # Same task definition across run seeds; a different task_seed changes it.
    assert torch.equal(a.info["basis"], c.info["basis"])
    d = build_problem("toy_regression", 3, task_seed=1)
    assert not torch.equal(a.info["basis"], d.info["basis"])


def test_disjoint_splits():
    p = build_problem("toy_regression", 0, meta_fraction=0.1)
    keys = {name: row_keys(s.x) for name, s in p.splits.items()}
    assert sum(len(k) for k in keys.values()) == sum(len(s) for s in p.splits.values())
    assert len(set().union(*keys.values())) == sum(len(k) for k in keys.values())


@pytest.mark.parametrize("fraction", [0.0, 0.4, 0.7])
def test_noise_only_on_main_train(fraction):
    p = build_problem("toy_regression", 1, meta_fraction=0.1, noise_fraction=fraction)
    flags = {name: p.splits[name].row_info["noisy"] for name in ("train", "meta")}
    n_noisy = sum(int(f.sum()) for f in flags.values())
    assert n_noisy == round(fraction * 1000)
    for name, noisy in flags.items():  # flags follow their rows into train and meta
        s = p.splits[name]
        assert noisy.dtype == torch.bool and noisy.shape == (len(s),)
        differs = ~torch.isclose(s.y["main"], clean(p, s.x, "main"), atol=1e-5).all(dim=1)
        assert torch.equal(differs, noisy), name
        torch.testing.assert_close(s.y["aux"], clean(p, s.x, "aux"))
    train, noisy = p.splits["train"], flags["train"]
    for name in ("val", "test"):
        s = p.splits[name]
        for task in ("main", "aux"):
            torch.testing.assert_close(s.y[task], clean(p, s.x, task))
    if fraction:
        resid = train.y["main"][noisy] - clean(p, train.x, "main")[noisy]
        assert 1.2 < resid.std().item() < 1.6  # N(0, sqrt(2))


def test_sigma_scales_targets():
    p = build_problem("toy_regression", 0, sigma_main=2.0, sigma_aux=0.5, noise_fraction=0.0)
    assert p.splits["test"].y["main"].abs().max() <= 2.0
    assert p.splits["test"].y["aux"].abs().max() <= 0.5


def test_fake_matches_real_shapes():
    real = build_problem("toy_regression", 0)
    fake = build_problem("toy_regression", 0, fake=True)
    assert fake.input_shape == real.input_shape and fake.tasks == real.tasks
    for name in real.splits:
        assert fake.splits[name].x.shape == real.splits[name].x.shape
        for task in real.splits[name].y:
            assert fake.splits[name].y[task].shape == real.splits[name].y[task].shape


def test_bad_options():
    with pytest.raises(AuxbenchError):
        build_problem("toy_regression", 0, noise_fraction=1.5)
    with pytest.raises(AuxbenchError):
        build_problem("toy_regression", 0, noise_level=0.4)


def test_noise_flags_follow_rows_into_train_and_meta_union():
    from auxbench.problems import concat_splits

    p = build_problem("toy_regression", 2, meta_fraction=0.2, noise_fraction=0.4)
    union = concat_splits(p.splits["train"], p.splits["meta"])
    assert int(union.row_info["noisy"].sum()) == 400
    batch = next(union.batches(50, torch.Generator().manual_seed(0), shuffle=True))
    differs = ~torch.isclose(batch.y["main"], clean(p, union.x[batch.index], "main"), atol=1e-5).all(dim=1)
    assert torch.equal(differs, union.row_info["noisy"][batch.index])


def test_problem_meta_split_is_clean_and_leaves_train_whole():
    """meta_source: problem serves toy_regression's own clean meta split (SLGrad §4.1)."""
    own = build_problem("toy_regression", 0, meta_source="problem", noise_fraction=0.4, n_meta=64)
    carved = build_problem("toy_regression", 0, meta_fraction=0.1, noise_fraction=0.4)
    assert len(own.splits["meta"]) == 64 and len(own.splits["train"]) == 1000
    assert not own.splits["meta"].row_info["noisy"].any()
    assert carved.splits["meta"].row_info["noisy"].any()  # carved from the noisy training rows
    clean = toy_function(own.splits["meta"].x, own.info["basis"], own.info["eps"]["main"], 1.0)
    torch.testing.assert_close(own.splits["meta"].y["main"], clean)
    # The other splits do not depend on the meta split being there.
    torch.testing.assert_close(own.splits["val"].x, carved.splits["val"].x)


def test_batches_carry_their_rows_facts():
    p = build_problem("toy_regression", 3, meta_fraction=0.1, noise_fraction=0.5)
    split = p.splits["train"]
    batch = next(split.batches(50, torch.Generator().manual_seed(0), shuffle=True))
    assert torch.equal(batch.info["noisy"], split.row_info["noisy"][batch.index])
    assert batch.info["noisy"].any() and not batch.info["noisy"].all()


# --- generator: official (the SLGrad code's data, vub-dl/SLGrad Data/Datasets.py) -------------------


def official(seed: int = 0, **options):
    return build_problem("toy_regression", seed, meta_source="problem", generator="official", **options)


def test_official_generator_splits_1000_rows_600_200_200_and_keeps_the_task_functions():
    p = official(noise_fraction=0.4)
    assert {k: len(v) for k, v in p.splits.items()} == {"train": 600, "val": 200, "test": 200, "meta": 200}
    assert p.info["generator"] == "official" and [t.name for t in p.tasks] == ["main", "aux"]
    paper = build_problem("toy_regression", 0, meta_source="problem")
    assert torch.equal(p.info["basis"], paper.info["basis"])  # the paper generator's functions, before |.|
    assert all(torch.equal(p.info["eps"][t], paper.info["eps"][t]) for t in ("main", "aux"))
    assert official(n_train=100).splits["train"].x.shape == (100, 10)


def test_official_targets_are_absolute_values_and_held_out_splits_stay_clean():
    p = official(noise_fraction=0.7)
    for name in ("val", "test", "meta"):
        s = p.splits[name]
        for task in ("main", "aux"):
            torch.testing.assert_close(s.y[task], clean(p, s.x, task).abs())
        assert (s.y["main"] >= 0).all() and (clean(p, s.x, "main") < 0).any()  # |.| changed some labels


@pytest.mark.parametrize("fraction, count", [(0.0, 0), (0.4, 240), (0.7, 420), (0.001, 1)])
def test_official_noise_replaces_labels_by_minus_half_on_each_task_separately(fraction, count):
    p = official(2, noise_fraction=fraction)
    train = p.splits["train"]
    flags = {"main": train.row_info["noisy"], "aux": train.row_info["noisy_aux"]}
    for task, noisy in flags.items():
        assert noisy.dtype == torch.bool and int(noisy.sum()) == count, task  # int(fraction · 600), at least 1
        assert (train.y[task][noisy] == -0.5).all(), task  # replaced by a constant, not shifted
        torch.testing.assert_close(train.y[task][~noisy], clean(p, train.x[~noisy], task).abs())
    if count > 1:  # drawn separately per task: some rows are noisy on one task only
        assert not torch.equal(flags["main"], flags["aux"])
    assert not p.splits["meta"].row_info["noisy"].any() and not p.splits["meta"].row_info["noisy_aux"].any()


def test_official_generator_leaves_paper_data_alone_and_rejects_unknown_generators():
    a = build_problem("toy_regression", 1, noise_fraction=0.4)
    b = build_problem("toy_regression", 1, noise_fraction=0.4, generator="paper")
    assert_same_problem(a, b)
    assert "noisy_aux" not in a.splits["train"].row_info
    with pytest.raises(AuxbenchError, match="generator"):
        build_problem("toy_regression", 0, generator="code")
