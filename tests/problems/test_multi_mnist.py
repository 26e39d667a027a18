"""``multi_mnist``: two MNIST digits in one 36x36 image, the left one primary (SLGrad Table 3)."""
from __future__ import annotations

import os

import pytest
import torch
import torchvision.datasets

from auxbench.errors import DataNotFoundError
from auxbench.problems import (
    ProblemOptionError,
    build_problem,
    check_problem_data,
    data_dir,
    mnist,
    multi_mnist,
)
from tests.problems.helpers import assert_same_problem, assert_splits_basic, row_keys

SMALL = {"n_train": 400, "val_size": 100, "n_test": 100}


@pytest.fixture
def no_download(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("no network in tests")

    monkeypatch.setattr(torchvision.datasets, "MNIST", refuse)


@pytest.fixture(scope="session")
def real_mnist():
    """``$AUXBENCH_DATA`` with the four MNIST files; else fail in CI, skip elsewhere."""
    root = data_dir()
    missing = [name for name in mnist.MD5 if not (root / mnist.FOLDER / name).is_file()]
    if not missing:
        return root
    msg = f"real data not found: {root / mnist.FOLDER / missing[0]} (set AUXBENCH_DATA)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def assert_built_from_sources(split, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Every row is its two source digits, boxes where ``row_info`` says, overlapping pixels the
    maximum, nothing outside the boxes; its labels are the sources' digits, of two classes."""
    info = split.row_info
    left, right = info["left_row"], info["right_row"]
    assert torch.equal(split.y["left"], labels[left]) and torch.equal(split.y["right"], labels[right])
    assert (labels[left] != labels[right]).all()  # partners of another class (Sabour et al.)
    assert ((info["left_at"] >= 0) & (info["left_at"] <= 4)).all()
    assert ((info["right_at"] >= 4) & (info["right_at"] <= 8)).all()
    for i in range(len(split)):
        expected = torch.zeros(2, 36, 36, dtype=torch.uint8)
        (r, c), (r2, c2) = info["left_at"][i].tolist(), info["right_at"][i].tolist()
        expected[0, r : r + 28, c : c + 28] = images[left[i]]
        expected[1, r2 : r2 + 28, c2 : c2 + 28] = images[right[i]]
        assert torch.equal(split.x[i, 0], expected.amax(dim=0)), i


# ---------------------------------------------------------------------------------------------
# Without data


def test_fake_tasks_shapes_and_construction():
    p = build_problem("multi_mnist", 0, fake=True, **SMALL)
    assert_splits_basic(p, {"left": 10, "right": 10})
    assert [(t.name, t.role, t.kind) for t in p.tasks] == [("left", "primary", "classification"),
                                                          ("right", "auxiliary", "classification")]
    assert p.input_shape == (1, 36, 36) and p.hierarchy is None
    factory = multi_mnist.make_multi_mnist(0, True, data_dir(), **SMALL)
    assert {k: len(v) for k, v in factory.splits.items()} == {"train": 400, "val": 100, "test": 100}
    sources = multi_mnist._sources(True, data_dir(), 0)
    for name, split in factory.splits.items():
        assert split.x.dtype == torch.uint8 and split.augment is None
        assert_built_from_sources(split, *sources["test" if name == "test" else "train"])
    batch = next(p.splits["val"].batches(8))
    torch.testing.assert_close(batch.x, (p.splits["val"].x[:8].float() / 255 - 0.1307) / 0.3081)
    # the shifts are drawn, not fixed: every corner value occurs
    info = factory.splits["train"].row_info
    for corners in (info["left_at"][:, 0], info["left_at"][:, 1], info["right_at"][:, 0] - 4, info["right_at"][:, 1] - 4):
        assert set(corners.tolist()) == {0, 1, 2, 3, 4}


def test_fake_sizes_are_capped_and_the_splits_do_not_share_source_images():
    p = multi_mnist.make_multi_mnist(3, True, data_dir())  # the default sizes, capped for fake data
    assert {k: len(v) for k, v in p.splits.items()} == multi_mnist.FAKE_SIZES
    train, val = (p.splits[k].row_info for k in ("train", "val"))
    train_rows = set(train["left_row"].tolist()) | set(train["right_row"].tolist())
    val_rows = set(val["left_row"].tolist()) | set(val["right_row"].tolist())
    assert not train_rows & val_rows
    assert len(set(train["left_row"].tolist())) == len(train["left_row"])  # each image is left once


def test_seeding():
    a, b, c = (build_problem("multi_mnist", s, fake=True, **SMALL) for s in (1, 1, 2))
    assert_same_problem(a, b)
    for key in ("left_row", "right_row", "left_at", "right_at"):
        assert torch.equal(a.splits["train"].row_info[key], b.splits["train"].row_info[key])
    assert not torch.equal(a.splits["train"].x, c.splits["train"].x)
    rows = [multi_mnist.make_multi_mnist(s, True, data_dir(), **SMALL).splits["train"].row_info["left_row"] for s in (1, 2)]
    assert not torch.equal(*rows)  # which images are drawn follows the seed


def test_partners_are_of_another_class_and_uniform():
    labels = torch.arange(10).repeat(300)
    partners = multi_mnist.draw_partners(labels, torch.Generator().manual_seed(0))
    assert (labels[partners] != labels).all()
    counts = torch.bincount(labels[partners[labels == 3]], minlength=10)
    assert counts[3] == 0 and counts.sum() == 300 and counts[counts > 0].min() > 10  # all nine others
    with pytest.raises(ValueError, match="every image of the pool is a 7"):
        multi_mnist.draw_partners(torch.full((5,), 7), torch.Generator().manual_seed(0))


@pytest.mark.parametrize("options, key", [
    ({"n_train": 0}, "n_train"),
    ({"n_train": 59_000, "val_size": 2_000}, "val_size"),
    ({"n_test": 10_001}, "n_test"),
])
def test_bad_sizes_are_named(options, key):
    with pytest.raises(ProblemOptionError) as err:
        build_problem("multi_mnist", 0, fake=True, **options)
    assert err.value.key == key


def test_missing_test_file_is_reported(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    folder = tmp_path / mnist.FOLDER
    folder.mkdir(parents=True)
    for name in (*mnist.FILES["train"], mnist.FILES["test"][0]):
        (folder / name).write_bytes(b"junk")  # the hook checks presence only
    with pytest.raises(DataNotFoundError) as err:
        check_problem_data("multi_mnist", {})
    msg = str(err.value)
    assert repr(mnist.FILES["test"][1]) in msg and str(folder) in msg and "AUXBENCH_DATA" in msg


def test_corrupt_test_file_is_caught_by_its_md5(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    folder = tmp_path / mnist.FOLDER
    folder.mkdir(parents=True)
    for name in mnist.FILES["test"]:
        (folder / name).write_bytes(b"junk")
    with pytest.raises(DataNotFoundError, match="corrupt"):
        mnist.read_mnist(str(tmp_path.resolve()), "test")


# ---------------------------------------------------------------------------------------------
# Real data


@pytest.mark.realdata
def test_real_problem_is_built_from_the_mnist_rows(real_mnist):
    """Each image and label is the MNIST rows ``row_info`` names (checked against torchvision's
    reader); train and val come from the training file, test from the test file."""
    p = build_problem("multi_mnist", 4, **SMALL)
    assert_splits_basic(p, {"left": 10, "right": 10})
    factory = multi_mnist.make_multi_mnist(4, False, real_mnist, **SMALL)
    for name, file_split in (("train", True), ("val", True), ("test", False)):
        reference = torchvision.datasets.MNIST(str(real_mnist), train=file_split, download=False)
        split = factory.splits[name]
        assert len(split) == SMALL["n_train" if name == "train" else "val_size" if name == "val" else "n_test"]
        assert_built_from_sources(split, reference.data, reference.targets)
    assert torch.equal(factory.splits["test"].row_info["left_row"], torch.arange(SMALL["n_test"]))
    train_rows = set(factory.splits["train"].row_info["left_row"].tolist())
    assert not train_rows & set(factory.splits["val"].row_info["left_row"].tolist())


@pytest.mark.realdata
def test_real_splits_follow_the_seed_and_test_does_not(real_mnist):
    a, b, c = (multi_mnist.make_multi_mnist(s, False, real_mnist, **SMALL) for s in (4, 4, 5))
    assert_same_problem(a, b)
    assert row_keys(a.splits["train"].x) != row_keys(c.splits["train"].x)
    assert torch.equal(a.splits["test"].x, c.splits["test"].x)  # the same test set for every seed
    full = multi_mnist.make_multi_mnist(0, False, real_mnist)
    assert {k: len(v) for k, v in full.splits.items()} == {"train": 15_000, "val": 5_000, "test": 5_000}
