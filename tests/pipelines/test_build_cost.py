"""bench/build_cost.py at toy size: every stage is measured, and the cost model's arithmetic holds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "build_cost.py"


@pytest.fixture(scope="module")
def build_cost():
    spec = importlib.util.spec_from_file_location("build_cost", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_cost"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("build_cost", None)


def test_toy_run_measures_every_stage_and_the_model_is_tokens_over_rate(build_cost, tmp_path):
    rates = build_cost.measure(per_source=8, repeat=1, vocab_size=400, work=str(tmp_path))
    assert [r.stage for r in rates] == list(build_cost.STAGES)
    for r in rates:
        assert r.docs > 0 and r.tokens > 0 and r.megabytes > 0 and r.cpu_s > 0, r
    # each stage reads what the one before it let through
    by = {r.stage: r for r in rates}
    assert by["normalize"].docs <= by["read"].docs and by["signature"].docs == by["buckets"].docs
    assert by["tokenize"].docs == by["write"].docs <= by["decontam"].docs == by["signature"].docs
    model = build_cost.cost_model(rates, tokens=15 * 10**12, bytes_per_token=4.0, tokens_per_doc=1000)
    for r, row in zip(rates, model["stages"]):
        assert row["stage"] == r.stage
        assert row["cpu_hours"] == pytest.approx(15e12 / (r.tokens / r.cpu_s) / 3600, rel=1e-12)
        assert row["cpu_hours_from_bytes"] == pytest.approx(60e12 / (r.megabytes * 1e6 / r.cpu_s) / 3600, rel=1e-12)
        assert row["cpu_hours_from_docs"] == pytest.approx(15e9 / (r.docs / r.cpu_s) / 3600, rel=1e-12)
    assert model["total"]["cpu_hours"] == pytest.approx(sum(row["cpu_hours"] for row in model["stages"]), rel=1e-12)
    # the printed tables carry the same numbers
    table = "\n".join(build_cost.cost_table(model))
    assert f"| **total** | {model['total']['cpu_hours']:,.0f} |" in table
    assert len(build_cost.rate_table(rates)) == 2 + len(rates)
