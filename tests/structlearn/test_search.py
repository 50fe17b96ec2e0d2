from collections import Counter

import numpy as np
import pytest
from hypothesis import given, strategies as st

from structlearn.linesearch import grid_line_search, step_grid
from structlearn.search import WorkingSet, candidate_margins, most_violated, sample_candidates


@given(B=st.integers(1, 6), C=st.integers(1, 30), D=st.integers(1, 8), scale=st.sampled_from([0.0, 0.01, 1.0]),
       seed=st.integers(0, 2**16))
def test_most_violated_matches_brute_force(B, C, D, scale, seed):
    rng = np.random.default_rng(seed)
    f_I = rng.standard_normal((B, D))
    emb = rng.standard_normal((C, D))
    y = rng.standard_normal((B, 17, 3)) * 100
    cand = rng.standard_normal((C, 17, 3)) * 100
    idx, margin, value = most_violated(f_I, emb, candidate_margins(y, cand, scale))
    again = most_violated(f_I, emb, None, y, cand, scale)  # margins computed inside (the fused path on a GPU)
    for a, b in zip(again, (idx, margin, value)):
        np.testing.assert_array_equal(a, b)
    for i in range(B):
        best, best_c, best_m = -np.inf, None, None
        for c in range(C):
            m = scale * np.linalg.norm(y[i] - cand[c], axis=1).mean()
            v = f_I[i] @ emb[c] + m
            if v > best:
                best, best_c, best_m = v, c, m
        assert idx[i] == best_c
        assert np.isclose(margin[i], best_m) and np.isclose(value[i], best)


def test_most_violated_shape_error():
    with pytest.raises(ValueError, match="shapes disagree"):
        most_violated(np.zeros((2, 4)), np.zeros((3, 5)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="give the margins, or y_mm and cand_mm"):
        most_violated(np.zeros((2, 4)), np.zeros((3, 4)))


@given(picks=st.lists(st.integers(0, 19), max_size=60), k=st.integers(0, 12))
def test_working_set_matches_counter(picks, k):
    ws = WorkingSet(20)
    for start in range(0, len(picks), 7):  # added in batches, like Algorithm 1
        ws.add(picks[start:start + 7])
    counts = Counter(picks)
    expected = sorted(counts, key=lambda p: (-counts[p], p))[:k]
    assert list(ws.most_frequent(k)) == expected
    assert len(ws) == len(counts)


def test_candidates_are_uniform_plus_frequent():
    rng = np.random.default_rng(0)
    cands = sample_candidates(rng, 100, 20, [3, 99, 5])
    assert {3, 5, 99} <= set(cands) and 20 <= len(cands) <= 23 and len(set(cands)) == len(cands)
    hits = np.zeros(100)
    for _ in range(2000):
        hits[sample_candidates(rng, 100, 20, [])] += 1
    assert hits.min() > 300 and hits.max() < 500  # each pose with probability 0.2: 400 +- 4.5 sigma


def test_line_search_picks_least_cost_and_rejects_non_finite():
    steps = step_grid()
    assert len(steps) == 10 and np.isclose(steps[0], 1e-7) and np.isclose(steps[-1], 1e2)
    best, costs = grid_line_search(lambda s: (np.log10(s) + 2.0) ** 2, steps)   # minimum at 1e-2
    assert np.isclose(best, 1e-2) and len(costs) == 10
    best, _ = grid_line_search(lambda s: np.nan if s > 1e-3 else -s, steps)      # NaN beyond 1e-3
    assert np.isclose(best, 1e-3)
    best, costs = grid_line_search(lambda s: np.inf, steps)
    assert best is None and all(np.isinf(costs))
    with pytest.raises(ValueError, match="bad line-search grid"):
        step_grid(1e2, 1e-7)
