"""Photo data sets decoded once: a uint8 image store on disk, and the batch transforms that read it.

Why: CUB-200-2011, Oxford-IIIT Pet and Food-101 ship as JPEG files of every size. Decoding and
resizing them every epoch costs more CPU than a GPU step, and Food-101 (101,000 images, about
20 GB at 256 pixels) need not fit in memory. So each data set's images are decoded *once* per
storage size into ``<data_dir>/auxbench-cache/<dataset>-<S>-<key>.npy`` (:func:`decoded_images`):

* each file is decoded with PIL, its shorter side resized to ``S = ImageConfig.storage_size``
  (bilinear, with PIL's antialiasing; JPEGs are first decoded at the smallest DCT scale that is
  still at least ``S`` on both sides, ``Image.draft``, which changes pixels slightly against a
  full-size decode and makes decoding several times faster), and its centre ``S x S`` square kept;
* the array, uint8 ``[N, 3, S, S]``, is written into a temporary file and renamed into place only
  when complete (``os.replace``), so a killed run never leaves a half-written file that a later
  run would trust; one process at a time writes a given cache file (an ``flock`` on
  ``<file>.lock``: trials started together wait for the first one instead of each decoding, and a
  killed writer's temporary file is removed by the next writer); ``<key>`` hashes the data set, the decode recipe, the ordered file list and
  every file's size, so another list, order or a replaced file gets a new cache file;
* it is opened with ``np.load(mmap_mode="c", allow_pickle=False)``: pages are read from disk on
  demand and never written back (copy-on-write, so ``torch.from_numpy`` gets the writable array
  it expects; ``"r"`` would make torch warn about a read-only buffer). Indexing the tensor gathers
  rows into memory: the splits of a problem are such gathers (``TensorSplit`` holds tensors), the
  cache file itself is read lazily.

Transforms (:func:`image_transforms`), batch-wise as in :mod:`auxbench.problems.images`:

* ``preprocess``: the centre ``size x size`` crop of a batch at storage size (a no-op on a batch
  already at ``size``), then :func:`~auxbench.problems.images.normalise` with the backbone's
  mean/std. Storage at ``size / crop_pct`` then a centre crop is timm's evaluation transform.
* ``augment`` (training only): a random ``size x size`` window of the stored square and a
  horizontal flip with probability 1/2, drawn from the caller's generator
  (:func:`~auxbench.problems.images.random_crop_flip`). This is AuxiLearn's Pet transform
  (``Resize(256, 256)``, ``RandomCrop(224)``, ``RandomHorizontalFlip``; AvivNavon/AuxiLearn:
  experiments/oxford_pet/data.py), except that the aspect ratio is kept (centre square instead of a
  squash). It is *simpler* than timm's default training transform, ``RandomResizedCrop`` (random
  scale 8-100 % and aspect 3/4-4/3, resized to ``size``) with colour jitter: WAMAL §6 says only
  "standard transformations" (and the ViT's image processor), MAOAL and DTG-AuxL do not say.
"""
from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
from torch import Tensor

from auxbench.errors import DataNotFoundError
from auxbench.problems.base import RowView, TensorSplit
from auxbench.problems.images import ImageConfig, center_crop, normalise, random_crop_flip
from auxbench.problems.sampling import stratified_pick

CACHE_FOLDER = "auxbench-cache"
DEFAULT_IMAGE = ImageConfig(224)  # ImageNet mean/std, crop_pct 0.875: stored at 256 pixels
#: Bump when the decode recipe changes: it enters every cache key.
DECODE_RECIPE = "pil-draft-bilinear-centre-square-v1"


def default_image(image: ImageConfig | None) -> ImageConfig:
    """The backbone's input config, or :data:`DEFAULT_IMAGE` (224 pixels, ImageNet statistics)."""
    return DEFAULT_IMAGE if image is None else image


# ---------------------------------------------------------------------------------------------
# Decoding and the cache


def decode_image(path: Path, size: int) -> np.ndarray:
    """uint8 ``[3, size, size]``: the file's shorter side resized to ``size``, centre square kept."""
    from PIL import Image

    with Image.open(path) as im:
        im.draft("RGB", (size, size))  # JPEG only: decode at a scale still >= size on both sides
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((nw, nh), Image.Resampling.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
        return np.array(im, dtype=np.uint8).transpose(2, 0, 1)


def cache_path(cache_dir: Path, dataset: str, folder: Path, files: Sequence[str], size: int) -> Path:
    """Where the decoded array of ``files`` (relative to ``folder``) at ``size`` pixels lives."""
    digest = hashlib.sha256(f"{DECODE_RECIPE}\n{dataset}\n{size}\n".encode())
    for name in files:
        path = folder / name
        file_size = path.stat().st_size if path.is_file() else -1  # a missing file is reported on decode
        digest.update(f"{name}\t{file_size}\n".encode())
    slug = "".join(c if c.isalnum() else "-" for c in dataset.lower())
    return cache_dir / f"{slug}-{size}-{digest.hexdigest()[:16]}.npy"


def decoded_images(folder: Path, files: Sequence[str], size: int, dataset: str, cache_dir: Path,
                   how_to: str) -> Tensor:
    """uint8 ``[len(files), 3, size, size]`` of the images ``folder/<file>``, decoded once into a
    cache file under ``cache_dir`` and memory-mapped (module docstring).

    A file that is missing or does not decode (truncated, not an image) raises
    :class:`~auxbench.errors.DataNotFoundError` naming it and ``how_to``, before any training.
    """
    path = cache_path(cache_dir, dataset, folder, files, size)
    if not path.is_file():
        with writer_lock(path):
            if not path.is_file():  # else another process wrote it while this one waited
                for stale in path.parent.glob(f"{path.name}.tmp-*"):  # a killed writer's; nobody writes now
                    stale.unlink(missing_ok=True)
                write_cache(path, [folder / name for name in files], size, dataset, how_to)
    array = np.load(path, mmap_mode="c", allow_pickle=False)
    if array.shape != (len(files), 3, size, size) or array.dtype != np.uint8:
        raise DataNotFoundError(f"{dataset}: image cache {path} holds {array.dtype} {list(array.shape)}, "
                                f"not uint8 {[len(files), 3, size, size]}; delete it to rebuild it")
    return torch.from_numpy(array)


@contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Hold ``<path>.lock`` (``flock``; released by the OS if the holder dies), so that trials
    started together decode a data set once, not once each into their own temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # Windows: no lock; concurrent first runs each decode (correct, wasteful)
        yield
        return
    with open(path.with_name(f"{path.name}.lock"), "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def write_cache(path: Path, files: Sequence[Path], size: int, dataset: str, how_to: str) -> None:
    """Decode ``files`` into ``path`` through a temporary file renamed into place when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(files), 3, size, size))
        decode = functools.partial(_decode_or_report, size=size, dataset=dataset, how_to=how_to)
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # PIL decodes without the GIL
            for i, image in enumerate(pool.map(decode, files, chunksize=64)):
                out[i] = image
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _decode_or_report(path: Path, size: int, dataset: str, how_to: str) -> np.ndarray:
    try:
        return decode_image(path, size)
    except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for missing, truncated, unknown files
        raise DataNotFoundError(f"{dataset} image {path} could not be read ({err}); {how_to}") from None


def fake_images(n: int, size: int, generator: torch.Generator) -> Tensor:
    """``n`` random uint8 images ``[n, 3, size, size]`` (fake-data mode)."""
    return torch.randint(0, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8)


# ---------------------------------------------------------------------------------------------
# Batch transforms and splits


def preprocess(x: Tensor, config: ImageConfig) -> Tensor:
    """uint8 ``[B, 3, S, S]`` -> float32 ``[B, 3, size, size]``: centre crop, then normalise."""
    return normalise(center_crop(x, config.size), config)


def augment(x: Tensor, generator: torch.Generator | None, config: ImageConfig) -> Tensor:
    """A random ``size x size`` window of each stored square, flipped with probability 1/2."""
    return random_crop_flip(x, config.size, generator)


def image_transforms(config: ImageConfig):
    """``(preprocess, augment)`` for images stored at ``config.storage_size`` (module docstring);
    partials of module functions, so that a split pickles."""
    return functools.partial(preprocess, config=config), functools.partial(augment, config=config)


def image_split(x: Tensor, y: dict[str, Tensor], rows: Tensor, config: ImageConfig, train: bool,
                augment_train: bool = True) -> TensorSplit:
    """The split of rows ``rows`` of the image store ``x`` and of every label tensor of ``y``: a
    :class:`~auxbench.problems.base.RowView` of the store (no copy), kept on the host."""
    pre, aug = image_transforms(config)
    return TensorSplit(RowView(x, rows), {task: labels[rows] for task, labels in y.items()}, pre,
                       aug if train and augment_train else None, stays_on_host=True)


def split_off(rows: Tensor, labels: Tensor, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(rest, held)``: ``n`` of ``rows`` held out, stratified by ``labels[rows]`` and seeded."""
    held = torch.zeros(len(rows), dtype=torch.bool)
    held[stratified_pick(labels[rows], n, generator)] = True
    return rows[~held], rows[held]


def per_class_pick(rows: Tensor, labels: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """``k`` of ``rows`` per class of ``labels[rows]`` (all of a class with fewer), seeded, sorted."""
    order = torch.randperm(len(rows), generator=generator)
    permuted = labels[rows][order]
    picked = [order[permuted == c][:k] for c in torch.unique(permuted).tolist()]
    return rows[torch.sort(torch.cat(picked)).values]
