"""Tiny copies of data sets in their official (torchvision) layouts, written into a test folder.

The real loaders read them: the files are the same formats (CIFAR's pickled dicts of numpy arrays,
SVHN's MATLAB files), only with few images, and their md5s are computed here and patched into the
loader's table (``monkeypatch``), so that the md5 check runs too.
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import torch

from auxbench.problems import cifar, cifar10, svhn


def _write(folder: Path, name: str, data: bytes, md5: dict, monkeypatch) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    monkeypatch.setitem(md5, name, hashlib.md5(data).hexdigest())


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def _cifar_batch(images: np.ndarray, **labels) -> bytes:
    """A CIFAR batch as the official files hold it: rows of 3072 bytes (R, G, B planes) and label
    lists (protocol 4: numpy arrays through the same globals as the Python 2 originals)."""
    return pickle.dumps({"data": images.reshape(len(images), -1), **{k: list(map(int, v)) for k, v in labels.items()}},
                        protocol=4)


def write_cifar10(root: Path, monkeypatch, per_batch: int = 20, n_test: int = 30) -> dict[str, torch.Tensor]:
    """``cifar-10-batches-py`` under ``root`` with 5 x ``per_batch`` training and ``n_test`` test
    images (classes cycling 0-9); returns what the loader should read."""
    folder = root / cifar10.CIFAR10.folder
    xs, ys = [], []
    for i, name in enumerate(cifar10.TRAIN_BATCHES):
        x, y = _images(per_batch, i), (np.arange(per_batch) + i) % 10
        _write(folder, name, _cifar_batch(x, labels=y), cifar10.CIFAR10.md5, monkeypatch)
        xs.append(x)
        ys.append(y)
    x_test, y_test = _images(n_test, 99), np.arange(n_test) % 10
    _write(folder, "test_batch", _cifar_batch(x_test, labels=y_test), cifar10.CIFAR10.md5, monkeypatch)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _write(folder, "batches.meta", pickle.dumps({"label_names": names}, protocol=4), cifar10.CIFAR10.md5, monkeypatch)
    return {"x": torch.from_numpy(np.concatenate(xs)), "y": torch.from_numpy(np.concatenate(ys)),
            "x_test": torch.from_numpy(x_test), "y_test": torch.from_numpy(y_test)}


def write_cifar100(root: Path, monkeypatch, n_train: int = 200, n_test: int = 100) -> dict[str, torch.Tensor]:
    """``cifar-100-python`` under ``root`` (fine classes cycling 0-99, coarse = fine // 5)."""
    folder = root / cifar.CIFAR100.folder
    out = {}
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        x, fine = _images(n, seed), np.arange(n) % 100
        _write(folder, split, _cifar_batch(x, fine_labels=fine, coarse_labels=fine // 5), cifar.CIFAR100.md5,
               monkeypatch)
        out[split] = (torch.from_numpy(x), torch.from_numpy(fine))
    meta = {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": [f"c{i}" for i in range(20)]}
    _write(folder, "meta", pickle.dumps(meta, protocol=4), cifar.CIFAR100.md5, monkeypatch)
    return {"x": out["train"][0], "fine": out["train"][1]}


def write_svhn(root: Path, monkeypatch, n_train: int = 60, n_test: int = 30) -> dict[str, torch.Tensor]:
    """``svhn/{train,test}_32x32.mat`` under ``root``: ``X`` as ``[32, 32, 3, N]``, ``y`` as
    ``[N, 1]`` in 1..10 (10 for the digit 0), as the official files store them."""
    import io

    import scipy.io

    out = {}
    for name, n, seed in ((svhn.TRAIN, n_train, 3), (svhn.TEST, n_test, 4)):
        x = _images(n, seed)
        digits = np.arange(n) % 10
        buf = io.BytesIO()
        scipy.io.savemat(buf, {"X": np.transpose(x, (2, 3, 1, 0)), "y": np.where(digits == 0, 10, digits)[:, None]})
        _write(root / svhn.FOLDER, name, buf.getvalue(), svhn.MD5, monkeypatch)
        out[name] = (torch.from_numpy(x), torch.from_numpy(digits))
    return {"x": out[svhn.TRAIN][0], "y": out[svhn.TRAIN][1], "x_test": out[svhn.TEST][0], "y_test": out[svhn.TEST][1]}


def truncate(path: Path) -> None:
    """Cut the last bytes off ``path`` (an interrupted download)."""
    path.write_bytes(path.read_bytes()[:-10])
