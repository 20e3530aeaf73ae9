"""datatrove pipelines that build a recipe into token shards and a DuckDB manifest."""

from __future__ import annotations
