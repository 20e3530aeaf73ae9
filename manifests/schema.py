"""The DuckDB manifest schema: shards, sources, step stats, mixtures, plans, and summary views."""

from __future__ import annotations

SCHEMA_VERSION = "1"

# Paths in `shards.path` are relative to the folder that holds manifest.duckdb, in POSIX form, so a
# built corpus can be moved or synced to object storage without rewriting its manifest.
TABLES = {
    "meta": """
        CREATE TABLE IF NOT EXISTS meta (
            key VARCHAR PRIMARY KEY,
            value VARCHAR
        )""",
    "sources": """
        CREATE TABLE IF NOT EXISTS sources (
            source VARCHAR PRIMARY KEY,
            domain VARCHAR NOT NULL,
            tier VARCHAR NOT NULL,
            candidate VARCHAR,
            uri VARCHAR,
            license VARCHAR,
            weight DOUBLE,
            title VARCHAR
        )""",
    "shards": """
        CREATE TABLE IF NOT EXISTS shards (
            path VARCHAR PRIMARY KEY,
            source VARCHAR NOT NULL,
            split VARCHAR NOT NULL,
            n_docs BIGINT NOT NULL,
            n_tokens BIGINT NOT NULL,
            n_bytes BIGINT NOT NULL,
            sha256 VARCHAR NOT NULL,
            tokenizer VARCHAR,
            config_hash VARCHAR,
            created_at TIMESTAMP
        )""",
    "step_stats": """
        CREATE TABLE IF NOT EXISTS step_stats (
            source VARCHAR NOT NULL,
            step VARCHAR NOT NULL,
            docs_in BIGINT,
            docs_out BIGINT,
            reason VARCHAR NOT NULL,
            count BIGINT,
            PRIMARY KEY (source, step, reason)
        )""",
    "mixtures": """
        CREATE TABLE IF NOT EXISTS mixtures (
            name VARCHAR PRIMARY KEY,
            level VARCHAR NOT NULL,
            ratios JSON NOT NULL,
            method VARCHAR,
            score DOUBLE,
            created_at TIMESTAMP
        )""",
    "plans": """
        CREATE TABLE IF NOT EXISTS plans (
            plan_id VARCHAR NOT NULL,
            source VARCHAR NOT NULL,
            allotted_tokens BIGINT NOT NULL,
            available_tokens BIGINT NOT NULL,
            epochs DOUBLE NOT NULL,
            PRIMARY KEY (plan_id, source)
        )""",
}

VIEWS = {
    "tokens_by_source": """
        CREATE OR REPLACE VIEW tokens_by_source AS
        SELECT s.source, src.domain, src.tier, src.candidate,
               count(*) AS n_shards, sum(s.n_docs) AS n_docs, sum(s.n_tokens) AS n_tokens,
               sum(s.n_bytes) AS n_bytes
        FROM shards s LEFT JOIN sources src USING (source)
        WHERE s.split = 'train'
        GROUP BY ALL ORDER BY s.source""",
    "tokens_by_domain": """
        CREATE OR REPLACE VIEW tokens_by_domain AS
        SELECT src.domain, count(DISTINCT s.source) AS n_sources, sum(s.n_docs) AS n_docs,
               sum(s.n_tokens) AS n_tokens, sum(s.n_bytes) AS n_bytes
        FROM shards s LEFT JOIN sources src USING (source)
        WHERE s.split = 'train'
        GROUP BY ALL ORDER BY src.domain""",
    "tokens_by_tier": """
        CREATE OR REPLACE VIEW tokens_by_tier AS
        SELECT src.domain, src.tier, count(DISTINCT s.source) AS n_sources, sum(s.n_docs) AS n_docs,
               sum(s.n_tokens) AS n_tokens, sum(s.n_bytes) AS n_bytes
        FROM shards s LEFT JOIN sources src USING (source)
        WHERE s.split = 'train'
        GROUP BY ALL ORDER BY src.domain, src.tier""",
    "tokens_by_candidate": """
        CREATE OR REPLACE VIEW tokens_by_candidate AS
        SELECT src.candidate, count(DISTINCT s.source) AS n_sources, sum(s.n_docs) AS n_docs,
               sum(s.n_tokens) AS n_tokens
        FROM shards s LEFT JOIN sources src USING (source)
        WHERE s.split = 'train' AND src.candidate IS NOT NULL
        GROUP BY ALL ORDER BY src.candidate""",
}

# The folders under a corpus root that hold token shards (train and validation splits).
SHARD_FOLDERS = ("shards", "validation")


def create_schema(con) -> None:
    """Create every table and view if missing (idempotent)."""
    for ddl in TABLES.values():
        con.execute(ddl)
    for ddl in VIEWS.values():
        con.execute(ddl)
    con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", [SCHEMA_VERSION])
