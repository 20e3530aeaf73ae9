"""read_corpus_meta: the manifest's meta table as one typed record, with one error for a missing key."""

from __future__ import annotations

import pytest

from manifests import CorpusMeta, ManifestError, open_manifest, read_corpus_meta, set_meta
from manifests.schema import SCHEMA_VERSION


def test_tiny_corpus_meta_is_typed(tiny_corpus):
    meta = read_corpus_meta(tiny_corpus, "eos_id", "vocab_size", "tokenizer_path")
    assert meta.eos_id == 0 and isinstance(meta.vocab_size, int) and meta.vocab_size > 256
    assert (meta.tokenizer_path, meta.tokenizer_name, meta.recipe_name) == ("tokenizer", "tiny-bpe", "tiny")
    assert meta.schema_version == SCHEMA_VERSION and meta.extra == {}


def test_write_and_read_back_equal_with_an_open_connection(tmp_path):
    meta = CorpusMeta(
        tokenizer_path="tok",
        tokenizer_name="bpé π",
        eos_token="</s>",
        eos_id=2,
        vocab_size=384,
        recipe_name="r",
        config_hash="h",
        extra={"recipe": '{"note": "漢"}'},
    )
    with open_manifest(tmp_path) as con:
        set_meta(con, meta.to_values())
        back = read_corpus_meta(con)  # a writer's own connection: no second (read-only) open
    assert back == CorpusMeta(**{**meta.__dict__, "schema_version": SCHEMA_VERSION})
    assert read_corpus_meta(tmp_path) == back


@pytest.mark.parametrize("stored", [None, "null", "", "None"])
def test_every_spelling_of_no_eos_reads_as_none(tmp_path, stored):
    with open_manifest(tmp_path) as con:
        set_meta(con, {"vocab_size": 300})
        con.execute("INSERT INTO meta VALUES ('eos_id', ?)", [stored])
    assert read_corpus_meta(tmp_path).eos_id is None
    with pytest.raises(ManifestError, match=r"manifest\.duckdb: meta\.eos_id: missing"):
        read_corpus_meta(tmp_path, "vocab_size", "eos_id")


def test_missing_key_and_bad_integer_name_the_key(tmp_path):
    with open_manifest(tmp_path) as con:
        set_meta(con, {"eos_id": 0, "vocab_size": "many"})
    with pytest.raises(ManifestError, match=r"manifest\.duckdb: meta\.vocab_size: 'many' is not an integer"):
        read_corpus_meta(tmp_path)
    with open_manifest(tmp_path) as con:
        set_meta(con, {"vocab_size": 300})
    with pytest.raises(ManifestError, match=r"meta\.tokenizer_path: missing"):
        read_corpus_meta(tmp_path, "eos_id", "tokenizer_path")
    assert read_corpus_meta(tmp_path, "eos_id", "vocab_size").tokenizer_path is None  # not required: None
