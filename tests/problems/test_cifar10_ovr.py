"""``cifar10_ovr``: one-vs-rest labels, SLGrad's label flips, clean meta/val/test, the bce metric."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision.datasets

from auxbench.errors import AuxbenchError
from auxbench.losses import metric_per_example, metric_sum
from auxbench.problems import ProblemOptionError, build_problem, cifar10_ovr
from auxbench.problems.base import metric_direction
from tests.problems.helpers import assert_splits_basic
from tests.problems.layouts import write_cifar10

SIZES = {"n_train": 40, "n_meta": 20, "val_size": 20}
TASKS = {name: 1 for name in cifar10_ovr.CLASS_NAMES}


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", None)  # never downloads
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    return write_cifar10(tmp_path, monkeypatch, per_batch=20)


def build(seed=0, **options):
    return build_problem("cifar10_ovr", seed, meta_source="problem", **{**SIZES, **options})


def test_one_vs_rest_labels_and_splits(data):
    p = build()
    assert_splits_basic(p, TASKS)
    assert p.primary.name == "airplane" and all(t.kind == "binary" and t.metric == "bce" for t in p.tasks)
    rows = p.info["source_index"]
    assert {k: len(v) for k, v in p.splits.items()} == {"train": 40, "meta": 20, "val": 20, "test": 30}
    assert len(torch.unique(torch.cat([rows["train"], rows["meta"], rows["val"]]))) == 80  # disjoint
    for name in ("train", "meta", "val"):
        classes = data["y"][rows[name]]
        assert torch.equal(p.splits[name].x, data["x"][rows[name]]), name
        for i, task in enumerate(cifar10_ovr.CLASS_NAMES):
            assert torch.equal(p.splits[name].y[task][:, 0], (classes == i).float()), (name, task)
    assert torch.equal(p.splits["test"].y["airplane"][:, 0], (data["y_test"] == 0).float())
    assert not p.splits["train"].row_info["noisy"].any()


@pytest.mark.parametrize(("flip", "rate"), [("uniform", 0.4), ("uniform", 0.7), ("background", 0.2)])
def test_flips_touch_the_main_training_labels_only(flip, rate):
    """Fake data (2000 rows): the flipped fraction is near ``rate`` (uniform: every picked label
    inverted; background: picked labels set to 1), auxiliary labels and other splits stay clean."""
    clean = build_problem("cifar10_ovr", 3, fake=True, meta_source="problem", n_train=2000)
    noisy = build_problem("cifar10_ovr", 3, fake=True, meta_source="problem", n_train=2000, label_flip=flip,
                          flip_rate=rate)
    before, after = clean.splits["train"].y["airplane"][:, 0], noisy.splits["train"].y["airplane"][:, 0]
    changed = before != after
    assert torch.equal(noisy.splits["train"].row_info["noisy"], changed)
    if flip == "uniform":
        assert abs(changed.float().mean().item() - rate) < 0.05
    else:  # only negatives can change, to 1; about rate of them do
        assert (after[changed] == 1).all() and (before[changed] == 0).all()
        assert abs(changed[before == 0].float().mean().item() - rate) < 0.05
    for task in cifar10_ovr.CLASS_NAMES[1:]:
        assert torch.equal(clean.splits["train"].y[task], noisy.splits["train"].y[task]), task
    for name in ("meta", "val", "test"):
        assert torch.equal(clean.splits[name].y["airplane"], noisy.splits[name].y["airplane"]), name


def test_flip_rate_one_and_seeds():
    y = torch.tensor([[0.0], [1.0], [0.0], [1.0]])
    g = torch.Generator().manual_seed(0)
    assert torch.equal(cifar10_ovr.flip_main_labels(y, "uniform", 1.0, g), 1 - y)
    assert torch.equal(cifar10_ovr.flip_main_labels(y, "background", 1.0, g), torch.ones_like(y))
    a, b, c = (build_problem("cifar10_ovr", s, fake=True, label_flip="uniform", flip_rate=0.4).splits["train"]
               for s in (1, 1, 2))
    assert torch.equal(a.row_info["noisy"], b.row_info["noisy"])
    assert not torch.equal(a.row_info["noisy"], c.row_info["noisy"][: len(a)])


@pytest.mark.parametrize(("options", "key"), [
    ({"label_flip": "uniform"}, "flip_rate"),
    ({"flip_rate": 0.4}, "flip_rate"),
    ({"label_flip": "uniform", "flip_rate": 1.5}, "flip_rate"),
    ({"n_train": 40_000, "n_meta": 8_000, "val_size": 5_000}, "n_train"),
])
def test_bad_options_are_named(options, key):
    with pytest.raises(ProblemOptionError) as err:
        build_problem("cifar10_ovr", 0, fake=True, **options)
    assert err.value.key == key


def test_unknown_flip_is_refused_before_building():
    with pytest.raises(AuxbenchError, match="label_flip"):
        build_problem("cifar10_ovr", 0, fake=True, label_flip="pairwise")


def test_bce_metric_is_the_per_example_bce_and_lower_is_better():
    spec = build_problem("cifar10_ovr", 0, fake=True).primary
    logits, target = torch.randn(7, 1), torch.randint(0, 2, (7, 1)).float()
    want = F.binary_cross_entropy_with_logits(logits, target, reduction="none")[:, 0]
    torch.testing.assert_close(metric_per_example(spec, logits, target), want)
    torch.testing.assert_close(metric_sum(spec, logits, target), want.sum())
    assert metric_direction("bce") is False and spec.higher_is_better is False


def test_leaderboard_ranks_bce_lower_is_better():
    from auxbench.leaderboard.tables import metric_direction as board_direction

    assert board_direction("test/airplane/bce") is False
