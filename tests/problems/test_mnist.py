"""``cifar100_20_mnist``: CIFAR-100 superclasses as primary task, MNIST digits as auxiliary inputs."""
from __future__ import annotations

import hashlib
import os

import pytest
import torch
import torchvision.datasets

from auxbench.engine import evaluate
from auxbench.errors import DataNotFoundError
from auxbench.problems import build_problem, check_problem_data, data_dir, mnist
from tests.problems.helpers import assert_same_problem, assert_splits_basic, aux_stream_trial

SMALL = {"n_train": 600, "val_size": 200, "n_test": 200}


@pytest.fixture
def no_download(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("no network in tests")

    monkeypatch.setattr(torchvision.datasets, "MNIST", refuse)
    monkeypatch.setattr(torchvision.datasets, "CIFAR100", refuse)


@pytest.fixture(scope="session")
def real_mnist(real_data_dir):
    """Real CIFAR-100 and MNIST under ``$AUXBENCH_DATA``; else fail in CI, skip elsewhere (as ``real_data_dir``)."""
    path = real_data_dir / mnist.FOLDER / mnist.IMAGES
    if path.is_file():
        return real_data_dir
    msg = f"real data not found: {path} (set AUXBENCH_DATA)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def idx_bytes(values: torch.Tensor) -> bytes:
    """``values`` (uint8) as an IDX file: zero, zero, type 0x08, number of dimensions, sizes, data."""
    header = bytes([0, 0, 8, values.dim()]) + b"".join(n.to_bytes(4, "big") for n in values.shape)
    return header + values.numpy().tobytes()


# ---------------------------------------------------------------------------------------------
# Without data


def test_read_idx_round_trip():
    values = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mnist.read_idx(idx_bytes(values)), values)


def test_truncated_mnist_is_refused_by_md5(tmp_path, monkeypatch, no_download):
    """A truncated IDX file is named corrupt before it is parsed (the md5 of the whole file)."""
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    folder = tmp_path / mnist.FOLDER
    folder.mkdir(parents=True)
    images = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    for name, data in ((mnist.IMAGES, idx_bytes(images)), (mnist.LABELS, idx_bytes(torch.arange(4, dtype=torch.uint8)))):
        (folder / name).write_bytes(data)
        monkeypatch.setitem(mnist.MD5, name, hashlib.md5(data).hexdigest())
    x, digit = mnist._load(str(tmp_path.resolve()))
    assert torch.equal(x[:, 0, 2:30, 2:30], images) and digit.tolist() == [0, 1, 2, 3]
    (folder / mnist.IMAGES).write_bytes(idx_bytes(images)[:-5])
    mnist._load.cache_clear()
    mnist.read_mnist.cache_clear()
    with pytest.raises(DataNotFoundError, match="MNIST file .* is corrupt or truncated"):
        mnist._load(str(tmp_path.resolve()))


def test_missing_mnist_is_reported(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    cifar_folder = tmp_path / "cifar-100-python"
    cifar_folder.mkdir()
    for name in ("train", "test", "meta"):
        (cifar_folder / name).write_bytes(b"junk")  # the hook checks presence only
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    (tmp_path / "MNIST" / "raw" / mnist.IMAGES).write_bytes(b"junk")
    with pytest.raises(DataNotFoundError) as err:
        check_problem_data("cifar100_20_mnist", {})
    msg = str(err.value)
    assert repr(mnist.LABELS) in msg and str(tmp_path / "MNIST" / "raw") in msg and "AUXBENCH_DATA" in msg


def test_missing_cifar_is_reported(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    with pytest.raises(DataNotFoundError, match="CIFAR-100 file 'train'"):
        check_problem_data("cifar100_20_mnist", {})


def test_fake_tasks_labels_and_shapes(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    p = build_problem("cifar100_20_mnist", 0, fake=True, **SMALL)
    assert_splits_basic(p, {"coarse": 20})  # primary rows carry the primary label only
    assert [(t.name, t.role, t.num_outputs) for t in p.tasks] == [("coarse", "primary", 20), ("digit", "auxiliary", 10)]
    assert p.aux_input_tasks == [p.tasks[1]] and p.hierarchy is None
    aux = p.aux_input
    assert set(aux.y) == {"digit"} and len(aux) == mnist.FAKE_AUX and aux.augment is None
    assert aux.x.dtype == torch.uint8 and aux.x.shape[1:] == (1, 32, 32)
    assert int(aux.y["digit"].min()) == 0 and int(aux.y["digit"].max()) == 9
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert not aux.x[:, :, border].any()  # 28x28 digits in a zero border of 2 pixels
    batch = next(aux.batches(16, torch.Generator().manual_seed(0), shuffle=True, augment=True))
    assert batch.x.shape == (16, 3, 32, 32) and batch.x.dtype == torch.float32
    assert torch.equal(batch.x[:, 0], batch.x[:, 2])  # the grey channel repeated
    torch.testing.assert_close(batch.x, (aux.x[batch.index].float().expand(-1, 3, -1, -1) / 255 - 0.5) / 0.2)
    # the primary splits are cifar100_20's images and superclasses
    c20 = build_problem("cifar100_20", 0, fake=True, **SMALL)
    for name, split in p.splits.items():
        assert torch.equal(split.x, c20.splits[name].x) and torch.equal(split.y["coarse"], c20.splits[name].y["coarse"])
    assert len(build_problem("cifar100_20_mnist", 0, fake=True, n_aux=40).aux_input) == 40


def test_fake_is_seeded():
    a, b, c = (build_problem("cifar100_20_mnist", s, fake=True, **SMALL) for s in (1, 1, 2))
    assert_same_problem(a, b)
    assert torch.equal(a.aux_input.x, b.aux_input.x) and torch.equal(a.aux_input.y["digit"], b.aux_input.y["digit"])
    assert not torch.equal(a.aux_input.x, c.aux_input.x)


def test_engine_serves_digit_batches(tmp_path):
    """A method reading the ``aux`` stream gets MNIST batches in model-input form; the training
    batches carry the primary label only, and val/test score the primary task only."""
    trial = aux_stream_trial(tmp_path, "cifar100_20_mnist", {"n_train": 100, "val_size": 50, "n_test": 50, "n_aux": 100})
    assert "digit" in trial.model.heads
    batch = trial.method.seen[0]
    assert set(batch.y) == {"digit"} and batch.x.shape == (50, 3, 32, 32) and batch.x.dtype == torch.float32
    assert torch.equal(batch.x, mnist.preprocess(trial.problem.aux_input.x[batch.index]))
    assert set(trial.train_split.y) == {"coarse"}
    assert set(evaluate(trial.model, trial.problem.splits["val"], trial.problem, 50, "cpu")) == {"coarse/accuracy"}


# ---------------------------------------------------------------------------------------------
# Real data


@pytest.mark.realdata
def test_real_mnist_matches_torchvision(real_mnist):
    """The IDX reader agrees with torchvision's MNIST reader on every image and label."""
    x, digit = mnist._load(str(data_dir().resolve()))
    reference = torchvision.datasets.MNIST(str(real_mnist), train=True, download=False)
    assert x.shape == (60_000, 1, 32, 32) and x.dtype == torch.uint8
    assert torch.equal(x[:, 0, 2:30, 2:30], reference.data) and torch.equal(digit, reference.targets)
    assert not x[:, :, :2].any() and not x[:, :, :, 30:].any()


@pytest.mark.realdata
def test_real_problem(real_mnist):
    p = build_problem("cifar100_20_mnist", 5, n_aux=1000, **SMALL)
    assert_splits_basic(p, {"coarse": 20})
    c20 = build_problem("cifar100_20", 5, **SMALL)
    for name, split in p.splits.items():
        assert torch.equal(split.x, c20.splits[name].x) and torch.equal(split.y["coarse"], c20.splits[name].y["coarse"])
    aux = p.aux_input
    rows = aux.row_info["source_row"]
    x_all, digit_all = mnist._load(str(data_dir().resolve()))
    assert len(aux) == 1000 and len(torch.unique(rows)) == 1000
    assert torch.equal(aux.x, x_all[rows]) and torch.equal(aux.y["digit"], digit_all[rows])
    counts = torch.bincount(aux.y["digit"], minlength=10)
    expected = torch.bincount(digit_all, minlength=10).double() * 1000 / len(digit_all)
    assert ((counts - expected).abs() < 1).all()  # stratified by digit
    again, other = (build_problem("cifar100_20_mnist", s, n_aux=1000, **SMALL) for s in (5, 6))
    assert torch.equal(again.aux_input.row_info["source_row"], rows)
    assert not torch.equal(other.aux_input.row_info["source_row"], rows)
    full = build_problem("cifar100_20_mnist", 5, **SMALL).aux_input
    assert torch.equal(full.row_info["source_row"], torch.arange(60_000))
