"""The reproduction's suite target at toy size (issue 14): exported task data, runner with no DuckDB, suite rho."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from reproduce_protocol import TOY, export_inputs  # noqa: E402
from reproduce_stats import analyse_suite  # noqa: E402
from reproduce_suite import SUITE_FOLDER, export_suite, load_exported, suite_pending  # noqa: E402

SUITE_TOY = replace(TOY, tag="toy-suite", suite="offline", suite_limit=4)


@pytest.fixture(scope="module")
def suite_run(two_per_domain_corpus, tmp_path_factory):
    """Inputs exported with the suite, moved away from where they were written, then the whole toy protocol run
    with DuckDB unusable (the GPU path runs the inputs folder on a machine without the corpus)."""
    import duckdb
    from reproduce_runner import run_protocol

    db = two_per_domain_corpus / "manifest.duckdb"
    written = export_inputs(db, SUITE_TOY).save(tmp_path_factory.mktemp("written") / "inputs")
    assert suite_pending(written)
    export_suite(db, written)
    assert not suite_pending(written)
    inputs = Path(shutil.move(str(written), str(tmp_path_factory.mktemp("moved") / "inputs")))
    work = tmp_path_factory.mktemp("work")
    mp = pytest.MonkeyPatch()
    mp.setattr(duckdb, "connect", lambda *a, **k: pytest.fail("the runner opened DuckDB"))
    try:
        res = run_protocol(inputs, work, "cpu", progress=False)
    finally:
        mp.undo()
    return inputs, work, res


def test_every_model_is_scored_on_the_suite_and_results_record_it(suite_run):
    inputs, work, res = suite_run
    assert res["protocol"]["suite"] == "offline" and res["protocol"]["suite_limit"] == 4
    s = res["suite"]
    assert [s["targets"]["names"][i] for i in s["targets"]["primary"]] == [
        "suite_loss/general",
        "suite_loss/code",
        "suite_loss/math",
    ]  # the suite's domains, lower is better
    assert s["targets"]["names"][3:] == [
        "acc_norm/offline_general_cloze",
        "acc/offline_general_cloze",
        "acc_norm/offline_math_mc",
        "acc/offline_math_mc",
    ]
    assert s["targets"]["directions"] == ["lower"] * 3 + ["higher"] * 4
    scored = {"reference/s0", "reference/s1", "demix/g0.5", "demix/g0", "trained/1x", "trained/4x", "regmix"}
    assert set(s["mean"]) == scored and set(s["methods"]) == scored - {"reference/s0", "reference/s1"} | {"share"}
    for m in scored:
        assert sorted(p.stem for p in (work / SUITE_FOLDER / m).glob("*.json")) == sorted(res["mixtures"])
    lo, hi = s["ci"]["rho/demix/g0.5/macro"]
    assert lo <= s["point"]["rho/demix/g0.5/macro"] <= hi or np.isnan(lo)
    assert res["verdicts"]["suite"].startswith("Suite (offline, 4 samples per task)")
    from reproduce_report import render_report

    docs = work / "docs"
    docs.mkdir()
    (docs / "toy-suite.json").write_text(json.dumps(res, default=float))
    md = render_report(docs, work / "reproduction.md").read_text()
    section = md[md.index("### Ranked by the offline suite") :]
    for m in ("DeMix g = 0.5", "trained proxy 1x", "RegMix-style", "share rule"):
        assert f"| {m}" in section  # a row per method ranked by the suite


def test_saved_suite_scores_are_the_models_own(suite_run):
    """A merged proxy's saved scores equal a fresh SuiteRunner on that proxy (the holder got its weights)."""
    from transformers import AutoTokenizer

    from proxy.benchmarks import SuiteRunner
    from proxy.proxies import ProxyFactory

    inputs, work, res = suite_run
    folders = sorted((work / "models" / "components-g0.5").iterdir())
    factory = ProxyFactory([str(f) for f in folders], device="cpu")
    tok = AutoTokenizer.from_pretrained(str(inputs / SUITE_FOLDER / "tokenizer"))
    runner = SuiteRunner(load_exported(inputs, work), factory.model, tok, limit=4)
    seen = []
    for name in sorted(res["mixtures"])[:2]:
        factory.proxy(res["mixtures"][name]["alpha"])
        got = runner.score()
        saved = json.loads((work / SUITE_FOLDER / "demix/g0.5" / f"{name}.json").read_text())
        assert got == pytest.approx(saved, rel=1e-6)
        seen.append(got)
    assert seen[0] != seen[1]  # two mixtures, two proxies


def test_a_rerun_skips_saved_suite_scores(suite_run):
    from reproduce_runner import run_protocol

    inputs, work, res = suite_run
    again = run_protocol(inputs, work, "cpu", progress=False)
    assert again["suite"]["models_scored"] == 0
    assert json.dumps(again["suite"]["point"], sort_keys=True) == json.dumps(res["suite"]["point"], sort_keys=True)


def _record(ref: np.ndarray, method: np.ndarray, direction: str) -> dict:
    names = [f"m{i:02d}" for i in range(len(ref))]
    col = "suite/general" if direction == "higher" else "suite_loss/general"
    scores = {
        k: {n: {col: float(v[i])} for i, n in enumerate(names)}
        for k, v in {"reference/s0": ref, "reference/s1": ref, "x": method}.items()
    }
    return {
        "mixtures": {n: {"sources": {"web": 1.0}} for n in names},
        "sources": {"web": {"domain": "other"}},
        "suite": {
            "name": "t",
            "limit": 1,
            "primary": [col],
            "secondary": [],
            "directions": {col: direction},
            "domain_of": {col: "general"},
            "scores": scores,
            "seconds": 0.0,
            "models_scored": 0,
        },
    }


@pytest.mark.parametrize("direction", ["higher", "lower"])
def test_suite_direction_orients_the_best_quarter(direction):
    # the method agrees with the reference on the best quarter only (highest when higher is better)
    ref = np.arange(16.0)
    best = ref >= 12 if direction == "higher" else ref < 4
    method = np.where(best, ref, -ref)
    out = analyse_suite(_record(ref, method, direction), ["x"], ["reference/s0", "reference/s1"], {}, 200, 0, 0.7)
    assert out["top25"]["x"]["rho"] == pytest.approx(1.0)
    assert out["point"]["e0/macro"] == pytest.approx(1.0) and out["targets"]["informative"] == [0]
    assert out["methods"] == ["x"]  # "general" is no corpus domain here: no share rule
    assert out["mean"]["x"]["suite/general" if direction == "higher" else "suite_loss/general"] == pytest.approx(
        method.mean()
    )
