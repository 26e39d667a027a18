"""``pretrained: true`` for timm backbones: weights fetched before any trial, one clear error offline,
random weights on fake data, trial ids unchanged where the key is not set; and timm models at
another input side than their default (ViTs take ``img_size``)."""
from __future__ import annotations

import importlib

import pytest
import torch

from auxbench.errors import AuxbenchError
from auxbench.suite import check_machine, expand, load_suite

from ..conftest import tiny_suite

tb = importlib.import_module("auxbench.backbones.timm_backbone")  # the module, not its function of that name


def offline(*args, **kwargs):
    if kwargs.get("pretrained"):
        raise OSError("We couldn't connect to 'https://huggingface.co' (simulated: no network)")
    return REAL_CREATE(*args, **kwargs)


REAL_CREATE = __import__("timm").create_model


@pytest.fixture
def no_network(monkeypatch):
    monkeypatch.setattr("timm.create_model", offline)
    tb.fetch_pretrained.cache_clear()
    yield
    tb.fetch_pretrained.cache_clear()


def test_offline_pretrained_weights_get_one_clear_error(no_network):
    with pytest.raises(tb.PretrainedUnavailable, match=r"timm:resnet18 \(timm/resnet18.a1_in1k\).*pretrained: false"):
        tb.timm_backbone("resnet18", (3, 32, 32), pretrained=True)
    tb.timm_backbone("resnet18", (3, 32, 32), pretrained=False)  # random weights need no network


def test_validation_fetches_weights_before_any_trial_and_names_the_experiment(no_network, write_suite):
    suite = tiny_suite(problem="digits_coarse", backbone="timm:resnet18")
    suite["experiments"][0]["pretrained"] = True
    path = write_suite(suite)
    s = load_suite(path)
    trials, _ = expand(s, path, fake_data=True)
    assert trials[0]["config"]["pretrained"] is True
    with pytest.raises(AuxbenchError, match=r"experiments\[0\] \(digits_coarse\): pretrained weights of timm:resnet18"):
        check_machine(s, path, data=True, devices=False)
    check_machine(s, path, data=False, devices=False)  # fake data: no data, no weights needed


def test_pretrained_key_enters_trial_ids_only_when_set(write_suite):
    path = write_suite(tiny_suite(problem="digits_coarse", backbone="timm:resnet18"))
    plain = expand(load_suite(path), path, fake_data=True)[0][0]
    assert "pretrained" not in plain["config"]
    suite = tiny_suite(problem="digits_coarse", backbone="timm:resnet18")
    suite["experiments"][0]["pretrained"] = True
    path = write_suite(suite, "pretrained.yaml")
    assert expand(load_suite(path), path, fake_data=True)[0][0]["id"] != plain["id"]


def test_pretrained_on_a_builtin_backbone_is_refused_at_its_key(write_suite):
    suite = tiny_suite(problem="cifar100_20", backbone="lenet5", options={"n_train": 100})
    suite["experiments"][0]["pretrained"] = True
    path = write_suite(suite)
    with pytest.raises(AuxbenchError, match=r"experiments\[0\]\.pretrained: backbone 'lenet5' has no pretrained"):
        expand(load_suite(path), path, fake_data=True)


def test_fake_data_trials_start_from_random_weights(no_network, tmp_path):
    """A fake-data trial of a pretrained experiment runs offline (it never asks for the weights)."""
    from auxbench.engine import Trial

    from ..methods.helpers import trial_config

    config = trial_config("stl", problem="cifar100_20", backbone="timm:resnet18", batch_size=8)
    config["pretrained"] = True
    Trial(config, tmp_path / "trial")  # would raise PretrainedUnavailable if weights were asked for


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "resnet18"])
def test_timm_models_take_another_input_side(name):
    backbone = tb.timm_backbone(name, (3, 32, 32))
    assert backbone(torch.randn(2, 3, 32, 32)).shape == (2, backbone.feature_dim)


def test_an_unreachable_hub_is_asked_once_and_the_cache_alone_is_read(monkeypatch, tmp_path):
    """No Hugging Face retry loop (a minute per model) when the hub does not answer: one probe,
    then offline mode, which reads the cache and fails at once when the weights are not there."""
    import socket

    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    probes = []

    def no_network(address, *args, **kwargs):
        probes.append(address)
        raise OSError("simulated: no network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(_http.time, "sleep", lambda s: pytest.fail(f"a retry loop slept {s} s"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    tb.fetch_pretrained.cache_clear()
    tb.hub_unreachable.cache_clear()
    try:
        for model in ("resnet18", "resnet34"):
            with pytest.raises(tb.PretrainedUnavailable, match=r"not tried: huggingface.co does not answer"):
                tb.fetch_pretrained(model)
    finally:
        tb.fetch_pretrained.cache_clear()
        tb.hub_unreachable.cache_clear()
    assert len(probes) == 1
    assert constants.HF_HUB_OFFLINE is False  # offline only while fetching
