"""``food101`` on a tiny copy of the torchvision layout, and in fake mode."""
from __future__ import annotations

import pytest
import torch

from auxbench.errors import DataNotFoundError
from auxbench.problems import build_problem, check_problem_data, food
from auxbench.problems.images import ImageConfig
from tests.problems.photo_layouts import image_ids, write_food

IMAGE = ImageConfig(8)


def refuse_download(root):
    raise RuntimeError("no network in tests")


@pytest.fixture
def tiny_food(tmp_path, monkeypatch):
    truth = write_food(tmp_path)
    monkeypatch.setattr(food, "N_IMAGES", truth["counts"])
    monkeypatch.setattr(food, "N_CLASSES", 3)
    monkeypatch.setattr(food, "download", refuse_download)
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    return tmp_path, truth


def make(root, **options):
    return food.make_food101(seed=options.pop("seed", 0), fake=False, data_dir=root, image=IMAGE, **options)


def test_sorted_classes_and_labels_travel_with_their_images(tiny_food):
    root, truth = tiny_food
    problem = make(root, val_size=6)
    assert problem.info["class_names"] == ["apple_pie", "ramen", "waffles"]
    assert [t.name for t in problem.tasks] == ["dish"]
    seen = []
    for name, split in problem.splits.items():
        ids = image_ids(split.x)
        seen += ids
        assert split.y["dish"].tolist() == [truth["dish"][i] for i in ids], name
        assert all((i in truth["train"]) == (name != "test") for i in ids), name
    assert sorted(seen) == sorted(truth["dish"])
    assert torch.bincount(problem.splits["val"].y["dish"]).tolist() == [2, 2, 2]
    small = make(root, val_size=3, n_train=6)
    assert torch.bincount(small.splits["train"].y["dish"]).tolist() == [2, 2, 2]


def test_incomplete_lists_are_reported(tiny_food):
    root, _ = tiny_food
    (root / "food-101" / "meta" / "test.json").write_text('{"ramen": ["ramen/1"]}')
    with pytest.raises(DataNotFoundError, match="expected the same 3"):
        make(root, val_size=3)
    (root / "food-101" / "meta" / "test.json").write_text('{"ramen": [')
    with pytest.raises(DataNotFoundError, match="not valid JSON"):
        make(root, val_size=3)


def test_missing_data_names_the_data_set_folder_and_fetch(tmp_path, monkeypatch):
    monkeypatch.setattr(food, "download", refuse_download)
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    with pytest.raises(DataNotFoundError) as err:
        check_problem_data("food101", {})
    msg = str(err.value)
    assert "Food-101" in msg and str(tmp_path / "food-101") in msg and "Food101" in msg


def test_fake_food_has_the_real_counts():
    problem = build_problem("food101", 0, fake=True, image=ImageConfig(16), meta_fraction=0.0)
    assert problem.tasks[0].num_outputs == 101 and len(problem.tasks) == 1
    assert torch.bincount(problem.splits["val"].y["dish"]).tolist() == [2] * 101
    assert torch.bincount(problem.splits["train"].y["dish"]).tolist() == [3] * 101
