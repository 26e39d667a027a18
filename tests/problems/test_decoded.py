"""The decoded-image store: decoding, the cache file (reuse, keys, atomic write) and the transforms."""
from __future__ import annotations

import threading
import time

import pytest
import torch
from PIL import Image

from auxbench.errors import DataNotFoundError
from auxbench.problems import decoded
from auxbench.problems.images import ImageConfig
from tests.problems.photo_layouts import image_ids, write_image

GREEN, RED, BLUE = (0, 255, 0), (255, 0, 0), (0, 0, 255)


def banded(path, width, height, horizontal: bool) -> None:
    """Red, green, blue bands along the longer side (PNG: exact pixels)."""
    image = Image.new("RGB", (width, height), GREEN)
    long = width if horizontal else height
    for start, colour in ((0, RED), (long * 3 // 4, BLUE)):
        box = (start, 0, start + long // 4, height) if horizontal else (0, start, width, start + long // 4)
        image.paste(colour, box)
    image.save(path)


@pytest.mark.parametrize("horizontal", [True, False])
def test_decode_keeps_the_centre_square_of_the_shorter_side(tmp_path, horizontal):
    path = tmp_path / "x.png"
    banded(path, *((80, 40) if horizontal else (40, 80)), horizontal=horizontal)
    x = torch.from_numpy(decoded.decode_image(path, 10))
    assert tuple(x.shape) == (3, 10, 10)
    # The centre square spans the green half of the long side: its inner columns/rows are pure
    # green; a crop off-centre, or a squash of the whole image, would show red or blue there.
    inner = x[:, 2:8, 2:8] if horizontal else x[:, 2:8, 2:8].transpose(1, 2)
    assert torch.equal(inner, torch.tensor(GREEN, dtype=torch.uint8).view(3, 1, 1).expand(3, 6, 6))
    assert int(x[2].max()) < 128 and int(x[0].max()) < 128  # no band reaches into the square


def write_files(folder, n):
    for i in range(n):
        write_image(folder / f"{i}.jpg", i + 1)
    return [f"{i}.jpg" for i in range(n)]


def test_cache_is_written_once_and_reused(tmp_path, monkeypatch):
    files = write_files(tmp_path / "images", 5)
    cache = tmp_path / "cache"
    x = decoded.decoded_images(tmp_path / "images", files, 12, "Test set", cache, "fetch it")
    assert image_ids(x) == [1, 2, 3, 4, 5]  # rows in file-list order
    (written,) = cache.glob("*.npy")
    assert written.name.startswith("test-set-12-")

    def refuse(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(decoded, "decode_image", refuse)
    again = decoded.decoded_images(tmp_path / "images", files, 12, "Test set", cache, "fetch it")
    assert torch.equal(again, x)
    # Another order, another size, or a replaced file is another cache file (here: decoding again).
    with pytest.raises(AssertionError, match="decoded again"):
        decoded.decoded_images(tmp_path / "images", files[::-1], 12, "Test set", cache, "fetch it")
    with pytest.raises(AssertionError, match="decoded again"):
        decoded.decoded_images(tmp_path / "images", files, 14, "Test set", cache, "fetch it")
    Image.new("RGB", (30, 30), (0, 0, 0)).save(tmp_path / "images" / "2.jpg")
    with pytest.raises(AssertionError, match="decoded again"):
        decoded.decoded_images(tmp_path / "images", files, 12, "Test set", cache, "fetch it")


def test_an_interrupted_write_leaves_no_cache_file(tmp_path, monkeypatch):
    files = write_files(tmp_path / "images", 6)
    cache = tmp_path / "cache"
    real = decoded.decode_image

    def dies_on_the_fourth(path, size):
        if path.name == "3.jpg":
            raise KeyboardInterrupt  # a kill mid-write
        return real(path, size)

    monkeypatch.setattr(decoded, "decode_image", dies_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        decoded.decoded_images(tmp_path / "images", files, 12, "Test set", cache, "fetch it")
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []  # no .npy, no temporary file
    monkeypatch.setattr(decoded, "decode_image", real)
    x = decoded.decoded_images(tmp_path / "images", files, 12, "Test set", cache, "fetch it")
    assert image_ids(x) == [1, 2, 3, 4, 5, 6]


def test_a_truncated_or_missing_image_is_named(tmp_path):
    files = write_files(tmp_path / "images", 3)
    data = (tmp_path / "images" / "1.jpg").read_bytes()
    (tmp_path / "images" / "1.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataNotFoundError, match=r"Test set image .*1\.jpg could not be read.*fetch it"):
        decoded.decoded_images(tmp_path / "images", files, 12, "Test set", tmp_path / "cache", "fetch it")
    assert not list((tmp_path / "cache").glob("*.npy"))
    with pytest.raises(DataNotFoundError, match=r"nope\.jpg could not be read"):
        decoded.decoded_images(tmp_path / "images", ["nope.jpg"], 12, "Test set", tmp_path / "cache", "fetch it")


def test_preprocess_centre_crops_and_normalises():
    config = ImageConfig(4, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5), crop_pct=0.5)
    assert config.storage_size == 8
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    pre, _ = decoded.image_transforms(config)
    out = pre(x)
    mean, std = torch.tensor(config.mean).view(1, 3, 1, 1), torch.tensor(config.std).view(1, 3, 1, 1)
    assert torch.allclose(out, (x[:, :, 2:6, 2:6].float() / 255 - mean) / std)
    assert torch.allclose(pre(x[:, :, 2:6, 2:6]), out)  # a batch already at size is only normalised


def test_augment_is_a_function_of_the_generator():
    config = ImageConfig(6, crop_pct=0.75)
    x = torch.arange(4 * 3 * 8 * 8, dtype=torch.float32).reshape(4, 3, 8, 8)
    _, aug = decoded.image_transforms(config)
    a = aug(x, torch.Generator().manual_seed(3))
    assert tuple(a.shape) == (4, 3, 6, 6)
    assert torch.equal(a, aug(x, torch.Generator().manual_seed(3)))
    assert any(not torch.equal(aug(x, torch.Generator().manual_seed(s)), a) for s in range(4, 8))
    for i in range(4):  # every output is a window of its own image, possibly flipped
        windows = [x[i, :, t : t + 6, s : s + 6] for t in range(3) for s in range(3)]
        assert any(torch.equal(a[i], w) or torch.equal(a[i], w.flip(-1)) for w in windows)


def test_split_off_and_per_class_pick():
    labels = torch.tensor([0] * 6 + [1] * 4 + [2] * 10)
    rows = torch.arange(20)
    rest, held = decoded.split_off(rows, labels, 10, torch.Generator().manual_seed(0))
    assert sorted(rest.tolist() + held.tolist()) == list(range(20))
    assert torch.bincount(labels[held]).tolist() == [3, 2, 5]  # stratified
    picked = decoded.per_class_pick(rows, labels, 3, torch.Generator().manual_seed(0))
    assert torch.bincount(labels[picked]).tolist() == [3, 3, 3]
    assert picked.tolist() == sorted(picked.tolist())


def test_a_killed_writers_temporary_file_is_removed_not_trusted(tmp_path):
    files = write_files(tmp_path / "images", 3)
    cache = tmp_path / "cache"
    path = decoded.cache_path(cache, "Test set", tmp_path / "images", files, 12)
    cache.mkdir()
    stale = path.with_name(f"{path.name}.tmp-999999")  # what a kill -9 mid-write leaves
    stale.write_bytes(b"half")
    x = decoded.decoded_images(tmp_path / "images", files, 12, "Test set", cache, "fetch it")
    assert image_ids(x) == [1, 2, 3] and not stale.exists()


def test_grayscale_and_cmyk_files_become_rgb(tmp_path):
    """CUB-200-2011 and Food-101 hold some grayscale (and CMYK) JPEGs among the RGB ones."""
    Image.new("L", (30, 20), 100).save(tmp_path / "gray.jpg")
    Image.new("CMYK", (30, 20), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    gray = decoded.decode_image(tmp_path / "gray.jpg", 8)
    assert gray.shape == (3, 8, 8) and (abs(gray.astype(int) - 100) <= 2).all()
    red = decoded.decode_image(tmp_path / "cmyk.jpg", 8)
    assert red.shape == (3, 8, 8) and red[0].min() > 200 and red[1:].max() < 60


def test_a_waiting_writer_uses_the_file_the_lock_holder_wrote(tmp_path, monkeypatch):
    """Trials started together: the second waits on the lock and then reads, it does not decode."""
    files = write_files(tmp_path / "images", 3)
    cache = tmp_path / "cache"
    path = decoded.cache_path(cache, "Test set", tmp_path / "images", files, 12)
    calls, result, real = [], {}, decoded.decode_image
    monkeypatch.setattr(decoded, "decode_image", lambda p, s: calls.append(p) or real(p, s))

    def second_trial():
        result["x"] = decoded.decoded_images(tmp_path / "images", files, 12, "Test set", cache, "fetch it")

    with decoded.writer_lock(path):
        thread = threading.Thread(target=second_trial)
        thread.start()
        time.sleep(0.3)  # lets the second trial reach the cache before the first writes it
        decoded.write_cache(path, [tmp_path / "images" / f for f in files], 12, "Test set", "fetch it")
    thread.join()
    assert len(calls) == 3 and image_ids(result["x"]) == [1, 2, 3]


def test_splits_are_views_of_the_store_not_copies(tmp_path):
    """A split holds row numbers into the memory-mapped store: subsets, the train ∪ meta union and
    smoke cuts stay views; batches read exactly the rows they name."""
    import numpy as np

    from auxbench.problems.base import RowView, concat_splits

    path = tmp_path / "store.npy"
    np.save(path, np.arange(10 * 3 * 2 * 2, dtype=np.uint8).reshape(10, 3, 2, 2))
    store = torch.from_numpy(np.load(path, mmap_mode="c", allow_pickle=False))
    y = {"c": torch.arange(10)}
    config = ImageConfig(2, crop_pct=1.0)
    a = decoded.image_split(store, y, torch.tensor([7, 1, 4]), config, train=False)
    b = decoded.image_split(store, y, torch.tensor([2, 9]), config, train=False)
    assert isinstance(a.x, RowView) and a.x.store is store and a.stays_on_host
    union = concat_splits(a, b).subset(torch.tensor([4, 0, 3]))
    assert isinstance(union.x, RowView) and union.x.store is store
    assert union.x.rows.tolist() == [9, 7, 2] and union.y["c"].tolist() == [9, 7, 2]
    assert torch.equal(union.x[:], store[[9, 7, 2]]) and union.x.shape == (3, 3, 2, 2)
    batch = next(union.batches(2))
    assert batch.y["c"].tolist() == [9, 7] and batch.x.shape == (2, 3, 2, 2)
    assert a.nbytes == 3 * 3 * 2 * 2 + 3 * 8  # the rows' bytes, not the store's
