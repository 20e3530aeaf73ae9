"""Mixture search: Dirichlet sampling rules, objective parsing, a synthetic problem with a known optimum, CLI."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from manifests import open_manifest
from proxy.cli.main import main
from proxy.mixture_sampling import SamplingSettings, cap_and_redistribute, quantize, sample_mixtures
from proxy.predictor import PredictorSettings
from proxy.search import Objective, SearchSettings, evaluated_table, rank_scores, run_search
from proxy.search_proxies import search_prior
from proxy.synthetic import tiny_qwen3_config, write_synthetic_components

PRIOR = [1278, 284, 69, 100, 51, 141, 633]  # the paper's candidate token counts (B)


def test_sampling_rules():
    rows = sample_mixtures(PRIOR, 5000, seed=0)
    p = np.array(PRIOR) / sum(PRIOR)
    assert rows.shape == (5000, 7)
    assert np.allclose(rows.sum(axis=1), 1.0, atol=1e-12)
    assert rows.min() >= 0 and (rows[rows > 0] >= 2e-4 * 0.99).all()  # nothing below the minimum unit
    assert (rows <= 4 * p + 1e-3).all()  # capped at 4x the prior share (up to renormalization of rounding)
    units = np.round(rows / 2e-4).astype(np.int64)
    assert len({u.tobytes() for u in units}) == 5000  # deduplicated
    assert np.array_equal(rows, sample_mixtures(PRIOR, 5000, seed=0))
    assert not np.array_equal(rows, sample_mixtures(PRIOR, 5000, seed=1))
    with pytest.raises(ValueError, match="temperature"):
        SamplingSettings(temperature=0)


def test_pool_follows_the_papers_flattened_prior():
    """The paper's expected pool statistics, computed here from the Dirichlet marginals, not by the sampler."""
    from scipy import stats

    rows = sample_mixtures(PRIOR, 40_000, seed=3)
    p = np.array(PRIOR, dtype=float) / sum(PRIOR)
    q = p**0.7 / (p**0.7).sum()  # flattened: the small candidates gain weight
    assert np.allclose(q, [0.388, 0.135, 0.050, 0.065, 0.041, 0.083, 0.237], atol=1e-3)
    strengths = np.geomspace(0.5, 5.0, 15)
    # Without caps, the kept sample's share of candidate i is Beta(q_i s, (1 - q_i) s) at a uniformly chosen s.
    # Caps only move mass from capped (small) candidates to uncapped ones, so these are bounds:
    #  - the largest candidate (never capped, cap = 1) has mean >= q_0, and stays below its prior share p_0;
    #  - code_very_high (cap 4 x 2.0% = 8% > 5%) reaches 5% at least as often as its uncapped marginal says.
    mean_largest = rows[:, 0].mean()
    assert q[0] - 0.01 < mean_largest < p[0]
    tail = float(np.mean([stats.beta(q[4] * s, (1 - q[4]) * s).sf(0.05) for s in strengths]))
    reach = float((rows[:, 4] >= 0.05).mean())
    assert tail - 0.01 < reach < tail + 0.05
    assert abs(reach - 1 / 6) < 0.04  # "roughly one draw in six"
    # The caps come from the untempered prior.
    assert (rows <= np.minimum(4 * p, 1.0) + 1e-3).all() and rows[:, 4].max() > 0.07


def test_cap_and_quantize_hand_case():
    r = cap_and_redistribute(np.array([[0.7, 0.2, 0.1]]), np.array([[0.4, 1.0, 1.0]]))
    assert np.allclose(r, [[0.4, 0.4, 0.2]])  # excess 0.3 split 2:1
    q = quantize(np.array([[0.50011, 0.49980, 0.00009]]), 2e-4)
    assert q[0, 2] == 0.0 and np.isclose(q.sum(), 1.0)


def test_objective_and_ranking():
    names = ["bpb/code", "bpb/general", "bpb/math", "loss/code"]
    assert Objective("bpb").resolve(names) == pytest.approx(
        {"bpb/code": 1 / 3, "bpb/general": 1 / 3, "bpb/math": 1 / 3}
    )
    assert Objective("general:0.5,code:0.25,math:0.25").resolve(names) == {
        "bpb/general": 0.5,
        "bpb/code": 0.25,
        "bpb/math": 0.25,
    }
    with pytest.raises(ValueError, match="'physics' matches no metric"):
        Objective("physics").resolve(names)
    preds = {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([3.0, 2.0, 1.0])}
    assert np.argmax(rank_scores(preds, {"a": 1.0}, maximize=False, rank_by="value")) == 0
    pct = rank_scores(preds, {"a": 0.5, "b": 0.5}, maximize=False, rank_by="percentile")
    assert np.allclose(pct, 0.5)


def test_search_finds_known_optimum():
    names = [f"c{i}" for i in range(7)]
    target = np.array([0.6, 0.1, 0.02, 0.03, 0.02, 0.05, 0.18])  # inside the sampler's support, away from the prior

    def score_fn(r):
        v = np.array([r[n] for n in names])
        return {"dist": float(((v - target) ** 2).sum())}

    settings = SearchSettings(
        iterations=3, per_iteration=32, pool=20_000, top_k=32, seed=0, predictor=PredictorSettings(kind="lightgbm")
    )
    res = run_search(score_fn, names, PRIOR, "dist", settings, progress=False)
    best = np.array([res.best_ratios[n] for n in names])
    assert best.sum() == pytest.approx(1.0, abs=1e-9)
    assert len(res.evaluated) == 32 + 16 + 8
    assert np.abs(best - target).sum() < 0.15
    prior_share = np.array(PRIOR) / sum(PRIOR)
    assert res.best_objective < 0.25 * score_fn(dict(zip(names, prior_share)))["dist"]
    first = [e["objective"] for e in res.evaluated if e["iteration"] == 1]
    assert res.best_objective < np.median(first)
    again = run_search(score_fn, names, PRIOR, "dist", settings, progress=False)
    assert again.best_ratios == res.best_ratios  # deterministic for the seed


def test_cli_search(tiny_corpus, tmp_path, capsys):
    corpus = shutil.copytree(tiny_corpus, tmp_path / "corpus")
    comps = write_synthetic_components(
        tmp_path / "components",
        ["general", "code", "math"],
        tiny_qwen3_config(vocab_size=384),
        tokenizer_dir=corpus / "tokenizer",
        db=str(corpus / "manifest.duckdb"),
        noise=0.05,
    )
    with pytest.raises(ValueError, match="no train tokens for candidates"):
        search_prior(corpus, ("general", "code", "math"), "manifest")
    out = tmp_path / "search"
    args = [
        "search",
        "--components",
        str(comps),
        "--db",
        str(corpus),
        "--prior",
        "uniform",
        "--iterations",
        "2",
        "--per-iteration",
        "6",
        "--pool",
        "300",
        "--top-k",
        "8",
        "--tokens-per-domain",
        "200",
        "--seq-len",
        "32",
        "--predictor",
        "ridge",
        "--name",
        "t",
        "--out",
        str(out),
        "--json",
    ]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_evaluated"] == 6 + 3 + 1
    best = json.loads((out / "best_mixture.json").read_text())
    assert best["level"] == "candidate" and sum(best["ratios"].values()) == pytest.approx(1.0, abs=1e-9)
    assert best["provenance"]["seed"] == 0
    table = pq.read_table(out / "evaluated.parquet").to_pylist()
    assert len(table) == 10 and {"bpb/code", "bpb/general", "bpb/math", "ratio/code"} <= table[0].keys()
    for png in ("predicted_vs_measured.png", "best_by_iteration.png", "top_ratios.png"):
        assert (out / png).stat().st_size > 1000
    with open_manifest(corpus, read_only=True) as con:
        rows = con.execute("SELECT name, method FROM mixtures ORDER BY name").fetchall()
    assert len(rows) == 10 and ("t/best", "demix-search") in rows
    before = (out / "best_mixture.json").read_text()
    assert main(args) == 0 and "kept" in capsys.readouterr().err  # rerun: finished work is skipped
    assert main(args[:-3] + ["--seed", "1", "--out", str(out)]) == 1  # other settings: not overwritten silently
    assert (out / "best_mixture.json").read_text() == before


def test_final_choice_average_best_auto():
    names = [f"c{i}" for i in range(4)]
    optima = [np.array([0.7, 0.1, 0.1, 0.1]), np.array([0.1, 0.1, 0.1, 0.7])]  # two modes: averaging can land between

    def score_fn(r):
        v = np.array([r[n] for n in names])
        return {"dist": float(min(((v - o) ** 2).sum() for o in optima))}

    prior = [100, 100, 100, 100]
    runs = {
        final: run_search(
            score_fn,
            names,
            prior,
            "dist",
            SearchSettings(
                iterations=2,
                per_iteration=16,
                pool=2_000,
                top_k=64,
                seed=3,
                final=final,
                predictor=PredictorSettings(kind="ridge"),
            ),
            progress=False,
        )
        for final in ("average", "best", "auto")
    }
    avg, best, auto = runs["average"], runs["best"], runs["auto"]
    measured = min(e["objective"] for e in avg.evaluated)
    assert avg.average is None and avg.provenance()["final_choice"] == "average"
    assert best.best_objective == measured and best.average["objective"] == avg.best_objective
    assert auto.best_objective == min(measured, avg.best_objective)
    assert auto.provenance()["final_choice"] == ("average" if avg.best_objective <= measured else "best evaluated")
    table = evaluated_table(best, "t").to_pylist()
    assert [r["name"] for r in table[-2:]] == ["t/average", "t/best"] and len(table) == len(best.evaluated) + 2
    assert table[-1]["objective"] == measured and not math.isnan(best.predicted_best_objective)
    with pytest.raises(ValueError, match="final"):
        SearchSettings(final="median")
