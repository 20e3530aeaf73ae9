from __future__ import annotations

import copy

import pytest
import yaml

from corpus import RecipeError, load_recipe, parse_recipe
from corpus.recipe import DecontaminationConfig, DedupConfig, LanguageConfig

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


def src(i, **changes):
    return lambda d: d["sources"][i].update(changes)


def top(**changes):
    return lambda d: d.update(changes)


def relocate(locations):
    return lambda d: d["sources"][0].update(locations=locations) or d["sources"][0].pop("location")


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (src(1, tier="hgh"), "sources[1].tier: 'hgh': expected one of high, medium-high, medium, low"),
        (src(0, format="csv"), "sources[0].format: 'csv': expected one of jsonl,"),
        (lambda d: d["sources"][0].pop("domain"), "sources[0].domain: is required"),
        (src(0, colour="red"), "sources[0].colour: unknown key; allowed keys are name, domain"),
        (src(1, name="a"), "sources[1].name: 'a': repeats sources[0].name"),
        (src(1, name="../x"), "sources[1].name: '../x': must use letters, digits"),
        (src(0, stages={"9": "1B"}), "sources[0].stages.9: unknown stage"),
        (src(0, available_tokens="lots"), "sources[0].available_tokens: 'lots': cannot parse"),
        (src(0, available_tokens="1,5T"), "sources[0].available_tokens: '1,5T': a comma may only"),
        (src(0, available_tokens=float("inf")), "sources[0].available_tokens: inf: expected a finite"),
        (src(0, available_tokens="1e400"), "sources[0].available_tokens: '1e400': more than"),
        (src(0, stages={"1": "-1"}), "sources[0].stages.1: '-1': expected a number of tokens >= 0"),
        (lambda d: d["stages"][0].update(target="1.5"), "stages[0].target: '1.5': not a whole number"),
        (lambda d: d["stages"][0].update(target=float("nan")), "stages[0].target: nan: expected a finite"),
        (lambda d: d["stages"].append({"name": "1", "target": "1M"}), "stages[1].name: '1': repeats stages[0].name"),
        (top(tokenizer={"path": "x.json", "hub": "y"}), "tokenizer: give exactly one of"),
        (top(tokenizer={"train": {"vocab_size": 100}}), "tokenizer.train.vocab_size: 100: expected an integer >= 259"),
        (top(tokenizer={"train": {"vocab_size": "512"}}), "tokenizer.train.vocab_size: '512': expected an integer"),
        (
            top(tokenizer={"train": {"vocab_size": 512, "size": 3}}),
            "tokenizer.train.size: unknown key; allowed keys are vocab_size, sample_docs",
        ),
        (src(0, location="${nope}/x.jsonl"), "sources[0].locations[0]: '${nope}/x.jsonl': unknown placeholder"),
        (src(0, location="builtin:poetry", format="builtin"), "'builtin:poetry': expected one of builtin:math"),
        (src(0, location="data/x.csv"), "sources[0].format: cannot infer the format of 'data/x.csv'"),
        (relocate([]), "sources[0].locations: []: expected at least 1 item"),
        (relocate(["a.jsonl", 3]), "sources[0].locations[1]: 3: expected a string"),
        (src(0, weight=-1), "sources[0].weight: -1: expected a number >= 0"),
        (src(0, text_field=""), "sources[0].text_field: '': expected a non-empty string"),
        (src(0, params=["x"]), "sources[0].params: ['x']: expected a mapping"),
        (top(validation_fraction=0.9), "validation_fraction: 0.9: expected a number in [0, 0.5]"),
        (top(colour="red"), "colour: unknown key; allowed keys are name, sources, tokenizer, stages,"),
        # issue 11: sections that went unchecked into their dataclasses
        (top(dedup={"ngram": 0}), "dedup.ngram: 0: expected an integer >= 1"),
        (top(dedup={"threshold": 7}), "dedup.threshold: 7: expected a number in (0, 1]"),
        (top(dedup={"threshold": 0}), "dedup.threshold: 0: expected a number in (0, 1]"),
        (top(dedup={"ngram": "thirteen"}), "dedup.ngram: 'thirteen': expected an integer >= 1"),
        (top(dedup={"ngram": 5.0}), "dedup.ngram: 5.0: expected an integer >= 1"),
        (top(dedup={"exact": 1}), "dedup.exact: 1: expected true or false"),
        (
            top(dedup={"bands": 4}),
            "dedup.bands: unknown key; allowed keys are exact, minhash, num_buckets, "
            "hashes_per_bucket, ngram, threshold",
        ),
        (top(dedup=[1]), "dedup: [1]: expected a mapping with keys exact, minhash"),
        (top(decontamination={"enabled": "no"}), "decontamination.enabled: 'no': expected true or false"),
        (top(decontamination={"ngram": -3}), "decontamination.ngram: -3: expected an integer >= 1"),
        (top(decontamination={"extra_paths": [1]}), "decontamination.extra_paths[0]: 1: expected a string"),
        (top(language={"languages": []}), "language.languages: []: expected at least 1 item"),
        (top(language={"threshold": 1.5}), "language.threshold: 1.5: expected a number in [0, 1]"),
        (top(language={"threshold": ".nan"}), "language.threshold: '.nan': expected a number in [0, 1]"),
    ],
)
def test_bad_recipes_name_file_key_and_value(tmp_path, mutate, expected):
    data = copy.deepcopy(BASE)
    mutate(data)
    with pytest.raises(RecipeError) as err:
        _load(tmp_path, data)
    msg = str(err.value)
    assert msg.startswith(str(tmp_path / "r.yaml")), msg
    assert expected in msg, msg


def test_one_string_is_a_one_item_list_never_characters(tmp_path):
    data = copy.deepcopy(BASE)
    data["decontamination"] = {"extra_paths": "${recipe_dir}/b.jsonl"}
    data["language"] = {"languages": "en"}
    recipe, _ = _load(tmp_path, data)
    assert recipe.decontamination.extra_paths == (str(tmp_path / "b.jsonl"),)
    assert recipe.language.languages == ("en",)


def test_sections_keep_their_values_and_yaml_forms(tmp_path):
    data = copy.deepcopy(BASE)
    data["dedup"] = {"ngram": 7, "threshold": 1, "minhash": False}
    data["decontamination"] = {"enabled": False, "extra_paths": ["a.jsonl", "b.jsonl"]}
    data["language"] = {"threshold": "5e-1", "languages": ["en", "de"]}  # PyYAML reads 5e-1 as a string
    data["stages"] = [{"name": 1, "target": "1,500M"}]  # YAML reads `name: 1` as an int
    data["sources"][0]["stages"] = {1: "6M"}
    data["sources"][0]["candidate"] = None
    recipe, _ = _load(tmp_path, data)
    assert recipe.dedup.ngram == 7 and recipe.dedup.threshold == 1.0 and recipe.dedup.minhash is False
    assert recipe.dedup.exact is True and recipe.dedup.num_buckets == 20  # defaults kept
    assert recipe.decontamination.enabled is False and recipe.decontamination.extra_paths == ("a.jsonl", "b.jsonl")
    assert recipe.language.threshold == 0.5 and recipe.language.languages == ("en", "de")
    assert recipe.stage("1").target_tokens == 1_500_000_000 and recipe.source("a").stages == {"1": 6_000_000}
    assert recipe.source("a").candidate is None


def test_empty_sections_mean_defaults(tmp_path):
    data = copy.deepcopy(BASE)
    data.update(dedup=None, decontamination={}, language=None)
    recipe, _ = _load(tmp_path, data)
    assert recipe.dedup == DedupConfig() and recipe.decontamination == DecontaminationConfig()
    assert recipe.language == LanguageConfig()


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(RecipeError, match="invalid YAML"):
        load_recipe(bad)
    with pytest.raises(RecipeError, match="invalid YAML at line 1") as err:
        load_recipe(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(RecipeError, match="cannot read the recipe"):
        load_recipe(tmp_path)  # a folder
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9".encode("latin-1"))
    with pytest.raises(RecipeError, match="latin1.yaml: cannot read the recipe"):
        load_recipe(tmp_path / "latin1.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(RecipeError, match=r"list.yaml: <top>: \['a', 'b'\]: expected a mapping with keys name,"):
        load_recipe(tmp_path / "list.yaml")


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
    # docs/method.md: the 7 search candidates and their sizes (billions).
    assert {k: v // 10**9 for k, v in candidates.items()} == {
        "general_target": 2236,
        "math_very_high": 284,
        "math_high": 69,
        "math_medium": 100,
        "code_very_high": 51,
        "code_high": 141,
        "code_medium": 633,
    }
    fineweb = recipe.source("fineweb_edu")
    assert sum(fineweb.stages.values()) / fineweb.available_tokens == pytest.approx(1216 / 199)


def test_parse_recipe_from_dict_names_pseudo_file():
    with pytest.raises(RecipeError, match=r"^<recipe>: sources: \[\]: expected a non-empty list"):
        parse_recipe({"name": "x", "tokenizer": {"hub": "a/b"}, "sources": []})


def test_source_url_is_an_optional_checked_link_outside_the_config_hash(tmp_path):
    with_url = copy.deepcopy(BASE)
    with_url["sources"][0]["url"] = "https://huggingface.co/datasets/HuggingFaceFW/fineweb-edu"
    recipe, _ = _load(tmp_path, with_url)
    assert recipe.source("a").url == "https://huggingface.co/datasets/HuggingFaceFW/fineweb-edu"
    assert recipe.source("b").url is None
    assert recipe.config_hash() == _load(tmp_path, BASE)[0].config_hash()  # a link rebuilds nothing
    with_url["sources"][1]["url"] = "huggingface.co/datasets/x"
    with pytest.raises(
        RecipeError, match=r"r\.yaml: sources\[1\]\.url: 'huggingface\.co/datasets/x': expected an http"
    ):
        _load(tmp_path, with_url)
    corpora = load_recipe("demix_corpora")
    assert corpora.source("fineweb_edu").url == "https://huggingface.co/datasets/HuggingFaceFW/fineweb-edu"
    assert corpora.source("web_crawl_en").url is None  # unpublished: no link is better than a guessed one


def test_dedup_scope_confirm_and_memory_budget():
    from corpus import parse_recipe

    base = {
        "name": "r",
        "tokenizer": {"train": {"vocab_size": 384}},
        "sources": [
            {"name": "a", "domain": "general", "tier": "high", "location": "builtin:math", "format": "builtin"}
        ],
    }
    r = parse_recipe({**base, "dedup": {"scope": "corpus", "confirm": False, "max_memory_mb": 64}}, file="r.yaml")
    assert (r.dedup.scope, r.dedup.confirm, r.dedup.max_memory_mb) == ("corpus", False, 64)
    with pytest.raises(RecipeError, match=r"r.yaml: dedup.scope: 'everything'"):
        parse_recipe({**base, "dedup": {"scope": "everything"}}, file="r.yaml")
    with pytest.raises(RecipeError, match=r"dedup.max_memory_mb: 0"):
        parse_recipe({**base, "dedup": {"max_memory_mb": 0}}, file="r.yaml")
    # the memory budget changes how dedup runs, not what it writes; the scope changes what it writes
    small = parse_recipe({**base, "dedup": {"max_memory_mb": 64}}, file="r.yaml")
    assert small.config_hash() == parse_recipe(base, file="r.yaml").config_hash() != r.config_hash()
