"""Resumability: a crashed task (tmp file left, shard lost, completion missing) reruns to identical outputs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pipeline_inputs import run_build, write_recipe_of

from manifests import open_manifest


def _files(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in ("shards", "validation", "tokenizer")
        for p in sorted((out / folder).rglob("*"))
        if p.is_file()
    }


def _manifest(out: Path) -> dict[str, list]:
    with open_manifest(out, read_only=True) as con:
        return {
            "shards": con.execute(
                "SELECT path, source, split, n_docs, n_tokens, n_bytes, sha256, tokenizer, config_hash "
                "FROM shards ORDER BY path"
            ).fetchall(),
            "stats": con.execute("SELECT * FROM step_stats ORDER BY ALL").fetchall(),
            "sources": con.execute("SELECT * FROM sources ORDER BY ALL").fetchall(),
            "meta": con.execute("SELECT * FROM meta ORDER BY ALL").fetchall(),
        }


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    recipe = write_recipe_of(root, ("web", "code", "math"))
    out = root / "out"
    run_build(recipe, out)
    return recipe, out, _files(out), _manifest(out)


def test_crash_midway_then_rerun_is_identical(built):
    recipe, out, files, manifest = built
    # task 1 of the shard stage "crashed": its completion marker is gone, one of its shards was never
    # renamed into place (a tmp file is left) and another is missing
    (out / "logs" / "shard" / "completions" / "00001").unlink()
    shard = sorted((out / "shards").rglob("00001_*.parquet"))[0]
    shard.rename(shard.with_name(f".tmp-deadbeef-{shard.name}"))
    # a prepare task crashed too: its completion and its prepared part are gone
    (out / "logs" / "prepare" / "completions" / "00000").unlink()
    (out / "work" / "prepared" / "00000_00000.parquet").unlink()
    run_build(recipe, out)
    assert _files(out) == files
    assert not list(out.rglob(".tmp-*"))
    assert _manifest(out) == manifest


def test_rerun_of_finished_build_skips_all_work(built):
    recipe, out, files, manifest = built
    before = {p: p.stat().st_mtime_ns for p in (out / "shards").rglob("*.parquet")}
    run_build(recipe, out)
    assert {p: p.stat().st_mtime_ns for p in (out / "shards").rglob("*.parquet")} == before
    assert _manifest(out) == manifest


def test_register_stage_runs_on_every_build(built):
    """Registration is a stage with a completion marker, yet a rerun must write the manifest again."""
    recipe, out, files, manifest = built
    assert (out / "logs" / "register" / "completions" / "00000").exists()  # it ran as a datatrove task
    (out / "manifest.duckdb").unlink()
    run_build(recipe, out)
    assert _manifest(out) == manifest and _files(out) == files


def test_other_settings_refuse_the_folder(built):
    from pipelines.build_config import BuildError

    recipe, out, _, _ = built
    with pytest.raises(BuildError, match="other settings"):
        run_build(recipe, out, limit=5)
