"""The DuckDB manifest of every shard: sources, shards, step stats, mixtures and plans."""

from __future__ import annotations

from manifests.corpus_meta import CorpusMeta, read_corpus_meta
from manifests.manifest import (
    MANIFEST_NAME,
    ManifestError,
    ShardRecord,
    corpus_location,
    corpus_root,
    file_sha256,
    get_meta,
    list_shards,
    list_sources,
    manifest_path,
    open_manifest,
    read_shard_record,
    register_mixture,
    register_plan,
    register_shards,
    register_sources,
    register_step_stats,
    set_meta,
)
from manifests.query import QueryRefused, run_query
from manifests.shardfile import (
    SHARD_METADATA_KEYS,
    SHARD_SCHEMA,
    ShardMeta,
    shard_path,
    shard_table,
    write_shard_atomic,
)

__all__ = [
    "MANIFEST_NAME",
    "ManifestError",
    "SHARD_METADATA_KEYS",
    "ShardRecord",
    "corpus_location",
    "corpus_root",
    "file_sha256",
    "get_meta",
    "list_shards",
    "list_sources",
    "manifest_path",
    "open_manifest",
    "read_shard_record",
    "register_mixture",
    "register_plan",
    "register_shards",
    "register_sources",
    "register_step_stats",
    "set_meta",
    "QueryRefused",
    "run_query",
    "CorpusMeta",
    "read_corpus_meta",
    "SHARD_SCHEMA",
    "ShardMeta",
    "shard_path",
    "shard_table",
    "write_shard_atomic",
]
