"""The trial spec: its id is the hash of its config, and its JSON form is the dict trials were."""
from __future__ import annotations

import json

import pytest

from auxbench.config import trial_id
from auxbench.spec import TrialSpec


def test_a_spec_whose_id_is_not_its_configs_hash_is_refused():
    config = {"method": "stl", "seed": 0}
    assert TrialSpec.of("c", "stl", config).id == trial_id(config)
    with pytest.raises(ValueError, match="does not hash its config"):
        TrialSpec("0123456789ab", "c", "stl", config)


def test_the_json_form_is_the_old_dict_key_for_key_and_in_order():
    spec = TrialSpec.of("column", "label", {"method": "stl", "seed": 3, "training": {"epochs": 2}})
    old = {"id": spec.id, "column": "column", "method": "label", "config": spec.config}
    assert json.dumps(spec.to_dict()) == json.dumps(old) == json.dumps(dict(spec))
    assert TrialSpec.from_dict(old) == spec and spec["config"] is spec.config
    assert (spec.seed, spec.epochs) == (3, 2)


def test_another_config_is_another_trial():
    spec = TrialSpec.of("c", "m", {"seed": 0})
    other = spec.with_config({"seed": 1})
    assert (other.column, other.method, other.seed) == ("c", "m", 1) and other.id != spec.id
