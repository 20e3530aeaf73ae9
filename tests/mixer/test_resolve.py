"""Resolve: exact integer allotments, the DeMix Corpora table, mixtures over a built corpus, caps."""
from __future__ import annotations

import time
from fractions import Fraction

import pytest

from corpus import load_recipe, parse_tokens
from manifests import list_sources, open_manifest
from mixer import Mixture, MixtureError, ResolveError, largest_remainder, record_plan, resolve_mixture, resolve_recipe

RECIPE = "corpus/recipes/demix_corpora.yaml"
B = 10**9


def test_largest_remainder_sums_and_stays_within_one():
    weights = [3, 1, 1, 1, 0, 7]
    for total in (0, 1, 5, 13, 10**12 + 7):
        parts = largest_remainder(total, weights)
        assert sum(parts) == total
        for p, w in zip(parts, weights):
            assert abs(p - Fraction(total * w, sum(weights))) < 1
    assert largest_remainder(2, [1, 1, 1]) == [1, 1, 0]  # ties go to the lower index, every time
    with pytest.raises(ValueError):
        largest_remainder(5, [0, 0])


def test_recipe_22383b_reproduces_the_paper_table_exactly():
    recipe = load_recipe(RECIPE)
    plan = resolve_recipe(recipe, parse_tokens("22383B"))
    assert sum(s.allotted_tokens for s in plan.sources) == 22_383 * B
    assert [st["target_tokens"] for st in plan.stages] == [14_388 * B, 5_999 * B, 1_996 * B]
    rows = {s.source: s for s in plan.sources}
    assert len(rows) == 36
    for src in recipe.sources:
        row = rows[src.name]
        assert row.stages == src.stages  # every per-stage cell of PAPER.md, to the token
        assert row.allotted_tokens == sum(src.stages.values())
        assert row.epochs == pytest.approx(row.allotted_tokens / src.available_tokens)
    assert rows["fineweb_edu"].epochs == pytest.approx(1216 / 199)
    assert sum(s.available_tokens for s in plan.sources) == 13_417 * B


def test_recipe_22t_scales_the_table_within_rounding():
    recipe = load_recipe(RECIPE)
    plan = resolve_recipe(recipe, parse_tokens("22T"))
    assert sum(s.allotted_tokens for s in plan.sources) == 22 * 10**12
    scale = Fraction(22_000, 22_383)
    stage_targets = [st["target_tokens"] for st in plan.stages]
    assert sum(stage_targets) == 22 * 10**12
    for st, target in zip(recipe.stages, stage_targets):
        assert abs(target - st.target_tokens * scale) < 1
    rows = {s.source: s for s in plan.sources}
    for src in recipe.sources:
        for stage, tokens in src.stages.items():
            exact = Fraction(tokens) * scale
            assert abs(rows[src.name].stages[stage] - exact) < 2  # two roundings: stage, then source
    assert rows["fineweb_edu"].epochs == pytest.approx(1216 / 199 * 22_000 / 22_383, rel=1e-9)
    assert 5.9 < rows["fineweb_edu"].epochs < 6.2


def test_recipe_one_stage():
    recipe = load_recipe(RECIPE)
    plan = resolve_recipe(recipe, parse_tokens("2T"), stage="3")
    assert sum(s.allotted_tokens for s in plan.sources) == 2 * 10**12
    by_name = {s.source: s for s in plan.sources}
    assert "dclm" not in by_name  # stage 3 takes nothing from it
    for src in recipe.sources:
        exact = Fraction(2 * 10**12 * src.stages["3"], 1_996 * B)
        got = by_name[src.name].allotted_tokens if src.name in by_name else 0
        assert abs(got - exact) < 1


def test_resolve_is_instant_and_deterministic():
    t0 = time.perf_counter()
    a = resolve_recipe(RECIPE, parse_tokens("22T"))
    assert time.perf_counter() - t0 < 1.0
    assert a.plan_id == resolve_recipe(RECIPE, 22 * 10**12).plan_id


@pytest.mark.parametrize("level, ratios", [
    ("candidate", {"general": 0.5, "code_high": 0.3, "math_high": 0.2}),
    ("domain", {"general": 0.2, "code": 0.3, "math": 0.5}),
    ("source", {"gen_a": 0.1, "gen_b": 0.2, "code_a": 0.3, "math_a": 0.4}),
])
def test_mixture_levels_split_by_available_tokens(tiny_corpus, level, ratios):
    target = 1_000_003
    plan = resolve_mixture(Mixture("m", level, ratios), tiny_corpus, target)
    assert sum(s.allotted_tokens for s in plan.sources) == target
    avail = {r["source"]: r["n_tokens"] for r in list_sources(tiny_corpus)}
    field = {"candidate": "candidate", "domain": "domain", "source": "source"}[level]
    for s in plan.sources:
        key = getattr(s, field)
        group = [r for r in plan.sources if getattr(r, field) == key]
        expected = Fraction(ratios[key]) * avail[s.source] / sum(avail[g.source] for g in group) * target
        assert abs(s.allotted_tokens - expected) < 1
        assert s.available_tokens == avail[s.source]
        assert s.epochs == pytest.approx(s.allotted_tokens / s.available_tokens)
        assert s.shards and all(not sh["path"].startswith("validation/") for sh in s.shards)
        assert sum(sh["n_tokens"] for sh in s.shards) == s.available_tokens
    assert plan.eos_id == 0 and plan.tokenizer_path == "tokenizer"


def test_unknown_key_names_it(tiny_corpus):
    with pytest.raises(MixtureError, match="ratios.code_very_high"):
        resolve_mixture(Mixture("m", "candidate", {"general": 0.5, "code_very_high": 0.5}), tiny_corpus, 1000)


def test_max_epochs_names_sources_and_largest_feasible_target(tiny_corpus):
    mix = Mixture("m", "source", {"gen_a": 0.7, "math_a": 0.3})
    with pytest.raises(ResolveError) as e:
        resolve_mixture(mix, tiny_corpus, 200_000, max_epochs=2)
    msg = str(e.value)
    assert "gen_a" in msg and "math_a" in msg and "largest feasible target is" in msg
    feasible = int(msg.split("largest feasible target is ")[1].split()[0])
    plan = resolve_mixture(mix, tiny_corpus, feasible, max_epochs=2)
    assert max(s.epochs for s in plan.sources) <= 2
    with pytest.raises(ResolveError):
        resolve_mixture(mix, tiny_corpus, feasible + 10, max_epochs=2)


def test_record_plan_writes_manifest_rows(corpus_copy):
    plan = resolve_mixture(Mixture("m", "domain", {"general": 0.5, "code": 0.5}), corpus_copy, 50_000)
    assert record_plan(plan, corpus_copy) == len(plan.sources)
    record_plan(plan, corpus_copy)  # idempotent
    with open_manifest(corpus_copy, read_only=True) as con:
        rows = con.execute("SELECT source, allotted_tokens FROM plans WHERE plan_id = ? ORDER BY source",
                           [plan.plan_id]).fetchall()
    assert rows == sorted((s.source, s.allotted_tokens) for s in plan.sources)
