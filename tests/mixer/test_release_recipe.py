"""Recipe-only release (plan, manifest rows, recipe, card; no data); the card's upstream URLs and processing settings."""

from __future__ import annotations

import dataclasses

import pyarrow.parquet as pq
import pytest
import yaml

from corpus import load_recipe
from manifests import list_shards
from mixer import Plan, resolve_recipe
from mixer.cli import main
from mixer.release import write_release
from mixer.release_recipe import RecipeReleaseError

URLS = {"math_a": "https://example.org/datasets/math-a"}  # code_a has none


@pytest.fixture()
def recipe_and_plan(epoch_plan, tmp_path):
    """A recipe file for the tiny corpus's sources (a URL, settings) and epoch_plan (2 of 4 sources) built from it."""
    raw = {
        "name": "tiny",
        "tokenizer": {"train": {"vocab_size": 384}},
        "dedup": {"num_buckets": 14, "hashes_per_bucket": 8, "threshold": 0.8},
        "decontamination": {"ngram": 11, "min_words": 5},
        "sources": [
            {
                "name": n,
                "domain": d,
                "tier": "high",
                "location": "builtin:math",
                "format": "builtin",
                **({"url": URLS[n]} if n in URLS else {}),
                **({"params": {"filter_params": {"c4": {"min_num_sentences": 2}}}} if n == "math_a" else {}),
            }
            for n, d in (("gen_a", "general"), ("gen_b", "general"), ("code_a", "code"), ("math_a", "math"))
        ],
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    # the plan names the recipe by its config hash: this plan was "built" from this file
    return path, dataclasses.replace(epoch_plan, config_hash=load_recipe(path).config_hash())


def test_recipe_only_writes_plan_manifest_rows_recipe_and_card_and_no_data(recipe_and_plan, tiny_corpus, tmp_path):
    recipe, plan = recipe_and_plan
    out = tmp_path / "rel"
    files = write_release(plan, str(out), recipe=str(recipe), recipe_only=True)
    assert {f.path for f in files} == {
        ".demix-release.json",
        "README.md",
        "plan.json",
        "recipe.yaml",
        "manifest/sources.parquet",
        "manifest/shards.parquet",
        "manifest/step_stats.parquet",
    }
    assert not (out / "data").exists() and not (out / "tokenizer").exists()
    assert Plan.load(out / "plan.json").plan_id == plan.plan_id
    assert (out / "recipe.yaml").read_bytes() == recipe.read_bytes()
    names = {s.source for s in plan.sources}
    assert names == {"math_a", "code_a"}  # two of the corpus's four sources: the export keeps only theirs
    sources = pq.read_table(out / "manifest/sources.parquet")
    assert set(sources.column("source").to_pylist()) == names
    shards = pq.read_table(out / "manifest/shards.parquet")
    expected = {
        sh["path"] for split in ("train", "validation") for sh in list_shards(tiny_corpus, split, sorted(names))
    }
    assert set(shards.column("path").to_pylist()) == expected  # the plan's sources' shards, and only those
    assert set(shards.column("sha256").to_pylist()) >= {sh["sha256"] for s in plan.sources for sh in s.shards}
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert [c["config_name"] for c in header["configs"]] == ["sources", "shards", "step_stats"]
    assert plan.plan_id in card and f"sampler seed {plan.seed}" in card
    assert f"`shards` ({shards.num_rows:,} rows)" in card
    # a rerun of the same release rewrites the small files in place; another plan needs --overwrite
    write_release(plan, str(out), recipe=str(recipe), recipe_only=True)


def test_card_states_upstream_urls_licences_and_the_recipes_settings(recipe_and_plan, tmp_path):
    recipe, plan = recipe_and_plan
    out = tmp_path / "rel"
    write_release(plan, str(out), recipe=str(recipe), mixture_max_tokens=2_000)
    card = (out / "README.md").read_text()
    for s in plan.sources:  # the upstream table: source, title, licence, URL (unknown where the recipe has none)
        assert f"| {s.source} | {s.title} | {s.license} | {URLS.get(s.source, 'unknown')} | {s.domain} |" in card
    assert 'c4": {"min_num_sentences": 2}' in card  # math_a's filter parameters
    assert "14 bands x 8 hashes over 5-word shingles" in card and "Jaccard similarity >= 0.8" in card
    assert "11-word n-gram with HumanEval prompts" in card and "under 5 words" in card


def test_card_says_when_the_recipe_is_not_known(tiny_plan, tmp_path):
    out = tmp_path / "rel"
    write_release(tiny_plan, str(out), mixture_max_tokens=2_000)  # plan.recipe 'tiny' names no file here
    card = (out / "README.md").read_text()
    assert f"The recipe `tiny` (config hash `{tiny_plan.config_hash}`) was not found" in card and "--recipe" in card


def test_a_recipe_that_is_not_the_plans_is_refused(tiny_plan, tmp_path, capsys):
    tiny_plan.save(tmp_path / "plan.json")
    demo = load_recipe("demo")
    with pytest.raises(
        RecipeReleaseError,
        match=rf"demo\.yaml: config hash {demo.config_hash()} is not the plan's "
        rf"{tiny_plan.config_hash}",
    ):
        write_release(tiny_plan, str(tmp_path / "rel"), recipe="corpus/recipes/demo.yaml", recipe_only=True)
    assert not (tmp_path / "rel").exists()
    assert (
        main(
            [
                "release",
                "--plan",
                str(tmp_path / "plan.json"),
                "--out",
                str(tmp_path / "rel"),
                "--recipe-only",
                "--recipe",
                "corpus/recipes/demo.yaml",
            ]
        )
        == 1
    )
    assert "is not the plan's" in capsys.readouterr().err
    assert (
        main(
            [
                "release",
                "--plan",
                str(tmp_path / "plan.json"),
                "--out",
                str(tmp_path / "rel"),
                "--recipe-only",
                "--samples",
                "1K",
            ]
        )
        == 2
    )


def test_recipe_only_release_of_the_22T_demix_corpora_plan(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    plan = resolve_recipe("corpus/recipes/demix_corpora.yaml", 22 * 10**12)  # no corpus: the recipe's own numbers
    out = tmp_path / "rel"
    files = write_release(plan, str(out), recipe_only=True)  # the recipe found from the plan's provenance
    assert sum(f.n_bytes for f in files) < 200_000 and not (out / "data").exists()
    sources = datasets.load_dataset(str(out), "sources", split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert len(sources) == len(plan.sources) == 36
    row = sources[sources["source"].index("fineweb_edu")]
    assert row["license"] == "odc-by" and row["uri"].startswith("hf://datasets/HuggingFaceFW/fineweb-edu")
    assert pq.read_table(out / "manifest/shards.parquet").num_rows == 0  # nothing was built
    card = (out / "README.md").read_text()
    assert "| fineweb_edu | FineWeb-Edu | odc-by | https://huggingface.co/datasets/HuggingFaceFW/fineweb-edu |" in card
    assert "| web_crawl_en | Web Crawl (en) | unknown | unknown |" in card
    assert "20 bands x 13 hashes" in card and "22,000,000,000,000 tokens" in card
