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

# The DeMix Corpora per-source table as the paper's card gives it (billions of tokens):
# title: (amount, stage 1, stage 2, stage 3). Typed from the paper, not read from the recipe.
PAPER_TABLE = {
    "FineWeb-Edu": (199, 740, 369, 107),
    "Nemo-CC-High": (385, 1191, 594, 172),
    "Nemo-CC-Synth": (1106, 3630, 1812, 525),
    "Nemo-CC-QA": (546, 2190, 1093, 317),
    "DCLM": (505, 505, 0, 0),
    "DOLMA (Social)": (71, 71, 0, 0),
    "Nemo-CC-Med-High": (393, 393, 0, 0),
    "OpenCoder (Web)": (38, 38, 0, 0),
    "Ultra-FineWeb (en)": (79, 79, 0, 0),
    "DOLMA (Others)": (54, 54, 0, 0),
    "Nemo-SFT (General)": (67, 67, 0, 0),
    "DOLMA (Web)": (1278, 774, 0, 0),
    "Web Crawl (en)": (1417, 330, 0, 0),
    "Nemo-CC-Medium": (1605, 965, 0, 0),
    "DOLMA (Scholar)": (77, 77, 0, 0),
    "Ultra-FineWeb (zh)": (102, 102, 51, 15),
    "Nemo-CC-QA-Mul": (562, 562, 280, 81),
    "Web Crawl (zh)": (3304, 991, 0, 0),
    "Nemo-Math Mind (4+)": (69, 69, 199, 98),
    "Nemo-Math (4+)": (49, 49, 141, 69),
    "Nemo-SFT (Math)": (166, 166, 479, 235),
    "Reason (Math)": (38, 38, 36, 0),
    "SwallowMath": (31, 31, 29, 0),
    "MegaMath": (92, 92, 87, 58),
    "FineMath (4+)": (8, 8, 7, 5),
    "Nemo-Math (3)": (76, 76, 0, 0),
    "FineMath (3)": (20, 20, 0, 0),
    "Math (Others)": (48, 48, 0, 0),
    "Nemo-SFT (Code)": (45, 45, 150, 39),
    "OpenCoder": (6, 6, 20, 5),
    "Nemo-Code-Synth": (136, 136, 410, 170),
    "MegaMath (Code)": (5, 5, 15, 6),
    "Source Code": (559, 559, 200, 83),
    "SwallowCode": (47, 47, 17, 7),
    "Reason (Code)": (27, 27, 10, 4),
    "StarCoder": (207, 207, 0, 0),
}


def test_paper_table_is_self_consistent():
    assert len(PAPER_TABLE) == 36
    sums = [sum(row[i] for row in PAPER_TABLE.values()) for i in range(4)]
    assert sums == [13_417, 14_388, 5_999, 1_996]  # the table's totals row


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
    rows = {s.title: s for s in plan.sources}
    assert sorted(rows) == sorted(PAPER_TABLE)
    for title, (amount, *stages) in PAPER_TABLE.items():
        row = rows[title]
        assert row.available_tokens == amount * B
        assert row.stages == {str(i + 1): t * B for i, t in enumerate(stages)}  # every cell, to the token
        assert row.allotted_tokens == sum(stages) * B
        assert row.epochs == pytest.approx(sum(stages) / amount)
    assert rows["FineWeb-Edu"].epochs == pytest.approx(1216 / 199)
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


@pytest.mark.parametrize(
    "level, ratios",
    [
        ("candidate", {"general": 0.5, "code_high": 0.3, "math_high": 0.2}),
        ("domain", {"general": 0.2, "code": 0.3, "math": 0.5}),
        ("source", {"gen_a": 0.1, "gen_b": 0.2, "code_a": 0.3, "math_a": 0.4}),
    ],
)
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
        # epochs in stream tokens on both sides: allotments count one EOS per document, so must availability
        assert s.epochs == pytest.approx(s.allotted_tokens / (s.available_tokens + s.n_docs))
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
        rows = con.execute(
            "SELECT source, allotted_tokens FROM plans WHERE plan_id = ? ORDER BY source", [plan.plan_id]
        ).fetchall()
    assert rows == sorted((s.source, s.allotted_tokens) for s in plan.sources)


def _searched(ratios: dict, g: float | None = 0.5) -> Mixture:
    prov = {"method": "demix-search"}
    if g is not None:
        prov |= {"general_share": g, "general": {"level": "domain", "ratios": {"general": 1.0}}}
    return Mixture("searched", "candidate", ratios, provenance=prov)


def test_searched_mixture_materialises_the_components_general_share(tiny_corpus):
    """g x general + (1 - g) x alpha, by hand: the proxies stood for this data, not for alpha alone."""
    tokens = {r["source"]: r["n_tokens"] for r in list_sources(tiny_corpus)}
    gen = tokens["gen_a"] + tokens["gen_b"]
    plan = resolve_mixture(_searched({"code_high": 0.75, "math_high": 0.25}), tiny_corpus, 10**6)
    shares = {s.source: s.share for s in plan.sources}
    assert shares == pytest.approx(
        {
            "code_a": 0.5 * 0.75,
            "math_a": 0.5 * 0.25,
            "gen_a": 0.5 * tokens["gen_a"] / gen,
            "gen_b": 0.5 * tokens["gen_b"] / gen,
        },
        abs=1e-12,
    )
    assert plan.mixture["level"] == "source"
    assert plan.mixture["provenance"]["materialised"]["general_share"] == 0.5
    assert plan.mixture["provenance"]["materialised"]["from"]["ratios"] == {"code_high": 0.75, "math_high": 0.25}
    assert plan.warnings == ()
    # a general candidate in alpha adds to the general part
    both = resolve_mixture(_searched({"general": 0.5, "code_high": 0.5}), tiny_corpus, 10**6)
    assert {s.source: s.share for s in both.sources}["code_a"] == pytest.approx(0.25, abs=1e-12)
    # resolving the plan's own (materialised) mixture again changes nothing
    again = resolve_mixture(plan.mixture, tiny_corpus, 10**6)
    assert {s.source: s.share for s in again.sources} == pytest.approx(shares, abs=1e-12)
    # another general share starts from alpha again: the general part is not added twice
    redone = resolve_mixture(plan.mixture, tiny_corpus, 10**6, general_share=0.25)
    direct = resolve_mixture(_searched({"code_high": 0.75, "math_high": 0.25}), tiny_corpus, 10**6, general_share=0.25)
    assert {s.source: s.share for s in redone.sources} == pytest.approx(
        {s.source: s.share for s in direct.sources}, abs=1e-12
    )
    assert {s.source: s.share for s in redone.sources}["code_a"] == pytest.approx(0.75 * 0.75, abs=1e-12)


def test_general_share_override_as_is_and_missing_provenance(tiny_corpus):
    alpha = {"code_high": 1.0}
    override = resolve_mixture(_searched(alpha), tiny_corpus, 10**6, general_share=0.25)
    assert {s.source: s.share for s in override.sources}["code_a"] == pytest.approx(0.75, abs=1e-12)
    as_is = resolve_mixture(_searched(alpha), tiny_corpus, 10**6, as_is=True)
    assert [(s.source, s.share) for s in as_is.sources] == [("code_a", 1.0)]
    assert "as-is" in as_is.warnings[0] and "0.5" in as_is.warnings[0]
    bare = resolve_mixture(_searched(alpha, g=None), tiny_corpus, 10**6)
    assert [(s.source, s.share) for s in bare.sources] == [("code_a", 1.0)]
    assert "provenance.general_share is missing" in bare.warnings[0]
    with pytest.raises(MixtureError, match="exclude each other"):
        resolve_mixture(_searched(alpha), tiny_corpus, 10**6, as_is=True, general_share=0.5)
    with pytest.raises(MixtureError, match="general_share"):
        resolve_mixture(_searched(alpha, g=1.5), tiny_corpus, 10**6)
    # a hand-written domain mixture has no components behind it: as-is, no warning
    plain = resolve_mixture(Mixture("m", "domain", {"code": 1.0}), tiny_corpus, 10**6)
    assert [(s.source, s.share) for s in plain.sources] == [("code_a", 1.0)] and not plain.warnings


def test_a_weighted_source_without_tokens_is_refused(corpus_copy):
    with open_manifest(corpus_copy) as con:  # a recipe weight for a source whose build produced nothing
        con.execute("UPDATE sources SET weight = 1 WHERE domain = 'general'")
        con.execute(
            "INSERT INTO sources (source, domain, tier, candidate, weight) "
            "VALUES ('gen_empty', 'general', 'low', 'general', 1)"
        )
    with pytest.raises(ResolveError, match="gen_empty are weighted but hold no train tokens"):
        resolve_mixture(Mixture("m", "domain", {"general": 1.0}), corpus_copy, 1000)
