"""``cub200`` and ``pet_cub`` on tiny copies of the official layouts, and in fake mode."""
from __future__ import annotations

import pytest
import torch

from auxbench.errors import AuxbenchError, DataNotFoundError
from auxbench.problems import build_problem, check_problem_data, cub, pet
from auxbench.problems.images import ImageConfig
from tests.problems.photo_layouts import image_ids, write_cub, write_pet

IMAGE = ImageConfig(8)  # stored at 9 pixels


@pytest.fixture
def no_download(monkeypatch):
    def refuse(root):
        raise RuntimeError("no network in tests")

    monkeypatch.setattr(cub, "download", refuse)
    monkeypatch.setattr(pet, "download", refuse)


@pytest.fixture
def tiny_cub(tmp_path, monkeypatch, no_download):
    """4 species x (3 training + 2 test images), 5 attributes; the official counts patched to match."""
    truth = write_cub(tmp_path)
    monkeypatch.setattr(cub, "N_IMAGES", truth["n_images"])
    monkeypatch.setattr(cub, "N_CLASSES", 4)
    monkeypatch.setattr(cub, "N_ATTRIBUTES", 5)
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    return tmp_path, truth


def make(root, **options):
    return cub.make_cub200(seed=options.pop("seed", 0), fake=False, data_dir=root, image=IMAGE, **options)


def test_real_layout_labels_travel_with_their_images(tiny_cub):
    root, truth = tiny_cub
    problem = make(root)
    assert problem.input_shape == (3, 8, 8)
    assert [t.name for t in problem.tasks] == ["species"] + [f"attr_{j:03d}" for j in range(1, 6)]
    assert all(t.kind == "binary" and t.loss == "bce" and t.num_outputs == 1 for t in problem.tasks[1:])
    seen = []
    for name, split in problem.splits.items():
        assert tuple(split.x.shape[1:]) == (3, 9, 9)
        ids = image_ids(split.x)
        seen += ids
        assert split.y["species"].tolist() == [truth["species"][i] for i in ids], name
        for j in range(5):
            assert split.y[f"attr_{j + 1:03d}"].squeeze(1).tolist() == [truth["present"][i][j] for i in ids]
        assert all(truth["is_train"][i] == (name == "train") for i in ids), name
    assert sorted(seen) == list(range(1, truth["n_images"] + 1))  # every image in exactly one split


def test_val_and_test_halve_the_official_test_split_by_species(tiny_cub):
    root, _ = tiny_cub
    for seed in range(3):
        problem = make(root, seed=seed)
        assert len(problem.splits["train"]) == 12
        for name in ("val", "test"):  # 2 test images per species: one each
            assert sorted(problem.splits[name].y["species"].tolist()) == [0, 1, 2, 3]
    vals = {tuple(image_ids(make(root, seed=s).splits["val"].x)) for s in range(6)}
    assert len(vals) > 1  # seeded, not fixed


def test_k_shot_keeps_k_training_images_per_species(tiny_cub):
    root, truth = tiny_cub
    picks = set()
    for seed in range(6):
        problem = make(root, seed=seed, k_shot=2)
        train = problem.splits["train"]
        assert torch.bincount(train.y["species"]).tolist() == [2, 2, 2, 2]
        assert all(truth["is_train"][i] for i in image_ids(train.x))
        assert len(problem.splits["test"]) == 4  # untouched
        picks.add(tuple(image_ids(train.x)))
    assert len(picks) > 1
    assert image_ids(make(root, seed=1, k_shot=2).splits["train"].x) == image_ids(make(root, seed=1, k_shot=2).splits["train"].x)


def test_multilabel_layout_and_certainty(tiny_cub):
    root, truth = tiny_cub
    problem = make(root, attributes="multilabel", min_certainty=3)
    assert [(t.name, t.kind, t.num_outputs) for t in problem.tasks] == [("species", "classification", 200),
                                                                        ("attributes", "multilabel", 5)]
    split = problem.splits["train"]
    expected = [[int(p and c >= 3) for p, c in zip(truth["present"][i], truth["certainty"][i], strict=True)]
                for i in image_ids(split.x)]
    assert split.y["attributes"].tolist() == expected
    assert split.y["attributes"].sum() < sum(sum(truth["present"][i]) for i in image_ids(split.x))


def test_bad_options_are_named(tiny_cub):
    root, _ = tiny_cub
    for options, key in (({"attributes": "groups"}, "attributes"), ({"min_certainty": 5}, "min_certainty"),
                         ({"k_shot": 0}, "k_shot")):
        with pytest.raises(AuxbenchError, match=f"option {key}"):
            make(root, **options)


def test_damaged_index_files_are_reported(tiny_cub):
    root, _ = tiny_cub
    labels = root / "CUB_200_2011" / "attributes" / "image_attribute_labels.txt"
    lines = labels.read_text().splitlines()
    labels.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataNotFoundError, match="no line for image 20, attribute 5"):
        cub.read_index(root / "CUB_200_2011")
    images = root / "CUB_200_2011" / "images.txt"
    images.write_text("\n".join(images.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(DataNotFoundError, match="lists 19 images"):
        cub.read_index(root / "CUB_200_2011")


def test_missing_data_names_the_data_set_folder_and_fetch(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    with pytest.raises(DataNotFoundError) as err:
        check_problem_data("cub200", {})
    msg = str(err.value)
    assert "CUB-200-2011" in msg and str(tmp_path / "CUB_200_2011") in msg and cub.URL in msg


def test_pet_cub_puts_cub_training_birds_on_the_aux_stream(tiny_cub, monkeypatch):
    root, cub_truth = tiny_cub
    pet_truth = write_pet(root, first_id=cub_truth["n_images"] + 1)
    monkeypatch.setattr(pet, "N_IMAGES", pet_truth["counts"])
    problem = cub.make_pet_cub(seed=0, fake=False, data_dir=root, image=IMAGE)
    assert [t.name for t in problem.tasks] == ["breed", "bird"]
    assert [t.name for t in problem.aux_input_tasks] == ["bird"]
    assert all(set(split.y) == {"breed"} for split in problem.splits.values())
    aux = problem.aux_input
    ids = image_ids(aux.x)
    assert sorted(ids) == [i for i in range(1, cub_truth["n_images"] + 1) if cub_truth["is_train"][i]]
    assert aux.y["bird"].tolist() == [cub_truth["species"][i] for i in ids]
    assert [i - 1 for i in ids] == aux.row_info["source_row"].tolist()
    capped = cub.make_pet_cub(seed=0, fake=False, data_dir=root, image=IMAGE, n_aux=8)
    assert torch.bincount(capped.aux_input.y["bird"]).tolist() == [2, 2, 2, 2]


# ---------------------------------------------------------------------------------------------
# Fake mode


def test_fake_cub_has_the_real_counts_and_reads_no_file(tmp_path):
    problem = cub.make_cub200(seed=0, fake=True, data_dir=tmp_path / "absent", image=ImageConfig(16))
    assert len(problem.tasks) == 313 and problem.tasks[0].num_outputs == 200
    assert problem.input_shape == (3, 16, 16)
    assert tuple(problem.splits["train"].x.shape[1:]) == (3, 18, 18)
    assert torch.bincount(problem.splits["train"].y["species"]).tolist() == [2] * 200
    assert not (tmp_path / "absent").exists()
    few = cub.make_cub200(seed=0, fake=True, data_dir=tmp_path, image=ImageConfig(16), k_shot=5,
                          attributes="multilabel")
    assert torch.bincount(few.splits["train"].y["species"]).tolist() == [5] * 200
    assert tuple(few.splits["val"].y["attributes"].shape) == (200, 312)


def test_fake_pet_cub_through_build_problem():
    problem = build_problem("pet_cub", 0, fake=True, image=ImageConfig(16))
    assert problem.aux_input.y["bird"].max() < 200 and len(problem.aux_input) == 400
    batch = next(problem.aux_input.batches(4, torch.Generator().manual_seed(0), shuffle=True, augment=True))
    assert tuple(batch.x.shape) == (4, 3, 16, 16) and batch.x.dtype == torch.float32
