"""DTG-AuxL has no official code: each equation of the paper ("Joint Data-Task Generation for Auxiliary
Learning", Chen et al., NeurIPS 2023) restated here and checked against methods/dtg_auxl.py.

Eqs. 12–13 (the implicit gradient and its Neumann series) are pinned in test_dtg_auxl.py
(``test_hypergradient_is_the_truncated_neumann_series_of_eq_13``,
``test_hypergradient_converges_to_the_exact_implicit_gradient``).
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from auxbench.problems.base import TaskSpec
from auxbench.problems.sampling import stream_seed
from methods.dtg_auxl import FeatureGenerator, LabelEmbedding, instance_regulariser

from .helpers import build_trial


def _randomise(module, gen):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))


def _setup(tmp_path, **hparams):
    trial = build_trial(tmp_path, "dtg_auxl", hparams=hparams)
    batch = next(trial.train_split.batches(8, stream_seed(0, 0, 0), shuffle=True))
    partner = torch.randperm(len(batch), generator=torch.Generator().manual_seed(1))
    return trial, batch, partner


def test_parity_eqs_3_4_generated_feature_is_masked_mix_plus_mlp():
    gen = torch.Generator().manual_seed(0)
    fg = FeatureGenerator(2, 5, depth=2)
    _randomise(fg, gen)
    f1, f2 = torch.randn(4, 5, generator=gen), torch.randn(4, 5, generator=gen)
    m = fg.masks.detach()
    m_hat = torch.exp(m) / torch.exp(m).sum(dim=0, keepdim=True)  # eq. 3: softmax across inputs, per dimension k
    linear = m_hat[0] * f1 + m_hat[1] * f2
    nonlinear = fg.nonlinear(torch.cat([f1, f2], dim=1))  # eq. 4: MLP_F of the concatenation
    torch.testing.assert_close(fg([f1, f2]), linear + nonlinear, rtol=1e-5, atol=1e-6)


def test_parity_eq_5_categorical_label_is_a_table_row():
    spec = TaskSpec("c", "auxiliary", "classification", 7, loss="classification", metric="accuracy")
    emb = LabelEmbedding(spec, 4, numeric_rows=10)
    y = torch.tensor([0, 6, 3, 3])
    torch.testing.assert_close(emb(y), emb.table.weight[y])


def test_parity_eq_6_numeric_label_mixes_h_rows_by_softmax_of_a_linear_map():
    gen = torch.Generator().manual_seed(1)
    spec = TaskSpec("r", "auxiliary", "regression", 1, loss="mse", metric="mse")
    emb = LabelEmbedding(spec, 4, numeric_rows=10)
    _randomise(emb, gen)
    y = torch.randn(5, generator=gen)
    c = torch.softmax(y[:, None] * emb.mix.weight[:, 0] + emb.mix.bias, dim=1)  # c ∈ R^H
    assert c.shape == (5, 10) and emb.table.weight.shape == (10, 4)
    torch.testing.assert_close(emb(y), c @ emb.table.weight, rtol=1e-5, atol=1e-6)


def test_parity_eqs_5_7_8_generated_label_is_linear_plus_nonlinear_with_tied_tables(tmp_path):
    trial, batch, partner = _setup(tmp_path)
    labels_module = trial.method.generator.labels
    _randomise(labels_module, torch.Generator().manual_seed(2))
    y, ya = batch.y["coarse"], batch.y["digit"]
    inputs = [y, ya, y[partner], ya[partner]]  # §3.2.3: both rows' labels; tasks share their tables
    tasks = ["coarse", "digit", "coarse", "digit"]
    linear = sum(labels_module.linear[t].table.weight[v] for t, v in zip(tasks, inputs, strict=True))
    e = torch.cat([labels_module.embed[t].table.weight[v] for t, v in zip(tasks, inputs, strict=True)], dim=1)
    expected = linear + labels_module.nonlinear(e)
    assert expected.shape == (len(batch), trial.problem.primary.num_outputs)  # the primary label space (m)
    torch.testing.assert_close(labels_module(inputs), expected, rtol=1e-5, atol=1e-5)


def test_parity_eq_9_label_bias_with_alpha_starting_at_one_half(tmp_path):
    trial, batch, _ = _setup(tmp_path)
    g = trial.method.generator
    assert g.alpha().item() == 0.5
    with torch.no_grad():
        g.alpha_logit.fill_(0.8)
    scores = torch.randn(len(batch), 5, generator=torch.Generator().manual_seed(3))
    y = batch.y["coarse"]
    alpha = torch.sigmoid(torch.tensor(0.8))
    expected = alpha * F.one_hot(y, 5).float() + (1 - alpha) * torch.softmax(scores, dim=1)
    torch.testing.assert_close(g.biased_target(scores, y, None), expected, rtol=1e-5, atol=1e-6)


def test_parity_eq_10_share_input_bias_mixes_both_primary_labels_by_beta(tmp_path):
    trial, batch, partner = _setup(tmp_path)
    g = trial.method.generator
    assert g.beta().item() == 0.5
    with torch.no_grad():
        g.alpha_logit.fill_(-0.4)
        g.beta_logit.fill_(1.1)
    scores = torch.randn(len(batch), 5, generator=torch.Generator().manual_seed(4))
    y = batch.y["coarse"]
    alpha, beta = torch.sigmoid(torch.tensor(-0.4)), torch.sigmoid(torch.tensor(1.1))
    bias = beta * F.one_hot(y, 5).float() + (1 - beta) * F.one_hot(y[partner], 5).float()
    expected = alpha * bias + (1 - alpha) * torch.softmax(scores, dim=1)
    torch.testing.assert_close(g.biased_target(scores, y, y[partner]), expected, rtol=1e-5, atol=1e-6)


def test_parity_eq_2_lower_objective_sums_primary_weighted_auxiliary_and_generated_losses(tmp_path):
    trial, batch, partner = _setup(tmp_path)
    m, model = trial.method, trial.model
    with torch.no_grad():
        m.generator.raw_weights.copy_(torch.tensor([0.7, 1.3]))  # [w_digit, w_g]
    total, primary, _ = m.training_loss(batch, None, partner)

    f = model.backbone(batch.x)
    y, ya = batch.y["coarse"], batch.y["digit"]
    l_p = F.cross_entropy(model.heads["coarse"](f), y)
    l_a = F.cross_entropy(model.heads["digit"](f), ya)
    g = m.generator
    f_g = g.features([f, f[partner]])  # D_g: generated features (eqs. 3–4) ...
    target = g.biased_target(g.labels([y, ya, y[partner], ya[partner]]), y, y[partner])  # ... and labels (eq. 10)
    l_g = -(target * F.log_softmax(model.heads["coarse"](f_g), dim=1)).sum(dim=1).mean()  # L_g: L_p's loss
    torch.testing.assert_close(primary, l_p, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(total, l_p + 0.7 * l_a + 1.3 * l_g, rtol=1e-5, atol=1e-6)


def test_parity_eq_14_instance_regulariser_sums_cosines_over_ordered_pairs():
    scores = torch.randn(5, 4, generator=torch.Generator().manual_seed(5))
    expected = sum(F.cosine_similarity(scores[j], scores[k], dim=0)
                   for j, k in itertools.permutations(range(5), 2))
    torch.testing.assert_close(instance_regulariser(scores), expected, rtol=1e-5, atol=1e-6)


def test_parity_eq_15_upper_gradient_adds_the_regulariser_gradient_to_the_implicit_one(tmp_path):
    trial, batch, partner = _setup(tmp_path, reg_weight=0.0)
    m = trial.method
    phi = list(m.generator.parameters())
    implicit = m.hypergradient(batch, None, partner)
    m.hp["reg_weight"] = 2.5
    both = m.hypergradient(batch, None, partner)
    _, _, scores = m.training_loss(batch, None, partner, functional=True)
    unit = scores / scores.norm(dim=1, keepdim=True)
    reg = (unit @ unit.T).sum() - (unit * unit).sum()  # eq. 14 on y_g of eq. 8 (before the bias)
    reg_grads = torch.autograd.grad(reg, phi, allow_unused=True, materialize_grads=True)
    for b, i, r in zip(both, implicit, reg_grads, strict=True):
        torch.testing.assert_close(b, i + 2.5 * r, rtol=1e-5, atol=1e-6)
    assert any(r.abs().max() > 0 for r in reg_grads)
