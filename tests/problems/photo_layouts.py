"""Tiny synthetic copies of the official CUB-200-2011, Oxford-IIIT Pet and Food-101 layouts.

Every image is a solid colour that encodes a running id (red = 12 * (id % 20), blue = 12 * (id // 20)), in
a shape of its own (landscape or portrait), so a test can tell from a decoded row which file it
came from and check that labels travel with their images.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

STEP, BASE = 12, 20


def write_image(path: Path, image_id: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    size = (24, 16) if image_id % 2 else (14, 22)  # landscape and portrait
    colour = (STEP * (image_id % BASE), 128, STEP * (image_id // BASE))
    Image.new("RGB", size, colour).save(path, quality=95)


def image_ids(x: torch.Tensor) -> list[int]:
    """The running id of each decoded row ``x`` ([N, 3, S, S] uint8), read from its red channel."""
    mean = x[:].float().mean(dim=(2, 3)) / STEP  # [:] reads a RowView
    return [round(r) + BASE * round(b) for r, b in zip(mean[:, 0].tolist(), mean[:, 2].tolist(), strict=True)]


def write_cub(root: Path, n_classes: int = 4, train_per_class: int = 3, test_per_class: int = 2,
              n_attributes: int = 5) -> dict:
    """``root/CUB_200_2011`` with its index files; returns the truth per image id (1-based)."""
    folder = root / "CUB_200_2011"
    (folder / "attributes").mkdir(parents=True)
    truth = {"species": {}, "is_train": {}, "present": {}, "certainty": {}}
    images, labels, split, attribute_lines = [], [], [], []
    image_id = 0
    g = torch.Generator().manual_seed(5)
    for c in range(n_classes):
        for k in range(train_per_class + test_per_class):
            image_id += 1
            name = f"{c + 1:03d}.Bird_{c}/Bird_{c}_{k}.jpg"
            write_image(folder / "images" / name, image_id)
            images.append(f"{image_id} {name}")
            labels.append(f"{image_id} {c + 1}")
            is_train = k < train_per_class
            split.append(f"{image_id} {int(is_train)}")
            truth["species"][image_id], truth["is_train"][image_id] = c, is_train
            present = torch.randint(0, 2, (n_attributes,), generator=g).tolist()
            certainty = torch.randint(1, 5, (n_attributes,), generator=g).tolist()
            truth["present"][image_id], truth["certainty"][image_id] = present, certainty
            for j in range(n_attributes):
                extra = " 0 0" if (image_id, j) == (2, 1) else ""  # the official file has a few such lines
                attribute_lines.append(f"{image_id} {j + 1} {present[j]} {certainty[j]}{extra} 12.5")
    (folder / "images.txt").write_text("\n".join(images) + "\n")
    (folder / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (folder / "train_test_split.txt").write_text("\n".join(split) + "\n")
    (folder / "classes.txt").write_text("".join(f"{c + 1} {c + 1:03d}.Bird_{c}\n" for c in range(n_classes)))
    (folder / "attributes" / "image_attribute_labels.txt").write_text("\n".join(attribute_lines) + "\n")
    truth["n_images"] = image_id
    return truth


def write_pet(root: Path, breeds: tuple[int, ...] = (0, 0, 1, 1, 1), trainval_per_breed: int = 10,
              test_per_breed: int = 2, first_id: int = 1) -> dict:
    """``root/oxford-iiit-pet`` with ``len(breeds)`` breeds (their species 0 cat / 1 dog)."""
    folder = root / "oxford-iiit-pet"
    (folder / "annotations").mkdir(parents=True)
    truth = {"breed": {}, "species": {}, "trainval": []}
    image_id = first_id - 1
    for split, per_breed in (("trainval", trainval_per_breed), ("test", test_per_breed)):
        lines = []
        for b, species in enumerate(breeds):
            for k in range(per_breed):
                image_id += 1
                name = f"{'Cat' if species == 0 else 'dog'}_{b}_{split}_{k}"
                write_image(folder / "images" / f"{name}.jpg", image_id)
                lines.append(f"{name} {b + 1} {species + 1} {k + 1}")
                truth["breed"][image_id], truth["species"][image_id] = b, species
                if split == "trainval":
                    truth["trainval"].append(image_id)
        (folder / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    truth["counts"] = {"trainval": len(breeds) * trainval_per_breed, "test": len(breeds) * test_per_breed}
    return truth


def write_food(root: Path, classes: tuple[str, ...] = ("waffles", "apple_pie", "ramen"), train_per_class: int = 6,
               test_per_class: int = 2) -> dict:
    """``root/food-101`` with ``classes`` (written unsorted: the loader must sort them)."""
    folder = root / "food-101"
    (folder / "meta").mkdir(parents=True)
    truth = {"dish": {}, "train": []}
    image_id = 0
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        listing = {}
        for name in classes:
            listing[name] = []
            for k in range(per_class):
                image_id += 1
                entry = f"{name}/{1000 * image_id + k}"
                write_image(folder / "images" / f"{entry}.jpg", image_id)
                listing[name].append(entry)
                truth["dish"][image_id] = sorted(classes).index(name)
                if split == "train":
                    truth["train"].append(image_id)
        (folder / "meta" / f"{split}.json").write_text(json.dumps(listing))
    truth["counts"] = {"train": len(classes) * train_per_class, "test": len(classes) * test_per_class}
    return truth
