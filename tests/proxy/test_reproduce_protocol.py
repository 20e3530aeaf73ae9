"""The reproduction's protocol at toy size (issue 16): exported inputs, runner with no DuckDB, per-document NLL."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from reproduce_protocol import TOY, Inputs, export_inputs  # noqa: E402
from reproduce_report import render_report  # noqa: E402
from reproduce_runner import DocScorer, MixtureStream, new_model, run_protocol  # noqa: E402

from proxy.evaluate import evaluate_model, flat_metrics  # noqa: E402


@pytest.fixture(scope="module")
def exported(two_per_domain_corpus, tmp_path_factory) -> Path:
    inputs = export_inputs(two_per_domain_corpus / "manifest.duckdb", TOY)
    return inputs.save(tmp_path_factory.mktemp("inputs"))


def test_export_materialises_every_mixture_and_round_trips(exported, two_per_domain_corpus):
    inputs = Inputs.load(exported)
    assert len(inputs.mixtures) == TOY.n_mixtures
    g = TOY.general_share
    for name, mix in inputs.mixtures.items():
        assert abs(sum(mix["alpha"].values()) - 1) < 1e-9 and abs(sum(mix["sources"].values()) - 1) < 1e-9
        general = sum(r for s, r in mix["sources"].items() if inputs.sources[s]["domain"] == "general")
        alpha_general = sum(r for c, r in mix["alpha"].items() if c.startswith("general"))
        assert general == pytest.approx(g + (1 - g) * alpha_general)  # g x general + (1 - g) x alpha
    assert inputs.components["g0"]["code_high"] == {"code_high": 1.0}
    assert inputs.components["g0.5"]["code_high"]["code_high"] == pytest.approx(0.5)
    # every source of every domain is scored, with about equal tokens per source within a domain
    assert {d["source"] for d in inputs.validation} == set(inputs.sources)
    again = Inputs.load(exported)
    assert all(np.array_equal(again.streams[s], inputs.streams[s]) for s in inputs.streams)
    assert json.loads((exported / "inputs.json").read_text())["protocol"]["tag"] == "toy"


def test_per_document_nll_sums_to_evaluate_model(exported):
    inputs = Inputs.load(exported)
    import torch

    scorer = DocScorer(inputs, torch.device("cpu"))
    model = new_model("pico", inputs.vocab_size, inputs.eos_id, 3)
    per_doc = scorer(model)
    ref = flat_metrics(evaluate_model(model, scorer.vset))
    docs = scorer.docs
    for domain in set(docs.domain):
        mask = np.array(docs.domain) == domain
        bpb = per_doc[mask].sum() / np.log(2) / docs.bytes[mask].sum()
        assert bpb == pytest.approx(ref[f"bpb/{domain}"], rel=1e-9)
    for cand in set(docs.candidate):
        mask = np.array(docs.candidate) == cand
        assert per_doc[mask].sum() / np.log(2) / docs.bytes[mask].sum() == pytest.approx(
            ref[f"bpb_candidate/{cand}"], rel=1e-9
        )


def test_mixture_stream_follows_ratios_and_seed(exported):
    inputs = Inputs.load(exported)
    ratios = {"code_high": 0.75, "math_high": 0.25}
    a = [t.tolist() for t in MixtureStream(inputs.streams, ratios, 16, 40, seed=1)]
    b = [t.tolist() for t in MixtureStream(inputs.streams, ratios, 16, 40, seed=1)]
    c = [t.tolist() for t in MixtureStream(inputs.streams, ratios, 16, 40, seed=2)]
    assert a == b and a != c
    s = MixtureStream(inputs.streams, ratios, 16, 40, seed=1)
    assert np.bincount(s.order).tolist() == [30, 10]  # exact allotment, like a plan


def test_toy_protocol_runs_from_exported_inputs_under_a_minute(exported, tmp_path):
    t = time.perf_counter()
    res = run_protocol(exported, tmp_path / "work", "cpu", progress=False)
    assert time.perf_counter() - t < 60
    names = res["targets"]["names"]
    assert res["point"]["rho/share/macro"] == res["point"]["rho/share/macro"]  # computed (not NaN)
    for key in ("E0", "E1", "E2", "E3", "E4"):
        assert res["verdicts"][key].startswith(key)
    for m in res["labels"]["methods"]:
        assert set(res["bpb"][m]) == set(res["mixtures"]) and set(next(iter(res["bpb"][m].values()))) == set(names)
    lo, hi = res["ci"]["rho/demix/g0.5/macro"]
    assert lo <= res["point"]["rho/demix/g0.5/macro"] <= hi or np.isnan(lo)
    # a rerun skips every finished run and gives the same numbers
    again = run_protocol(exported, tmp_path / "work", "cpu", progress=False)
    assert again["point"] == res["point"]
    # the report renders every endpoint's table, verdicts and the three plots from the saved JSON
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "toy.json").write_text(json.dumps(res, default=float))
    md = render_report(docs, tmp_path / "reproduction.md").read_text()
    for heading in ("### E0", "### E1, E2", "### E3", "### E4", "## Closing note", "P(rho = 1)"):
        assert heading in md
    assert sorted(p.name for p in docs.glob("*.png")) == ["toy_compute.png", "toy_forest.png", "toy_scatter.png"]
