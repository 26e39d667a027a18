from __future__ import annotations

import pickle

import pytest
import torch
import torchvision.datasets

from auxbench.errors import DataNotFoundError
from auxbench.problems import ProblemOptionError, build_problem, cifar
from tests.problems.helpers import assert_hierarchy, assert_same_problem, assert_splits_basic

SMALL = {"n_train": 2000, "val_size": 500, "n_test": 300}


@pytest.fixture
def no_download(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("no network in tests")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", refuse)


@pytest.fixture
def never_unpickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an unverified file was unpickled")

    monkeypatch.setattr(cifar, "_read_pickle", refuse)


# ---------------------------------------------------------------------------------------------
# Without data


@pytest.mark.parametrize("problem", ["cifar100_20", "cifar100_fine"])
@pytest.mark.parametrize("present", [(), ("train",), ("train", "test")])
def test_missing_file_is_reported(tmp_path, monkeypatch, no_download, never_unpickle, present, problem):
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name in present:
        (folder / name).write_bytes(b"junk")
    missing = next(n for n in ("train", "test", "meta") if n not in present)
    with pytest.raises(DataNotFoundError) as err:
        build_problem(problem, 0)
    msg = str(err.value)
    assert repr(missing) in msg and str(folder) in msg and "AUXBENCH_DATA" in msg


def test_tampered_file_is_refused(tmp_path, monkeypatch, no_download, never_unpickle):
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name in ("train", "test", "meta"):
        (folder / name).write_bytes(pickle.dumps({"data": [1, 2, 3]}))
    with pytest.raises(DataNotFoundError, match="corrupt"):
        build_problem("cifar100_20", 0)


def test_restricted_unpickler_refuses_other_globals():
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        cifar._read_pickle(pickle.dumps({"f": print}))


def test_fake_needs_no_files(tmp_path, monkeypatch, no_download, never_unpickle):
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    p = build_problem("cifar100_20", 0, fake=True)
    assert {k: len(v) for k, v in p.splits.items()} == {"train": 450, "meta": 50, "val": 100, "test": 100}
    assert_splits_basic(p, {"coarse": 20, "fine": 100})
    assert p.splits["train"].x.dtype == torch.uint8
    assert all(len(g) == 5 for g in p.hierarchy)
    assert_hierarchy(p, "coarse", "fine", 20, 100)
    small = build_problem("cifar100_20", 0, fake=True, n_train=50, val_size=20, n_test=10, meta_fraction=0.0)
    assert {k: len(v) for k, v in small.splits.items()} == {"train": 50, "meta": 0, "val": 20, "test": 10}
    assert_same_problem(p, build_problem("cifar100_20", 0, fake=True))


def assert_fine_is_cifar100_20_turned_round(fine, c20):
    """``cifar100_fine`` holds ``cifar100_20``'s images and labels, with the roles of the tasks swapped."""
    assert [(t.name, t.role, t.num_outputs) for t in fine.tasks] == [("fine", "primary", 100), ("coarse", "auxiliary", 20)]
    assert [t.description for t in fine.tasks] == [t.description for t in reversed(c20.tasks)]
    assert fine.hierarchy is None and fine.name == "cifar100_fine"
    assert_splits_basic(fine, {"fine": 100, "coarse": 20})
    for name, split in fine.splits.items():
        assert torch.equal(split.x, c20.splits[name].x), name
        assert all(torch.equal(split.y[task], c20.splits[name].y[task]) for task in ("coarse", "fine")), name
        assert split.augment is c20.splits[name].augment and split.preprocess is c20.splits[name].preprocess


@pytest.mark.parametrize("options", [{}, {"n_train": 50, "val_size": 20, "n_test": 10, "augment": False}])
def test_fake_fine_primary(options):
    assert_fine_is_cifar100_20_turned_round(build_problem("cifar100_fine", 2, fake=True, **options),
                                            build_problem("cifar100_20", 2, fake=True, **options))


def test_fine_options_are_checked_under_its_name():
    with pytest.raises(ProblemOptionError, match="cifar100_fine: option val_size"):
        build_problem("cifar100_fine", 0, fake=True, val_size=0)


def test_augment_deterministic_and_correct():
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    a = cifar.crop_flip(x, torch.Generator().manual_seed(1))
    b = cifar.crop_flip(x, torch.Generator().manual_seed(1))
    c = cifar.crop_flip(x, torch.Generator().manual_seed(2))
    assert a.dtype == torch.uint8 and a.shape == x.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    g = torch.Generator().manual_seed(1)
    dy, dx = torch.randint(0, 9, (16,), generator=g), torch.randint(0, 9, (16,), generator=g)
    flip = torch.rand(16, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(16):
        want = padded[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
        assert torch.equal(a[i], want.flip(-1) if flip[i] else want)


def test_preprocess():
    x = torch.tensor([0, 255], dtype=torch.uint8).reshape(1, 1, 1, 2).expand(1, 3, 1, 2)
    out = cifar.preprocess(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out[0, :, 0, 0], torch.full((3,), -2.5))
    torch.testing.assert_close(out[0, :, 0, 1], torch.full((3,), 2.5))


# ---------------------------------------------------------------------------------------------
# Real data


@pytest.mark.realdata
def test_real_full_sizes(real_data_dir):
    p = build_problem("cifar100_20", 0, meta_fraction=0.1)
    assert {k: len(v) for k, v in p.splits.items()} == {"train": 40500, "meta": 4500, "val": 5000, "test": 10000}
    assert_splits_basic(p, {"coarse": 20, "fine": 100})
    assert p.splits["train"].x.dtype == torch.uint8 and p.input_shape == (3, 32, 32)
    assert all(len(g) == 5 for g in p.hierarchy)
    assert_hierarchy(p, "coarse", "fine", 20, 100)
    assert len(p.info["fine_names"]) == 100 and len(p.info["coarse_names"]) == 20
    # val is stratified: 50 images per fine class
    assert torch.bincount(p.splits["val"].y["fine"], minlength=100).tolist() == [50] * 100
    batch = next(p.splits["train"].batches(32, torch.Generator().manual_seed(0), shuffle=True, augment=True))
    assert batch.x.dtype == torch.float32 and batch.x.shape == (32, 3, 32, 32)
    assert p.splits["val"].augment is None and p.splits["train"].augment is cifar.crop_flip
    assert build_problem("cifar100_20", 0, **SMALL, augment=False).splits["train"].augment is None


@pytest.mark.realdata
def test_real_seeds_and_disjoint(real_data_dir):
    a, b = (build_problem("cifar100_20", 7, meta_fraction=0.1, **SMALL) for _ in range(2))
    assert_same_problem(a, b)
    c = build_problem("cifar100_20", 8, meta_fraction=0.1, **SMALL)
    assert not torch.equal(a.info["source_index"]["val"], c.info["source_index"]["val"])
    assert not torch.equal(a.splits["train"].x, c.splits["train"].x)
    assert torch.equal(a.splits["test"].x, c.splits["test"].x)  # first n_test, any seed
    src = a.info["source_index"]
    rows = a.info["factory_train_rows"]
    train, meta, val = src["train"][rows["train"]], src["train"][rows["meta"]], src["val"]
    assert (len(train), len(meta), len(val), len(a.splits["test"])) == (1800, 200, 500, 300)
    allrows = torch.cat([train, meta, val])
    assert len(torch.unique(allrows)) == len(allrows)  # disjoint rows of the 50k training file
    assert_hierarchy(a, "coarse", "fine", 20, 100)


@pytest.mark.realdata
def test_real_and_fake_agree(real_data_dir):
    real = build_problem("cifar100_20", 0, **SMALL)
    fake = build_problem("cifar100_20", 0, fake=True, **SMALL)
    assert fake.tasks == real.tasks and fake.input_shape == real.input_shape
    for name in real.splits:
        assert fake.splits[name].x.shape[1:] == real.splits[name].x.shape[1:]
        assert fake.splits[name].x.dtype == real.splits[name].x.dtype
    assert sorted(len(g) for g in fake.hierarchy) == sorted(len(g) for g in real.hierarchy)


@pytest.mark.realdata
def test_real_fine_primary(real_data_dir):
    fine, c20 = build_problem("cifar100_fine", 7, **SMALL), build_problem("cifar100_20", 7, **SMALL)
    assert_fine_is_cifar100_20_turned_round(fine, c20)
    assert torch.equal(fine.info["source_index"]["val"], c20.info["source_index"]["val"])
    assert fine.info["fine_names"] == c20.info["fine_names"]
    assert torch.bincount(fine.splits["val"].y["fine"], minlength=100).tolist() == [5] * 100  # stratified
