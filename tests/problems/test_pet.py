"""``oxford_pet`` on a tiny copy of the torchvision layout, and in fake mode."""
from __future__ import annotations

import pytest
import torch

from auxbench.errors import AuxbenchError, DataNotFoundError
from auxbench.problems import build_problem, check_problem_data, pet
from auxbench.problems.images import ImageConfig
from tests.problems.photo_layouts import image_ids, write_pet

IMAGE = ImageConfig(8)


def refuse_download(root):
    raise RuntimeError("no network in tests")


@pytest.fixture
def tiny_pet(tmp_path, monkeypatch):
    """5 breeds (2 cat, 3 dog) x (10 trainval + 2 test images); official counts patched to match."""
    truth = write_pet(tmp_path)
    monkeypatch.setattr(pet, "N_IMAGES", truth["counts"])
    monkeypatch.setattr(pet, "download", refuse_download)
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    return tmp_path, truth


def make(root, **options):
    return pet.make_oxford_pet(seed=options.pop("seed", 0), fake=False, data_dir=root, image=IMAGE, **options)


def test_labels_travel_with_their_images_and_splits_follow_the_lists(tiny_pet):
    root, truth = tiny_pet
    problem = make(root)
    assert [(t.name, t.num_outputs) for t in problem.tasks] == [("breed", 37), ("species", 2)]
    seen = []
    for name, split in problem.splits.items():
        ids = image_ids(split.x)
        seen += ids
        assert split.y["breed"].tolist() == [truth["breed"][i] for i in ids], name
        assert split.y["species"].tolist() == [truth["species"][i] for i in ids], name
        assert all((i in truth["trainval"]) == (name != "test") for i in ids), name
    assert sorted(seen) == sorted(truth["breed"])


def test_val_fraction_and_train_fraction_are_stratified_and_seeded(tiny_pet):
    root, _ = tiny_pet
    problem = make(root, val_fraction=0.3, train_fraction=0.5)
    assert torch.bincount(problem.splits["val"].y["breed"]).tolist() == [3] * 5  # 30 % of 10 per breed
    counts = torch.bincount(problem.splits["train"].y["breed"]).tolist()  # half of the other 35, 7 per breed
    assert sum(counts) == 18 and set(counts) <= {3, 4}
    assert len(problem.splits["test"]) == 10
    trains = {tuple(image_ids(make(root, seed=s, train_fraction=0.5).splits["train"].x)) for s in range(4)}
    assert len(trains) > 1
    with pytest.raises(AuxbenchError, match="option train_fraction"):
        make(root, train_fraction=0.0)
    with pytest.raises(AuxbenchError, match="option val_fraction"):
        make(root, val_fraction=1.0)


def test_damaged_list_is_reported(tiny_pet):
    root, _ = tiny_pet
    lists = root / "oxford-iiit-pet" / "annotations" / "test.txt"
    lists.write_text("\n".join(lists.read_text().splitlines()[:-3]) + "\n")
    with pytest.raises(DataNotFoundError, match="lists 7 images, expected 10"):
        make(root)


def test_missing_data_names_the_data_set_folder_and_fetch(tmp_path, monkeypatch):
    monkeypatch.setattr(pet, "download", refuse_download)
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    with pytest.raises(DataNotFoundError) as err:
        check_problem_data("oxford_pet", {})
    msg = str(err.value)
    assert "Oxford-IIIT Pet" in msg and str(tmp_path / "oxford-iiit-pet") in msg and "OxfordIIITPet" in msg


def test_fake_pet_has_the_real_counts():
    problem = build_problem("oxford_pet", 0, fake=True, image=ImageConfig(16), rotation_aux=True)
    train = problem.splits["train"]
    assert problem.tasks[0].num_outputs == 37 and problem.input_shape == (3, 16, 16)
    assert torch.equal(train.y["species"], (train.y["breed"] >= 12).long())
    assert [t.name for t in problem.aux_input_tasks] == ["rotation"]
