"""``data_on_device``: splits copied to the training device once, batches made there.

No GPU is needed: the ``meta`` device stands in for one. A meta tensor has a device, a shape and a
dtype but no values, so a batch path that reads a value on the host (``.item()``, ``bool()``)
fails there as it would stall a GPU, and a tensor left on the CPU shows up by its device. Values
are compared on the CPU, where the device path is the host path bit for bit.
"""
from __future__ import annotations

import pytest
import torch
from torch import Tensor

import auxbench.engine.placement as placement
from auxbench.context import Streams
from auxbench.engine import place_splits, run_trial
from auxbench.errors import AuxbenchError
from auxbench.problems import build_problem
from auxbench.problems.base import TensorSplit, concat_splits
from auxbench.problems.images import ImageConfig, normalise, random_crop_flip
from auxbench.problems.sampling import stream_seed
from tests.conftest import metric_rows
from tests.methods.helpers import trial_config


def _cifar(n_train: int = 50) -> TensorSplit:
    """Fake CIFAR training rows (uint8, crop-and-flip augmentation) with a per-row fact."""
    split = build_problem("cifar100_20", 0, fake=True, n_train=n_train).splits["train"]
    split.row_info["source_row"] = torch.arange(len(split))
    return split


def _reference_batches(split: TensorSplit, batch_size: int, generator, shuffle: bool, augment: bool):
    """The engine's batch loop before splits could move: order, gather, augment, preprocess."""
    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        x = split.x[idx]
        if augment and split.augment is not None:
            x = split.augment(x, generator)
        if split.preprocess is not None:
            x = split.preprocess(x)
        yield x, {k: v[idx] for k, v in split.y.items()}, idx, {k: v[idx] for k, v in split.row_info.items()}


@pytest.mark.parametrize("shuffle", [True, False], ids=["training", "evaluation"])
def test_batches_are_the_host_loops_bit_for_bit(shuffle):
    split = _cifar()
    ours = list(split.to("cpu").batches(16, stream_seed(0, 3, 1), shuffle=shuffle, augment=shuffle))
    reference = list(_reference_batches(split, 16, stream_seed(0, 3, 1), shuffle, shuffle))
    assert len(ours) == 3 and len(ours[-1]) < 16  # 45 rows (meta takes 10 %): the last batch is short
    for batch, (x, y, idx, info) in zip(ours, reference, strict=True):
        assert torch.equal(batch.x, x) and torch.equal(batch.index, idx)
        assert batch.y.keys() == y.keys() and all(torch.equal(batch.y[k], y[k]) for k in y)
        assert batch.info.keys() == info.keys() and all(torch.equal(batch.info[k], info[k]) for k in info)


def _blocking_copies(monkeypatch) -> list[str]:
    """Record every ``Tensor.to`` that crosses devices without ``non_blocking`` (on CUDA a
    blocking host-to-device copy waits for the GPU's queue: a host sync)."""
    seen: list[str] = []
    original = Tensor.to

    def to(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        non_blocking = kwargs.get("non_blocking", False) or any(a is True for a in args)
        if out.device != self.device and not non_blocking:
            seen.append(f"{self.device} -> {out.device} {tuple(self.shape)}")
        return out

    monkeypatch.setattr(Tensor, "to", to)
    return seen


def test_a_resident_split_makes_every_batch_on_its_device_from_the_same_random_stream(monkeypatch):
    """On the device: every tensor of every batch lives there, no value is read on the host (a
    meta tensor has none), every copy to it is non-blocking, and the generator ends where the
    host loop leaves it (same draws, in the same order: the next stream and every later
    augmentation stay paired)."""
    split = _cifar()
    resident = split.to("meta")
    host_generator, device_generator = stream_seed(0, 0, 0), stream_seed(0, 0, 0)
    blocking = _blocking_copies(monkeypatch)
    host = list(split.batches(16, host_generator, shuffle=True, augment=True))
    on_device = list(resident.batches(16, device_generator, shuffle=True, augment=True))
    assert blocking == []
    assert torch.equal(host_generator.get_state(), device_generator.get_state())
    for h, d in zip(host, on_device, strict=True):
        tensors = [d.x, d.index, *d.y.values(), *d.info.values()]
        assert {t.device.type for t in tensors} == {"meta"}
        assert (d.x.shape, d.x.dtype, d.index.shape) == (h.x.shape, h.x.dtype, h.index.shape)
        assert all(d.y[k].dtype == h.y[k].dtype for k in h.y)


def test_moving_host_batches_to_the_device_never_blocks(monkeypatch):
    """A split left on the host (``never``, or a memmap): each stream batch is moved with
    non-blocking copies, its index included."""
    blocking = _blocking_copies(monkeypatch)
    streams = Streams("stl", {"meta": _cifar()}, 16, 0, torch.device("meta"))
    streams.start_epoch(0)
    batch = next(streams["meta"])
    assert blocking == []
    assert {t.device.type for t in (batch.x, batch.index, *batch.y.values(), *batch.info.values())} == {"meta"}


def test_the_shared_image_transforms_read_no_value_and_never_block(monkeypatch):
    blocking = _blocking_copies(monkeypatch)
    x = torch.zeros(4, 3, 40, 40, dtype=torch.uint8, device="meta")
    out = normalise(random_crop_flip(x, 32, torch.Generator().manual_seed(0), pad=2), ImageConfig(32))
    assert blocking == []
    assert (out.device.type, out.shape, out.dtype) == ("meta", (4, 3, 32, 32), torch.float32)


def test_batching_reads_no_tensor_value_on_the_host(monkeypatch):
    """The same check with real values (CPU): every way of reading a tensor into Python, each a
    host sync per batch on a GPU, is forbidden while batches are made."""
    split = _cifar()

    def forbidden(self, *args, **kwargs):
        raise AssertionError("the batch path read a tensor value on the host")

    for name in ("item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__"):
        monkeypatch.setattr(Tensor, name, forbidden)
    for shuffle in (True, False):
        for _ in split.batches(16, stream_seed(0, 0, 0), shuffle=shuffle, augment=shuffle):
            pass


# ----- which splits move ----------------------------------------------------------------------
def _roles() -> dict[str, TensorSplit]:
    split = _cifar(20)
    meta = split.subset(torch.arange(5))
    return {"train": concat_splits(split, meta), "meta": meta, "val": _cifar(10)}


def test_always_moves_every_split_once_with_its_labels_and_row_facts_and_leaves_memmaps_on_the_host():
    roles = _roles()
    roles["extra_train"] = roles["train"]
    roles["val"].stays_on_host = True  # as a decoded-image memmap problem marks its splits
    placed = place_splits(roles, torch.device("meta"), "always")
    assert placed["train"] is placed["extra_train"]  # one copy for a split serving two roles
    for role in ("train", "meta"):
        split = placed[role]
        assert {t.device.type for t in (split.x, *split.y.values(), *split.row_info.values())} == {"meta"}
        assert (split.preprocess, split.augment) == (roles[role].preprocess, roles[role].augment)
    assert placed["val"] is roles["val"]
    assert place_splits(roles, torch.device("meta"), "never") == roles


def test_stays_on_host_follows_its_rows():
    split = _cifar(10)
    split.stays_on_host = True
    assert split.subset(torch.arange(3)).stays_on_host
    assert concat_splits(_cifar(10), split).stays_on_host and not concat_splits(_cifar(10), _cifar(10)).stays_on_host


def test_auto_moves_splits_to_a_cuda_device_only_when_they_fit(monkeypatch):
    roles = _roles()
    total = sum(s.nbytes for s in roles.values())
    assert total == sum(t.numel() * t.element_size() for s in roles.values()
                        for t in (s.x, *s.y.values(), *s.row_info.values()))
    moved_to: list[torch.device] = []
    monkeypatch.setattr(TensorSplit, "to", lambda self, device: moved_to.append(device) or self)
    cuda = torch.device("cuda")
    monkeypatch.setattr(placement, "DEVICE_DATA_LIMIT_BYTES", total)
    place_splits(roles, torch.device("cpu"), "auto")
    assert moved_to == []  # a CPU trial never moves
    place_splits(roles, cuda, "auto")
    assert moved_to == [cuda] * len(roles)
    moved_to.clear()
    monkeypatch.setattr(placement, "DEVICE_DATA_LIMIT_BYTES", total - 1)
    place_splits(roles, cuda, "auto")
    assert moved_to == []


# ----- a whole trial --------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["stl", "auxilearn"])  # auxilearn reads the meta and extra_train streams
def test_a_trial_computes_the_same_bits_with_its_data_on_the_device_or_not(tmp_path, method):
    """On a CPU ``always`` takes the placement path (every role rebuilt from the placed splits)
    while no tensor moves, so any difference is a role served the wrong split."""
    rows = {}
    for mode in ("never", "always"):
        config = trial_config(method, problem="cifar100_20", backbone="lenet5", epochs=2, batch_size=16,
                              data_on_device=mode)
        config["problem_options"] = {"n_train": 48}
        run_trial(config, tmp_path / mode)
        rows[mode] = metric_rows(tmp_path / mode / "metrics.csv")
    assert rows["never"] == rows["always"]
    assert len(rows["never"]) == 2 and "test/coarse/accuracy" in rows["never"][0]


def test_an_unknown_mode_is_named():
    with pytest.raises(AuxbenchError, match="training.data_on_device must be .* got 'sometimes'"):
        place_splits(_roles(), torch.device("cpu"), "sometimes")
