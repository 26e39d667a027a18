"""The photo data sets (CUB, Pet, Food-101, and pet_cub through both) download only when asked."""
from __future__ import annotations

import pytest

from auxbench.errors import DataNotFoundError
from auxbench.problems import check_problem_data, cub, food, pet


@pytest.mark.parametrize("name, modules", [
    ("cub200", [cub]), ("oxford_pet", [pet]), ("food101", [food]), ("pet_cub", [pet, cub]),
])
def test_download_only_when_asked(name, modules, tmp_path, monkeypatch):
    monkeypatch.setenv("AUXBENCH_DATA", str(tmp_path))
    calls = []
    for module in modules:
        monkeypatch.setattr(module, "download", lambda root, module=module: calls.append(module.__name__))
    with pytest.raises(DataNotFoundError, match="--download"):
        check_problem_data(name, {})
    assert calls == []
    with pytest.raises(DataNotFoundError):  # the stand-in download writes nothing
        check_problem_data(name, {}, download=True)
    assert calls == [modules[0].__name__]
