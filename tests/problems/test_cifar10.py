"""``cifar10`` and ``cifar10_100``: the real loaders on tiny copies of the official layouts, fake mode."""
from __future__ import annotations

import pytest
import torch
import torchvision.datasets

from auxbench.errors import DataNotFoundError
from auxbench.problems import build_problem, check_problem_data, cifar, cifar10
from auxbench.problems.images import ImageConfig
from tests.problems.helpers import assert_same_problem, assert_splits_basic, aux_stream_trial
from tests.problems.layouts import truncate, write_cifar10, write_cifar100

TINY = {"val_size": 20, "augment": False}


@pytest.fixture
def no_download(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("downloaded without being asked")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", refuse)
    monkeypatch.setattr(torchvision.datasets, "CIFAR100", refuse)


@pytest.fixture
def data(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    return write_cifar10(tmp_path, monkeypatch)


def factory_rows(p) -> dict[str, torch.Tensor]:
    """Each split's rows of the training file (through the meta split carved by build_problem)."""
    src, rows = p.info["source_index"], p.info["factory_train_rows"]
    return {"train": src["train"][rows["train"]], "meta": src["train"][rows["meta"]], "val": src["val"]}


def test_reads_the_official_layout(data):
    p = build_problem("cifar10", 0, **TINY)
    assert_splits_basic(p, {"class": 10})
    assert p.hierarchy is None and p.info["class_names"][0] == "airplane"
    rows = factory_rows(p)
    for name, r in rows.items():
        assert torch.equal(p.splits[name].x, data["x"][r]) and torch.equal(p.splits[name].y["class"], data["y"][r]), name
    assert len(torch.unique(torch.cat(list(rows.values())))) == len(data["y"])  # disjoint, all 100 images
    assert torch.bincount(p.splits["val"].y["class"], minlength=10).tolist() == [2] * 10
    assert torch.equal(p.splits["test"].x, data["x_test"]) and torch.equal(p.splits["test"].y["class"], data["y_test"])


@pytest.mark.parametrize("name", ["data_batch_3", "test_batch", "batches.meta"])
def test_truncated_file_is_refused_before_unpickling(data, tmp_path, monkeypatch, name):
    truncate(tmp_path / "cifar-10-batches-py" / name)

    def refuse(data):
        raise AssertionError("an unverified file was unpickled")

    monkeypatch.setattr(cifar, "_read_pickle", refuse)
    with pytest.raises(DataNotFoundError, match=f"CIFAR-10 file .*{name} is corrupt or truncated"):
        build_problem("cifar10", 1, **TINY)


def test_missing_file_names_folder_and_commands(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    with pytest.raises(DataNotFoundError) as err:
        check_problem_data("cifar10", {})
    msg = str(err.value)
    root = str(tmp_path.resolve())
    assert "CIFAR-10 file 'data_batch_1' not found" in msg and f"{root}/cifar-10-batches-py" in msg
    assert "--download" in msg and f"torchvision.datasets.CIFAR10({root!r}, download=True)" in msg


def test_download_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    calls = []

    def fake_cifar10(root, train, download):
        calls.append((root, train, download))
        write_cifar10(tmp_path, monkeypatch)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_cifar10)
    with pytest.raises(DataNotFoundError):
        check_problem_data("cifar10", {})
    assert calls == []
    check_problem_data("cifar10", {}, download=True)
    assert calls == [(str(tmp_path.resolve()), True, True)]
    check_problem_data("cifar10", {}, download=True)  # present now: no second download
    assert len(calls) == 1


def test_failed_download_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataNotFoundError, match="the download failed: OSError: network is unreachable"):
        check_problem_data("cifar10", {}, download=True)


def test_fake_mode(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    p = build_problem("cifar10", 0, fake=True)
    assert_splits_basic(p, {"class": 10})
    assert p.splits["train"].augment is cifar.crop_flip and p.splits["val"].augment is None
    assert_same_problem(p, build_problem("cifar10", 0, fake=True))
    with_rotation = build_problem("cifar10", 0, fake=True, rotation_aux=True, random_aux=1)
    assert [t.name for t in with_rotation.tasks] == ["class", "random_0", "rotation"]


def test_backbone_input_config_resizes_after_augmenting(tmp_path, monkeypatch, no_download):
    """Augmentation runs on the stored 32x32 images, the resize to the backbone's side after it."""
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    cfg = ImageConfig(64)
    split = build_problem("cifar10", 0, fake=True, image=cfg).splits["train"]
    batch = next(split.batches(8, torch.Generator().manual_seed(5), shuffle=True, augment=True))
    g = torch.Generator().manual_seed(5)
    order = torch.randperm(len(split), generator=g)[:8]
    want = split.preprocess(cifar.crop_flip(split.x[order], g))
    assert batch.x.shape == (8, 3, 64, 64) and torch.equal(batch.x, want)


# ---------------------------------------------------------------------------------------------
# cifar10_100


@pytest.fixture
def pair(data, tmp_path, monkeypatch):
    return data, write_cifar100(tmp_path, monkeypatch)


def test_pair_reads_both_layouts(pair):
    c10, c100 = pair
    p = build_problem("cifar10_100", 0, n_aux=50, **TINY)
    assert_splits_basic(p, {"class": 10})
    assert [(t.name, t.role, t.num_outputs) for t in p.tasks] == [("class", "primary", 10), ("fine", "auxiliary", 100)]
    assert p.aux_input_tasks == [p.tasks[1]] and p.hierarchy is None
    aux = p.aux_input
    rows = aux.row_info["source_row"]
    assert len(aux) == 50 and len(torch.unique(rows)) == 50
    assert torch.equal(aux.x, c100["x"][rows]) and torch.equal(aux.y["fine"], c100["fine"][rows])
    assert aux.preprocess is p.splits["train"].preprocess
    same = build_problem("cifar10", 0, **TINY)  # the primary side is cifar10's, image for image
    for name in p.splits:
        assert torch.equal(p.splits[name].x, same.splits[name].x), name
    assert len(build_problem("cifar10_100", 0, **TINY).aux_input) == 200  # default: every CIFAR-100 training image


def test_pair_needs_both_data_sets(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    write_cifar10(tmp_path, monkeypatch)
    with pytest.raises(DataNotFoundError, match="CIFAR-100 file 'train' not found"):
        check_problem_data("cifar10_100", {})


def test_pair_engine_serves_cifar100_batches(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    trial = aux_stream_trial(tmp_path, "cifar10_100", {"n_train": 100, "val_size": 50, "n_test": 50, "n_aux": 100})
    batch = trial.method.seen[0]
    assert set(batch.y) == {"fine"} and batch.x.shape == (50, 3, 32, 32) and batch.x.dtype == torch.float32
    assert set(trial.train_split.y) == {"class"}
    assert cifar10.FAKE_AUX == len(build_problem("cifar10_100", 0, fake=True).aux_input)
