import pytest
import torch
from torch import nn

from auxbench.meta import functional_forward, params_of


def _bn_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(27, 2)).double()


def _buffers(model):
    return {n: b.clone() for n, b in model.named_buffers()}


def test_params_of_returns_live_trainable_parameters():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    model[0].bias.requires_grad_(False)
    params = params_of(model)
    assert list(params) == ["0.weight", "1.weight", "1.bias"]
    assert params["0.weight"] is model[0].weight
    assert list(params_of(model, only_trainable=False)) == ["0.weight", "0.bias", "1.weight", "1.bias"]


def test_functional_forward_in_train_mode_leaves_bn_buffers_alone():
    model = _bn_model().train()
    x = torch.randn(8, 2, 5, 5, dtype=torch.float64) * 3 + 1
    before = _buffers(model)
    out = functional_forward(model, params_of(model), x)
    for name, b in model.named_buffers():
        assert torch.equal(b, before[name]), name
    # The normal forward does update them and gives the same (batch-statistics) output.
    ref = model(x)
    torch.testing.assert_close(out, ref)
    assert not torch.equal(model[1].running_mean, before["1.running_mean"])
    assert not torch.equal(model[1].running_var, before["1.running_var"])
    assert model[1].num_batches_tracked.item() == before["1.num_batches_tracked"].item() + 1


def test_functional_forward_in_eval_mode_uses_running_stats():
    model = _bn_model()
    model.train()(torch.randn(8, 2, 5, 5, dtype=torch.float64) + 2)  # move running stats off 0/1
    model.eval()
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(functional_forward(model, params_of(model), x), model(x))


def test_functional_forward_uses_given_params_and_falls_back_for_missing():
    model = _bn_model().eval()
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    ref = model(x)
    torch.testing.assert_close(functional_forward(model, {}, x), ref)
    new_bias = model[4].bias.detach() + 1.0
    out = functional_forward(model, {"4.bias": new_bias}, x)
    torch.testing.assert_close(out, ref + 1.0)
    assert torch.equal(model(x), ref)  # the module's own weights are untouched


def test_functional_forward_passes_kwargs():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x, scale=1.0):
            return self.lin(x) * scale

    model = Scaled()
    x = torch.randn(3, 2)
    torch.testing.assert_close(functional_forward(model, params_of(model), x, scale=2.0), model(x) * 2.0)


def test_functional_forward_rejects_unknown_names():
    model = _bn_model()
    with pytest.raises(KeyError, match="0.wieght"):
        functional_forward(model, {"0.wieght": torch.zeros(1)}, torch.zeros(1, 2, 5, 5, dtype=torch.float64))
