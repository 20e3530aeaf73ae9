"""The token shard format's one owner: ShardMeta round-trips through a written shard's footer."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests import (
    SHARD_METADATA_KEYS,
    SHARD_SCHEMA,
    ManifestError,
    ShardMeta,
    file_sha256,
    read_shard_record,
    shard_path,
    shard_table,
    write_shard_atomic,
)
from manifests.shardfile import rows_per_group

FULL = ShardMeta(
    source="gen_a",
    split="validation",
    domain="general",
    tier="high",
    candidate="general",
    tokenizer="bpé-π",
    tokenizer_hash="ab12",
    config_hash="cd34",
)


def write(root, meta: ShardMeta, texts=("café au lait", "数据混合")) -> str:
    path = shard_path(root, meta.source, meta.split, 0, 0)
    write_shard_atomic(
        shard_table([f"d{i}" for i in range(len(texts))], list(texts), [[1, 2, 3]] * len(texts), meta), path
    )
    return path


def test_write_returns_the_sha256_of_the_bytes_a_plain_write_gives(tmp_path):
    """Hashing on the way out changes no byte: the shard equals pyarrow writing the table straight to a file."""
    texts = [f"doc {i} café 数据 " * (i % 50) for i in range(3000)]
    table = shard_table([f"d{i}" for i in range(3000)], texts, [list(range(i % 300)) for i in range(3000)], FULL)
    path = shard_path(tmp_path, "s", "train", 0, 0)
    sha = write_shard_atomic(table, path)
    plain = tmp_path / "plain.parquet"
    pq.write_table(table, plain, compression="zstd", row_group_size=rows_per_group(table))
    assert open(path, "rb").read() == plain.read_bytes()
    assert sha == file_sha256(path) == file_sha256(plain)


@pytest.mark.parametrize("meta", [FULL, ShardMeta(source="code_a", domain="code", tier="medium")])
def test_footer_round_trips_through_a_written_shard(tmp_path, meta):
    path = write(tmp_path, meta)
    assert ShardMeta.from_metadata(pq.read_schema(path).metadata, where=path) == meta
    assert pq.read_schema(path).remove_metadata().equals(SHARD_SCHEMA)


def test_every_footer_key_is_a_field_and_none_is_left_out():
    assert tuple(FULL.to_metadata()) == SHARD_METADATA_KEYS  # footer order, every key written
    # the order every build before ShardMeta wrote (build-wide keys, then the shard's): same bytes, same sha256
    assert [k.removeprefix("demix.") for k in FULL.to_metadata()] == [
        "tokenizer", "config_hash", "tokenizer_hash", "source", "split", "domain", "tier", "candidate",
    ]  # fmt: skip
    sparse = ShardMeta(source="s").to_metadata()
    assert sparse == {"demix.source": "s", "demix.split": "train", "demix.candidate": ""}


def test_a_footer_without_split_or_candidate_reads_as_train_and_none():
    meta = ShardMeta.from_metadata({b"demix.source": b"old", b"other.key": b"x"})
    assert meta == ShardMeta(source="old", split="train")


def test_not_a_token_shard_names_the_file(tmp_path):
    path = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"text": ["x"]}), path)
    with pytest.raises(ManifestError, match=r"plain\.parquet: no demix\.source key"):
        ShardMeta.from_metadata(pq.read_schema(path).metadata, where=str(path))
    with pytest.raises(ManifestError, match=r"plain\.parquet: no demix\.source key"):
        read_shard_record(path, tmp_path)


def test_shard_record_reads_the_footer(tmp_path):
    rec = read_shard_record(write(tmp_path, FULL), tmp_path)
    assert (rec.source, rec.split, rec.tokenizer, rec.config_hash, rec.n_docs, rec.n_tokens) == (
        "gen_a",
        "validation",
        "bpé-π",
        "cd34",
        2,
        6,
    )
    assert rec.path == "validation/gen_a/00000_00000.parquet"
