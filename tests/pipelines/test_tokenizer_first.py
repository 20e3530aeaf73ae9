"""A pretrained tokenizer is fetched and checked before any work, and written before any task runs."""

from __future__ import annotations

import pytest
from huggingface_hub import constants as hf_constants
from pipeline_inputs import run_build, write_recipe_of

from corpus import RecipeError
from corpus.tokenizer import save_tokenizer, tokenizer_hash, train_bpe

TEXTS = [f"def f{i}(x):\n    return x * {i} + {i % 7}  # web code math\n" for i in range(400)]


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An offline Hub cache holding org/my-tok (any request would fail: only the cache answers)."""
    commit = "0" * 39 + "1"
    repo = tmp_path / "hub" / "models--org--my-tok"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    save_tokenizer(train_bpe(TEXTS, 320, eos_token="</doc>"), snap, eos_token="</doc>")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return snap


def _recipe(tmp_path, tokenizer: dict):
    return write_recipe_of(tmp_path, ("web", "code"), tokenizer=tokenizer)


@pytest.mark.parametrize(
    ("tokenizer", "message"),
    [
        ({"hub": "org/absent"}, r"tokenizer\.hub: hub org/absent: cannot fetch tokenizer\.json"),
        ({"hub": "org/my-tok", "eos_token": "<nope>"}, r"tokenizer\.eos_token: '<nope>' is not in the vocabulary"),
    ],
)
def test_an_unfetchable_tokenizer_stops_the_build_before_any_work(tmp_path, hub_cache, tokenizer, message):
    out = tmp_path / "out"
    with pytest.raises(RecipeError, match=message):
        run_build(_recipe(tmp_path, tokenizer), out)
    assert not out.exists()


def test_the_tokenizer_is_written_before_any_task(tmp_path, hub_cache):
    """A Slurm dry run runs no task: the tokenizer folder there was written by the submitting process."""
    out = tmp_path / "out"
    run_build(
        _recipe(tmp_path, {"hub": "org/my-tok", "eos_token": "</doc>"}), out, executor="slurm", slurm_dry_run=True
    )
    assert tokenizer_hash(out / "tokenizer") == tokenizer_hash(hub_cache)
    assert not (out / "logs" / "prepare" / "completions").exists()  # no task ran
