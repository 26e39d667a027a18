import itertools

import numpy as np
import pytest
import torch

from auxbench.meta import project_simplex


def _brute_force(v: np.ndarray, s: float) -> np.ndarray:
    """Exhaustive active-set enumeration: the projection is v_S − τ on some support S (KKT), zero off
    it; every such candidate that is ≥ 0 is feasible, so the closest one is the optimum."""
    best, best_dist = None, np.inf
    for size in range(1, len(v) + 1):
        for support in itertools.combinations(range(len(v)), size):
            idx = list(support)
            w = np.zeros_like(v)
            w[idx] = v[idx] - (v[idx].sum() - s) / size
            if w.min() >= -1e-12:
                dist = ((w - v) ** 2).sum()
                if dist < best_dist:
                    best, best_dist = w, dist
    return best


def _inputs(rng):
    """Random vectors of several kinds, with the totals ARML (s = K) and others use."""
    for _ in range(60):
        k = int(rng.integers(1, 8))
        for kind in ("normal", "wide", "ties", "feasible", "negative"):
            if kind == "normal":
                v = rng.normal(size=k)
            elif kind == "wide":
                v = rng.normal(scale=10, size=k)
            elif kind == "ties":
                v = rng.integers(-2, 3, size=k).astype(float)
            elif kind == "feasible":
                v = rng.dirichlet(np.ones(k))
            else:
                v = rng.normal(size=k)
                v[rng.random(k) < 0.5] = -1e3
            for s in (1.0, float(k), 0.3):
                yield (v * s if kind == "feasible" else v), s


def test_project_simplex_matches_brute_force_enumeration():
    rng = np.random.default_rng(0)
    count = 0
    for v, s in _inputs(rng):
        ours = project_simplex(torch.tensor(v, dtype=torch.float64), s).numpy()
        np.testing.assert_allclose(ours, _brute_force(v, s), rtol=0, atol=1e-9, err_msg=f"v={v}, s={s}")
        assert ours.min() >= 0 and abs(ours.sum() - s) < 1e-9
        count += 1
    assert count == 60 * 5 * 3


def test_project_simplex_leaves_feasible_points_where_they_are():
    v = torch.tensor([0.5, 1.5, 0.0, 1.0], dtype=torch.float64)
    assert torch.equal(project_simplex(v, s=3.0), v)


def test_project_simplex_is_batched_over_leading_dimensions():
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(3, 4, 5, dtype=torch.float64, generator=gen) * 3
    out = project_simplex(v, s=2.0)
    assert out.shape == v.shape
    for i, j in itertools.product(range(3), range(4)):
        torch.testing.assert_close(out[i, j], project_simplex(v[i, j], s=2.0), rtol=0, atol=0)


def test_project_simplex_in_float32_and_on_large_ties():
    v = torch.full((6,), 1e4)
    torch.testing.assert_close(project_simplex(v, s=6.0), torch.ones(6))
    v = torch.tensor([3.0, 3.0, -1.0])
    torch.testing.assert_close(project_simplex(v, s=1.0), torch.tensor([0.5, 0.5, 0.0]))


@pytest.mark.parametrize("s", [0.0, -1.0])
def test_project_simplex_rejects_non_positive_totals(s):
    with pytest.raises(ValueError, match="positive"):
        project_simplex(torch.ones(3), s)
