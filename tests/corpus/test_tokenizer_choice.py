"""A pretrained tokenizer as a recipe choice (local folder, hf:// URL, Hub id) and the bounded BPE sample.

Every tokenizer folder is made here with the library's own train_bpe/save_tokenizer; nothing downloads.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import fsspec
import pytest
from huggingface_hub import constants as hf_constants

from corpus import RecipeError, parse_recipe
from corpus.recipe import DedupConfig
from corpus.tokenizer import save_tokenizer, tokenizer_hash, train_bpe
from pipelines import build_tokenizer
from pipelines.build_tokenizer import prepare_tokenizer, training_sample
from pipelines.dedup import DedupSignature, PreparedWriter
from pipelines.readers import ListReader

SOURCE = {"name": "a", "domain": "general", "tier": "high", "location": "builtin:math", "format": "builtin"}
TEXTS = [f"Le café numéro {i} sert {i * 7} tasses, naïve Zürich {i % 13}.\n" for i in range(300)]


@pytest.fixture(scope="module")
def tok_folder(tmp_path_factory) -> Path:
    """A Hugging Face tokenizer folder whose tokenizer_config.json names a non-default eos token."""
    folder = tmp_path_factory.mktemp("tok") / "my-tok"
    save_tokenizer(train_bpe(TEXTS, 300, eos_token="</doc>"), folder, eos_token="</doc>")
    return folder


def _recipe(tokenizer: dict, where: Path):
    return parse_recipe({"name": "r", "tokenizer": tokenizer, "sources": [SOURCE]}, file="r.yaml", recipe_dir=where)


def test_local_folder_takes_eos_from_its_config_and_its_hash_enters_the_config_hash(tok_folder, tmp_path):
    r = _recipe({"path": str(tok_folder)}, tmp_path)
    assert (r.tokenizer.path, r.tokenizer.eos_token, r.tokenizer.display_name) == (str(tok_folder), "</doc>", "my-tok")
    assert r.tokenizer.file_hash == tokenizer_hash(tok_folder)
    # relative to the recipe's folder, and the tokenizer.json file itself, name the same tokenizer
    rel = _recipe({"path": f"../{tok_folder.parent.name}/my-tok/tokenizer.json"}, tok_folder.parent.parent / "x")
    assert rel.tokenizer.file_hash == r.tokenizer.file_hash and rel.tokenizer.eos_token == "</doc>"
    other = tmp_path / "other"
    save_tokenizer(train_bpe(TEXTS[::2], 290, eos_token="</doc>"), other, eos_token="</doc>")
    assert _recipe({"path": str(other)}, tmp_path).config_hash() != r.config_hash()  # another vocabulary rebuilds


def test_missing_tokenizer_json_or_eos_outside_the_vocabulary_is_refused_naming_key_and_file(tok_folder, tmp_path):
    empty = tmp_path / "empty-tok"
    empty.mkdir()
    with pytest.raises(
        RecipeError, match=rf"^r\.yaml: tokenizer\.path: '{empty}': {empty}/tokenizer\.json: no tokenizer\.json"
    ):
        _recipe({"path": str(empty)}, tmp_path)
    with pytest.raises(
        RecipeError,
        match=rf"^r\.yaml: tokenizer\.eos_token: '<\|im_end\|>': is not in the vocabulary of "
        rf"{tok_folder}/tokenizer\.json",
    ):
        _recipe({"path": str(tok_folder), "eos_token": "<|im_end|>"}, tmp_path)
    bad_config = tmp_path / "bad-config"
    save_tokenizer(train_bpe(TEXTS, 300), bad_config)  # vocabulary holds <|endoftext|> only
    cfg = json.loads((bad_config / "tokenizer_config.json").read_text())
    (bad_config / "tokenizer_config.json").write_text(json.dumps({**cfg, "eos_token": {"content": "<eos>"}}))
    with pytest.raises(
        RecipeError, match=r"tokenizer\.eos_token: '<eos>': \(the eos_token of .*bad-config/tokenizer_config"
    ):
        _recipe({"path": str(bad_config)}, tmp_path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "tokenizer.json").write_text("{not json")
    with pytest.raises(
        RecipeError, match=r"tokenizer\.path: .*broken/tokenizer\.json: not a tokenizers tokenizer\.json"
    ):
        _recipe({"path": str(tmp_path / "broken")}, tmp_path)
    with pytest.raises(RecipeError, match=r"tokenizer\.revision: applies to tokenizer\.hub only"):
        _recipe({"path": str(tok_folder), "revision": "main"}, tmp_path)
    with pytest.raises(RecipeError, match=r"tokenizer\.hub: 'not a repo': expected a Hub repository id"):
        _recipe({"hub": "not a repo"}, tmp_path)


def test_prepared_tokenizer_keeps_the_published_bytes(tok_folder, tmp_path):
    r = _recipe({"path": str(tok_folder)}, tmp_path)
    folder = Path(prepare_tokenizer(r, str(tmp_path / "out")))  # a str: a path or URL
    assert (folder / "tokenizer.json").read_bytes() == (tok_folder / "tokenizer.json").read_bytes()
    assert tokenizer_hash(folder) == r.tokenizer.file_hash
    assert json.loads((folder / "tokenizer_config.json").read_text())["eos_token"] == "</doc>"


def test_hf_path_goes_through_fsspec_hf_filesystem_unchanged(tok_folder, tmp_path, monkeypatch):
    from huggingface_hub import HfFileSystem

    seen: list[str] = []

    def local_open(self, path, mode="rb", **kw):  # HfFileSystem receives the path with hf:// stripped
        seen.append(path)
        return fsspec.filesystem("file").open(str(tok_folder / path.split("/", 2)[2]), mode)

    monkeypatch.setattr(HfFileSystem, "_open", local_open)
    r = _recipe({"path": "hf://org/my-tok"}, tmp_path)  # a URL is not read at load: no network at recipe time
    assert r.tokenizer.path == "hf://org/my-tok" and r.tokenizer.file_hash is None
    with pytest.raises(RecipeError, match=r"tokenizer\.eos_token: '<\|endoftext\|>' is not in the vocabulary"):
        prepare_tokenizer(r, str(tmp_path / "out0"))  # the default eos, checked once fetched
    r = _recipe({"path": "hf://org/my-tok", "eos_token": "</doc>"}, tmp_path)
    folder = prepare_tokenizer(r, str(tmp_path / "out"))
    assert "org/my-tok/tokenizer.json" in seen
    assert tokenizer_hash(folder) == tokenizer_hash(tok_folder)


def test_hub_id_resolves_through_hf_hub_download_from_the_local_cache(tok_folder, tmp_path, monkeypatch):
    commit = "0" * 39 + "1"
    repo = tmp_path / "hub" / "models--org--my-tok"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "tokenizer.json").write_bytes((tok_folder / "tokenizer.json").read_bytes())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # any request would fail: the cached snapshot must answer
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    r = _recipe({"hub": "org/my-tok", "eos_token": "</doc>"}, tmp_path)
    folder = prepare_tokenizer(r, str(tmp_path / "out"))
    assert tokenizer_hash(folder) == tokenizer_hash(tok_folder)  # no tokenizer_config.json: the recipe's eos
    with pytest.raises(RecipeError, match=r"r\.yaml: tokenizer\.hub: hub org/absent: cannot fetch tokenizer\.json"):
        prepare_tokenizer(_recipe({"hub": "org/absent"}, tmp_path), str(tmp_path / "out2"))


def _prepared(folder: Path, n_per_source: int, tasks: int = 2, sources=("web", "code")) -> dict[str, list[str]]:
    """Prepared parts (the library's own writer, `tasks` tasks, small parts) of n documents per source."""
    rng = random.Random(0)
    by_source = {
        s: [
            f"{s} ß{i} " + " ".join(rng.choice("abcdefgh") * rng.randint(1, 9) for _ in range(20))
            for i in range(n_per_source)
        ]
        for s in sources
    }
    for rank in range(tasks):
        docs = [d for s in sources for d in ListReader(by_source[s], s).run(rank=rank, world_size=tasks)]
        list(PreparedWriter(str(folder), part_docs=40).run(DedupSignature(DedupConfig()).run(iter(docs)), rank=rank))
    return by_source


def test_bpe_trains_on_a_bounded_seeded_sample(tmp_path, monkeypatch):
    by_source = _prepared(tmp_path / "prepared", 200)
    seen: list[list[str]] = []
    real = build_tokenizer.train_bpe
    monkeypatch.setattr(build_tokenizer, "train_bpe", lambda texts, **kw: seen.append(list(texts)) or real(texts, **kw))
    base = {"train": {"vocab_size": 300, "sample_docs": 60, "seed": 1}}
    r = _recipe(base, tmp_path)
    prepare_tokenizer(r, str(tmp_path / "out"), str(tmp_path / "prepared"))
    texts = seen[-1]
    assert len(texts) == 60  # of 400 kept documents
    assert sum(t.startswith("web") for t in texts) == sum(t.startswith("code") for t in texts) == 30
    all_texts = {t for v in by_source.values() for t in v}
    assert set(texts) <= all_texts
    # the same seed draws the same documents, whatever the task split; another seed others
    again = training_sample(str(tmp_path / "prepared"), None, 60, seed=1)
    assert again == texts
    assert training_sample(str(tmp_path / "prepared"), None, 60, seed=2) != texts
    _prepared(tmp_path / "one_task", 200, tasks=1)  # the same documents, parted otherwise
    assert training_sample(str(tmp_path / "one_task"), None, 60, seed=1) == texts
    # the byte budget binds: every source is cut alike, the total stays under it
    budget = sum(len(t.encode()) for t in texts) // 3
    capped = training_sample(str(tmp_path / "prepared"), None, 60, max_bytes=budget, seed=1)
    assert 0 < len(capped) < 60 and sum(len(t.encode()) for t in capped) <= budget
    assert abs(sum(t.startswith("web") for t in capped) - sum(t.startswith("code") for t in capped)) <= 1
    r2 = _recipe({"train": {**base["train"], "sample_bytes": budget}}, tmp_path)
    prepare_tokenizer(r2, str(tmp_path / "out2"), str(tmp_path / "prepared"))
    assert seen[-1] == capped
    assert r2.config_hash() != r.config_hash()
