"""Statistics of the reproduction (bench/reproduce_stats.py) on hand cases: rho, paired differences, bootstrap."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from reproduce_stats import (  # noqa: E402
    percentile_ci,
    resamples,
    spearman_rows,
    statistics,
    target_bpb,
    top25,
)


def _tables(ref: np.ndarray, replicates: int = 400, seed: int = 0) -> tuple[dict, np.ndarray]:
    """Resampled [R, n, T] tables of a reference twice (two identical seeds) and some methods."""
    n = ref.shape[0]
    idx, _ = resamples(n, [np.arange(3)], 3, replicates, seed)
    rng = np.random.default_rng(seed + 99)  # noise independent of the reference
    methods = {"same": ref.copy(), "reversed": -ref, "noisy": ref + rng.normal(0, 0.5, ref.shape)}
    tables = {k: v[idx] for k, v in {"r0": ref, "r1": ref, **methods}.items()}
    return tables, idx


def test_spearman_rows_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 5, (7, 12)).astype(float), rng.normal(size=(7, 12))
    got = spearman_rows(a, b, axis=1)
    want = [spearmanr(x, y).statistic for x, y in zip(a, b)]
    assert np.allclose(got, want)
    assert np.isnan(spearman_rows(np.ones((1, 5)), np.arange(5.0)[None])[0])


def test_identical_rankings_give_rho_one_with_a_degenerate_ci_and_zero_self_difference():
    ref = np.random.default_rng(0).normal(size=(16, 2))
    tables, _ = _tables(ref)
    out = statistics(
        tables,
        ["r0", "r1"],
        [0, 1],
        [0, 1],
        [],
        ["same", "reversed", "noisy"],
        {"self": ("same", "same"), "same_vs_noisy": ("same", "noisy")},
    )
    assert percentile_ci(out["rho/same/macro"]) == pytest.approx((1.0, 1.0))
    assert percentile_ci(out["e0/macro"]) == pytest.approx((1.0, 1.0))  # identical seeds: ceiling 1, no spread
    assert percentile_ci(out["rho/reversed/rank_aggregate"]) == pytest.approx((-1.0, -1.0))
    assert np.all(out["diff/self"] == 0) and np.all(out["diff_regret/self"] == 0)
    assert np.all(out["diff/same_vs_noisy"] >= 0)  # paired: a perfect proxy never loses to a noisy one
    # a proxy equal to the selecting seed picks what that seed picks (regret judged on the other seed)
    assert np.array_equal(out["e3/same/regret"], out["e3/reference_seed/regret"])
    assert np.all(out["e4/same/delta"] == 0) and np.allclose(out["e4/same/maintain"], 1)
    lo, hi = percentile_ci(out["rho/noisy/macro"])
    assert lo < hi <= 1


def test_regret_is_the_judge_gap_of_the_pick():
    # judge seed r1 says mixture 2 is best (lowest bpb); the method picks mixture 0
    judge = np.array([[3.0], [2.0], [1.0], [4.0]])
    method = np.array([[0.0], [1.0], [2.0], [3.0]])
    tables = {"r0": judge[None], "r1": judge[None], "m": method[None]}
    out = statistics(tables, ["r0", "r1"], [0], [0], [], ["m"], {})
    assert out["e3/m/regret"][0] == pytest.approx(2.0)
    assert out["e3/m/top3"][0] == 1.0  # mixture 2 is among the method's three best
    assert out["e3/reference_seed/regret"][0] == 0.0


def test_document_weights_give_bpb_and_resample_within_sources():
    nll = np.array([[2.0, 4.0, 6.0], [1.0, 1.0, 1.0]]) * math.log(2)
    masks = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    doc_bytes = np.array([1.0, 3.0, 2.0])
    got = target_bpb(nll, masks, doc_bytes, np.ones((1, 3)))[0]
    assert got == pytest.approx(np.array([[6 / 4, 3.0], [2 / 4, 0.5]]))
    groups = [np.array([0, 1]), np.array([2])]
    idx, w = resamples(5, groups, 3, 300, seed=4)
    assert idx.shape == (300, 5) and idx.max() < 5
    assert np.all(w[:, :2].sum(axis=1) == 2) and np.all(w[:, 2] == 1)  # each source keeps its document count
    again = resamples(5, groups, 3, 300, seed=4)
    assert np.array_equal(again[0], idx) and np.array_equal(again[1], w)


def test_top25_prints_the_chance_of_a_perfect_rho():
    ref = np.arange(16.0)[:, None]
    out = top25(ref.copy(), ref, [0])
    assert out == {"rho": 1.0, "n": 4, "p_chance_rho_1": 1 / 24}
