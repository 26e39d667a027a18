"""``svhn``: the real loader on a tiny copy of the official layout, fake mode, input configs."""
from __future__ import annotations

import pytest
import torch
import torchvision.datasets

from auxbench.errors import DataNotFoundError
from auxbench.problems import build_problem, check_problem_data, svhn
from auxbench.problems.images import ImageConfig, normalise, resize
from tests.problems.helpers import assert_same_problem, assert_splits_basic
from tests.problems.layouts import truncate, write_svhn

TINY = {"val_size": 20, "augment": False}


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    return write_svhn(tmp_path, monkeypatch)


@pytest.fixture
def no_download(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("downloaded without being asked")

    monkeypatch.setattr(torchvision.datasets, "SVHN", refuse)


def test_reads_the_official_layout(data):
    """Images transposed from MATLAB's [32, 32, 3, N], the label 10 read as the digit 0, splits
    disjoint and stratified, the test split in file order."""
    p = build_problem("svhn", 0, **TINY)
    assert_splits_basic(p, {"digit": 10})
    assert p.hierarchy is None and p.input_shape == (3, 32, 32)
    src, meta_rows = p.info["source_index"], p.info["factory_train_rows"]
    rows = {"train": src["train"][meta_rows["train"]], "meta": src["train"][meta_rows["meta"]], "val": src["val"]}
    for name, r in rows.items():
        assert torch.equal(p.splits[name].x, data["x"][r]), name
        assert torch.equal(p.splits[name].y["digit"], data["y"][r]), name
    assert not set(src["train"].tolist()) & set(src["val"].tolist())
    assert len(src["train"]) + len(src["val"]) == len(data["y"])
    assert torch.bincount(p.splits["val"].y["digit"], minlength=10).tolist() == [2] * 10
    assert torch.equal(p.splits["test"].x, data["x_test"]) and torch.equal(p.splits["test"].y["digit"], data["y_test"])
    assert (p.splits["test"].y["digit"] == 0).any()  # the file's 10s


def test_seeded_splits(data):
    a, b, c = (build_problem("svhn", s, **TINY) for s in (3, 3, 4))
    assert_same_problem(a, b)
    assert not torch.equal(a.info["source_index"]["val"], c.info["source_index"]["val"])


def test_truncated_file_is_refused(data, tmp_path, no_download):
    truncate(tmp_path / svhn.FOLDER / svhn.TEST)
    with pytest.raises(DataNotFoundError, match=r"SVHN file .*test_32x32.mat is corrupt or truncated"):
        build_problem("svhn", 0, **TINY)


def test_missing_file_names_folder_and_commands(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    with pytest.raises(DataNotFoundError) as err:
        check_problem_data("svhn", {})
    msg = str(err.value)
    folder = str(tmp_path.resolve() / "svhn")
    assert "SVHN file 'train_32x32.mat'" in msg and folder in msg and "--download" in msg
    assert f"torchvision.datasets.SVHN({folder!r}, split='train', download=True)" in msg


def test_download_only_when_asked(tmp_path, monkeypatch):
    """``download=True`` calls torchvision's SVHN for each split into ``<data>/svhn``; then the check passes."""
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    calls = []

    def fake_svhn(root, split, download):
        calls.append((root, split, download))
        (tmp_path / "svhn").mkdir(exist_ok=True)
        (tmp_path / "svhn" / f"{split}_32x32.mat").write_bytes(b"x")

    monkeypatch.setattr(torchvision.datasets, "SVHN", fake_svhn)
    with pytest.raises(DataNotFoundError):
        check_problem_data("svhn", {})
    assert calls == []
    check_problem_data("svhn", {}, download=True)
    root = str(tmp_path.resolve() / "svhn")
    assert calls == [(root, "train", True), (root, "test", True)]


def test_fake_mode_and_crop_without_flip(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))  # empty: fake mode reads nothing
    p = build_problem("svhn", 0, fake=True)
    assert_splits_basic(p, {"digit": 10})
    assert {k: len(v) for k, v in p.splits.items()} == {"train": 450, "meta": 50, "val": 100, "test": 100}
    assert p.splits["train"].augment is svhn.crop and p.splits["val"].augment is None
    # the crop never mirrors: columns numbered 1..32 stay in increasing order (0 is the padding)
    x = torch.arange(1, 33, dtype=torch.uint8).repeat(64, 3, 32, 1)
    out = svhn.crop(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and (out == 0).any()  # shifted windows of the padded image
    for row in out[:, 0, 16].int():
        assert (row[row > 0].diff() == 1).all()
    assert len(build_problem("svhn", 0, fake=True, rotation_aux=True).aux_input) == 500  # one per factory train row


def test_backbone_input_config(data):
    """With a backbone's ImageConfig the batch is resized to its side and normalised with its mean
    and std; the stored images stay 32x32 uint8."""
    cfg = ImageConfig(48, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))
    p = build_problem("svhn", 0, image=cfg, **TINY)
    split = p.splits["val"]
    assert split.x.shape[1:] == (3, 32, 32) and split.x.dtype == torch.uint8
    batch = next(split.batches(8))
    assert batch.x.shape == (8, 3, 48, 48)
    torch.testing.assert_close(batch.x, normalise(resize(split.x[:8].float(), 48), cfg))
    own = next(build_problem("svhn", 0, **TINY).splits["val"].batches(8))
    torch.testing.assert_close(own.x, (split.x[:8].float() / 255 - 0.5) / 0.2)
