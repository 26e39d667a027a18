from __future__ import annotations

import torch

from auxbench.problems import build_problem
from auxbench.problems.sampling import stratified_pick
from tests.problems.helpers import assert_hierarchy, assert_same_problem, assert_splits_basic


def source(p, name):
    return p.info["source_index"][name]


def test_shapes_and_tasks():
    p = build_problem("digits_coarse", 0, meta_fraction=0.1)
    assert p.input_shape == (1, 8, 8)
    assert_splits_basic(p, {"coarse": 5, "digit": 10})
    assert sum(len(s) for s in p.splits.values()) == 1797
    x = torch.cat([s.x for s in p.splits.values()])
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() == 1.0
    assert len(p.splits["test"]) == round(0.25 * 1797)
    assert len(p.splits["val"]) == round(0.15 * 1797)


def test_hierarchy():
    p = build_problem("digits_coarse", 0)
    assert p.hierarchy == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert_hierarchy(p, "coarse", "digit", 5, 10)


def test_seeds_and_fixed_test_set():
    a, b = (build_problem("digits_coarse", 5) for _ in range(2))
    assert_same_problem(a, b)
    c = build_problem("digits_coarse", 6)
    assert torch.equal(source(a, "test"), source(c, "test"))  # same test set for every seed
    assert torch.equal(a.splits["test"].x, c.splits["test"].x)
    assert not torch.equal(source(a, "val"), source(c, "val"))
    assert not torch.equal(a.splits["train"].x, c.splits["train"].x)


def test_disjoint_and_complete():
    p = build_problem("digits_coarse", 0, meta_fraction=0.1)
    idx = torch.cat([source(p, n) for n in ("train", "val", "test")])
    assert torch.equal(torch.sort(idx).values, torch.arange(1797))
    rows = p.info["factory_train_rows"]  # meta is carved out of the factory's train split
    train, meta = source(p, "train")[rows["train"]], source(p, "train")[rows["meta"]]
    assert (len(train), len(meta)) == (len(p.splits["train"]), len(p.splits["meta"]))
    assert len(meta) == round(0.1 * len(source(p, "train")))
    allrows = torch.cat([train, meta, source(p, "val"), source(p, "test")])
    assert torch.equal(torch.sort(allrows).values, torch.arange(1797))
    x_all = torch.cat([p.splits[n].x for n in ("train", "meta", "val", "test")])
    y_all = torch.cat([p.splits[n].y["digit"] for n in ("train", "meta", "val", "test")])
    from auxbench.problems.digits import _load_digits

    x_ref, y_ref = _load_digits()
    assert torch.equal(x_all, x_ref[allrows]) and torch.equal(y_all, y_ref[allrows])


def test_n_train_cap_is_stratified():
    p = build_problem("digits_coarse", 0, meta_fraction=0.0, n_train=100)
    assert len(p.splits["train"]) == 100
    counts = torch.bincount(p.splits["train"].y["digit"], minlength=10)
    assert counts.min() >= 9 and counts.max() <= 11


def test_stratified_pick():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    idx = stratified_pick(labels, 10, torch.Generator().manual_seed(0))
    assert torch.bincount(labels[idx]).tolist() == [5, 3, 2]
    assert len(set(idx.tolist())) == 10


def test_fake_matches_real():
    real = build_problem("digits_coarse", 0)
    fake = build_problem("digits_coarse", 0, fake=True)
    assert fake.tasks == real.tasks and fake.hierarchy == real.hierarchy
    assert fake.input_shape == real.input_shape
    for name in real.splits:
        assert fake.splits[name].x.shape == real.splits[name].x.shape
    assert_hierarchy(fake, "coarse", "digit", 5, 10)
