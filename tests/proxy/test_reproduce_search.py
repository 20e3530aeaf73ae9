"""The reproduction's search check (bench/reproduce_search.py): the split, and the stage end to end at toy size."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from reproduce_protocol import TOY, Inputs, export_inputs  # noqa: E402
from reproduce_report import render_report  # noqa: E402
from reproduce_runner import DocScorer, run_protocol  # noqa: E402
from reproduce_search import attach_search_check, equal_compute_count, run_search_check, selection_split  # noqa: E402
from reproduce_stats import LN2  # noqa: E402


def _docs(seed: int = 0) -> tuple[list[str], list[int]]:
    """Documents of four sources, lengths from 3 to 400 tokens, one source holding a single document."""
    rng = np.random.default_rng(seed)
    sources = ["a"] * 30 + ["b"] * 7 + ["ü-c"] * 2 + ["d"]
    return sources, [int(t) for t in rng.integers(3, 400, len(sources))]


def test_split_is_disjoint_complete_stratified_and_deterministic():
    sources, tokens = _docs()
    sel = selection_split(sources, tokens, 0.5, seed=16)
    src, tok = np.array(sources), np.array(tokens)
    assert sel.shape == (len(sources),) and sel.dtype == bool  # each document in exactly one half
    for s in set(sources):
        mine = src == s
        if mine.sum() >= 2:  # stratified: every splittable source is in both halves, near half its tokens each
            assert sel[mine].any() and (~sel[mine]).any()
            assert abs(tok[mine & sel].sum() - tok[mine].sum() / 2) <= tok[mine].max()
    assert not sel[src == "d"].any()  # a lone document is judged
    assert np.array_equal(sel, selection_split(sources, tokens, 0.5, seed=16))
    assert not np.array_equal(sel, selection_split(sources, tokens, 0.5, seed=17))
    # the split depends on each source's own document sequence only: interleaving the sources changes nothing
    order = np.concatenate([np.flatnonzero(src == s) for s in ("d", "b", "a", "ü-c")])
    again = selection_split(list(src[order]), list(tok[order]), 0.5, seed=16)
    assert np.array_equal(again, sel[order])
    # another share moves the token balance accordingly
    big = selection_split(sources, tokens, 0.8, seed=16)
    assert tok[(src == "a") & big].sum() > 0.7 * tok[src == "a"].sum()


def test_equal_compute_counts_the_1x_trained_proxies_the_components_tokens_pay_for():
    from reproduce_protocol import PROTOCOLS, trained_tokens

    for p in PROTOCOLS.values():
        n, per, budget = equal_compute_count(p, 5), trained_tokens(p, 5, 1.0), 5 * p.component_tokens
        assert n * per <= budget and (n == p.n_mixtures or (n + 1) * per > budget)
    # decide-full's 1x rounds up to whole steps (8,192 tokens x 64 > 500,000): 61 of them cost the components'
    assert equal_compute_count(PROTOCOLS["full"], 5) == 61 and equal_compute_count(PROTOCOLS["quick"], 5) == 24


@pytest.fixture(scope="module")
def finished(two_per_domain_corpus, tmp_path_factory) -> Path:
    """A finished toy work folder (protocol run), its inputs inside it as reproduce.py lays them out."""
    work = tmp_path_factory.mktemp("work")
    export_inputs(two_per_domain_corpus / "manifest.duckdb", TOY).save(work / "inputs")
    run_protocol(work / "inputs", work, "cpu", progress=False)
    return work


def _judged_by_hand(work: Path, check: dict, key: str) -> float:
    """Macro over the targets of the pick's bpb on the judgement documents only, mean of its seeds' bpb."""
    import torch

    inputs = Inputs.load(work / "inputs")
    docs = DocScorer(inputs, torch.device("cpu")).docs
    judged = ~selection_split(docs.source, docs.tokens, TOY.selection_share, TOY.selection_seed)
    cand = np.array(docs.candidate)
    per_seed = []
    for seed in TOY.reference_seeds:
        nll = np.load(work / "nll" / "search_check" / key / f"s{seed}.npy")
        per_seed.append(
            [nll[judged & (cand == c)].sum() / LN2 / docs.bytes[judged & (cand == c)].sum() for c in check["targets"]]
        )
    return float(np.mean(per_seed, axis=0).mean())


def test_search_check_runs_end_to_end_and_judges_on_judgement_documents_only(finished, two_per_domain_corpus, tmp_path):
    db = two_per_domain_corpus / "manifest.duckdb"
    check = run_search_check(finished, db, progress=False, bootstrap=200)
    assert check["verdict"].startswith("Search check:")
    assert check["targets"] and set(check["picks"]) == {"demix", "trained", "share"}
    inputs = Inputs.load(finished / "inputs")
    assert check["picks"]["trained"]["n_proxies"] == equal_compute_count(TOY, len(inputs.candidates))
    assert check["picks"]["trained"]["compute"] <= 1.0 == check["picks"]["demix"]["compute"]
    for m, pick in check["picks"].items():
        assert abs(sum(pick["alpha"].values()) - 1) < 1e-9
        general = sum(r for s, r in pick["sources"].items() if inputs.sources[s]["domain"] == "general")
        assert general >= TOY.general_share - 1e-9  # materialised: g x general + (1 - g) x alpha
        assert check["point"][f"bpb/{m}"] == pytest.approx(_judged_by_hand(finished, check, pick["key"]), rel=1e-12)
        lo, hi = check["ci"][f"regret/{m}"]
        assert lo <= check["point"][f"regret/{m}"] <= hi
    assert check["point"]["regret/oracle"] == 0 and check["point"]["bpb/oracle"] <= check["point"]["bpb/mean_reference"]
    # the split's halves: every document once; the search saw only selection documents
    split = check["split"]
    assert sum(v["selection"][0] + v["judgement"][0] for v in split.values()) == len(inputs.validation)
    saved = json.loads((finished / "search_check" / "demix_search.json").read_text())
    sel_docs = saved["key"]["selection"]
    assert len(sel_docs["source"]) == sum(v["selection"][0] for v in split.values())
    assert sum(sel_docs["tokens"]) == sum(v["selection"][1] for v in split.values())
    # what selection documents score cannot move a judged number: triple their NLL in every judged model, rerun
    import torch

    docs = DocScorer(inputs, torch.device("cpu")).docs
    sel = selection_split(docs.source, docs.tokens, TOY.selection_share, TOY.selection_seed)
    for path in [*(finished / "nll" / "reference").rglob("*.npy"), *(finished / "nll" / "search_check").rglob("*.npy")]:
        nll = np.load(path)
        nll[sel] *= 3.0
        np.save(path, nll)
    again = run_search_check(finished, db, progress=False, bootstrap=200)  # a rerun: search and picks reused
    assert again["timings_s"]["train picks"] < 1.0
    assert again["point"] == pytest.approx(check["point"], rel=1e-12)
    # docs/reproduction.md gets the check's table and its verdict line
    res = attach_search_check(json.loads((finished / "results.json").read_text()), finished)
    assert res["verdicts"]["Search"] == again["verdict"]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "toy.json").write_text(json.dumps(res, default=float))
    md = render_report(tmp_path / "docs", tmp_path / "reproduction.md").read_text()
    assert "### Search check (`toy`)" in md and md.count(again["verdict"]) == 3  # section, verdicts, closing note
