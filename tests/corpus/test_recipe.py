from __future__ import annotations

import copy

import pytest
import yaml

from corpus import RecipeError, load_recipe, parse_recipe

BASE = {
    "name": "t",
    "tokenizer": {"train": {"vocab_size": 512}},
    "stages": [{"name": "1", "target": "10M"}],
    "sources": [
        {"name": "a", "domain": "general", "tier": "high", "location": "data/*.jsonl", "stages": {"1": "6M"}},
        {"name": "b", "domain": "code", "tier": "medium", "location": "code/**/*.py", "format": "text"},
    ],
}


def _load(tmp_path, data):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_recipe(path), path


def test_valid_recipe_loads_with_defaults(tmp_path):
    recipe, _ = _load(tmp_path, BASE)
    a = recipe.source("a")
    assert a.format == "jsonl" and a.filters == "general" and a.candidate == "general_high"
    assert a.stages == {"1": 6_000_000}
    assert recipe.source("b").candidate == "code_medium"
    assert recipe.stage("1").target_tokens == 10_000_000
    assert recipe.config_hash() == _load(tmp_path, BASE)[0].config_hash()


@pytest.mark.parametrize("mutate,expected", [
    (lambda d: d["sources"][1].update(tier="hgh"), "sources[1].tier: 'hgh' is not one of high, medium-high, medium, low"),
    (lambda d: d["sources"][0].update(format="csv"), "sources[0].format: 'csv' is not one of"),
    (lambda d: d["sources"][0].pop("domain"), "sources[0].domain: is required"),
    (lambda d: d["sources"][0].update(colour="red"), "sources[0].colour: unknown key"),
    (lambda d: d["sources"][1].update(name="a"), "sources[1].name: 'a' repeats sources[0].name"),
    (lambda d: d["sources"][0].update(stages={"9": "1B"}), "sources[0].stages.9: unknown stage"),
    (lambda d: d["sources"][0].update(available_tokens="lots"), "sources[0].available_tokens: token amount 'lots': cannot parse"),
    (lambda d: d["stages"][0].update(target="1.5"), "stages[0].target"),
    (lambda d: d.update(tokenizer={"path": "x.json", "hub": "y"}), "tokenizer: give exactly one of"),
    (lambda d: d["sources"][0].update(location="${nope}/x.jsonl"), "sources[0].locations[0]: unknown placeholder"),
    (lambda d: d["sources"][0].update(location="builtin:poetry", format="builtin"), "is not one of builtin:math"),
    (lambda d: d.update(validation_fraction=0.9), "validation_fraction: expected a number in"),
])
def test_bad_recipes_name_file_key_and_value(tmp_path, mutate, expected):
    data = copy.deepcopy(BASE)
    mutate(data)
    with pytest.raises(RecipeError) as err:
        _load(tmp_path, data)
    msg = str(err.value)
    assert msg.startswith(str(tmp_path / "r.yaml")), msg
    assert expected in msg, msg


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(RecipeError, match="invalid YAML"):
        load_recipe(bad)


def test_placeholders_expand(tmp_path):
    import sysconfig
    data = copy.deepcopy(BASE)
    data["sources"][1]["location"] = "${stdlib}/json/*.py"
    recipe, _ = _load(tmp_path, data)
    assert recipe.source("b").locations == (sysconfig.get_paths()["stdlib"] + "/json/*.py",)


def test_demo_recipe_loads():
    recipe = load_recipe("demo")
    assert {s.domain for s in recipe.sources} == {"general", "code", "math"}
    assert recipe.tokenizer.train_vocab_size


def test_demix_corpora_recipe_matches_paper_totals():
    recipe = load_recipe("demix_corpora")
    assert len(recipe.sources) == 36
    assert sum(s.available_tokens for s in recipe.sources) == 13_417 * 10**9
    for stage, total in (("1", 14_388), ("2", 5_999), ("3", 1_996)):
        assert recipe.stage(stage).target_tokens == total * 10**9
        assert sum(s.stages.get(stage, 0) for s in recipe.sources) == total * 10**9
    candidates = {}
    for s in recipe.sources:
        if s.candidate:
            candidates[s.candidate] = candidates.get(s.candidate, 0) + s.available_tokens
    # PAPER.md: the 7 search candidates and their sizes (billions).
    assert {k: v // 10**9 for k, v in candidates.items()} == {
        "general_target": 2236, "math_very_high": 284, "math_high": 69, "math_medium": 100,
        "code_very_high": 51, "code_high": 141, "code_medium": 633}
    fineweb = recipe.source("fineweb_edu")
    assert sum(fineweb.stages.values()) / fineweb.available_tokens == pytest.approx(1216 / 199)


def test_parse_recipe_from_dict_names_pseudo_file():
    with pytest.raises(RecipeError, match=r"^<recipe>: sources: expected a non-empty list"):
        parse_recipe({"name": "x", "tokenizer": {"hub": "a/b"}, "sources": []})
