"""--out as an fsspec URL: a build into memory:// (in this process) or local:// (worker processes) writes the
same shards, tokenizer and manifest as a local build, verifies, and resumes after a crash."""

from __future__ import annotations

import hashlib
import itertools
import uuid
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from pipeline_inputs import run_build, write_recipe_of

from manifests import ManifestError, open_manifest
from manifests.verify import verify

FOLDERS = ("shards", "validation", "tokenizer")


def _files(url: str) -> dict[str, str]:
    """{path below the corpus: sha256} of every shard, validation shard and tokenizer file at a path or URL."""
    fs, root = fsspec.core.url_to_fs(url)
    fs.invalidate_cache()
    return {
        p[len(root) + 1 :]: hashlib.sha256(fs.cat_file(p)).hexdigest()
        for folder in FOLDERS
        for p in sorted(fs.find(f"{root}/{folder}"))
    }


def _shard_rows(db: str) -> list[tuple]:
    with open_manifest(db, read_only=True) as con:
        return con.execute(
            "SELECT path, source, split, n_docs, n_tokens, n_bytes, sha256, tokenizer, config_hash FROM shards "
            "ORDER BY path"
        ).fetchall()


@pytest.fixture(scope="module")
def local_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote")
    recipe = write_recipe_of(root, ("web", "code", "math"))
    out = root / "local"
    summary = run_build(recipe, out)
    return {"root": root, "recipe": recipe, "out": out, "summary": summary, "files": _files(str(out))}


@pytest.fixture
def memory_out():
    url = f"memory://demix-test-{uuid.uuid4().hex}/corpus"
    yield url
    fs, root = fsspec.core.url_to_fs(url)
    if fs.exists(root):
        fs.rm(root.rsplit("/", 1)[0], recursive=True)


def test_memory_out_builds_the_local_bytes_and_verifies(local_build, memory_out):
    summary = run_build(local_build["recipe"], memory_out)
    fs, root = fsspec.core.url_to_fs(memory_out)
    assert _files(memory_out) == local_build["files"] and local_build["files"]
    assert _shard_rows(memory_out) == _shard_rows(str(local_build["out"]))
    report = verify(memory_out)
    assert report.ok and report.checked == sum(1 for p in local_build["files"] if p.endswith(".parquet"))
    for name in ("build.json", "manifest.duckdb", "logs/build.log", "logs/shard/completions/00001"):
        assert fs.isfile(f"{root}/{name}"), name
    assert fs.isdir(f"{root}/work/prepared")  # the default work folder is <out>/work, there too
    assert summary["out"] == memory_out
    assert summary["train_tokens"] == local_build["summary"]["train_tokens"] > 0
    assert not Path("memory:").exists()  # nothing went to a local folder named after the scheme
    # a changed shard at the URL is found
    shard = next(p for p in sorted(fs.find(f"{root}/shards")))
    fs.pipe_file(shard, fs.cat_file(shard)[:-1] + b"\0")
    assert [p for p, _ in verify(memory_out).changed] == [shard[len(root) + 1 :]]


def test_memory_out_resumes_after_a_crash(local_build, memory_out):
    run_build(local_build["recipe"], memory_out)
    fs, root = fsspec.core.url_to_fs(memory_out)
    fs.pipe_file(f"{root}/logs/build.log", fs.cat_file(f"{root}/logs/build.log") + b"first run's log\n")
    fs.rm(f"{root}/logs/shard/completions/00001")
    lost = sorted(fs.glob(f"{root}/shards/*/00001_*.parquet"))[0]
    fs.mv(lost, lost.replace("/00001_", "/.tmp-deadbeef-00001_"))
    run_build(local_build["recipe"], memory_out)
    assert _files(memory_out) == local_build["files"]
    assert not fs.glob(f"{root}/shards/*/.tmp-*")
    assert verify(memory_out).ok
    assert b"first run's log\n" in fs.cat_file(f"{root}/logs/build.log")  # the rerun appended to it


def test_work_folder_elsewhere(local_build, memory_out, tmp_path):
    run_build(local_build["recipe"], memory_out, work=str(tmp_path / "work"))
    fs, root = fsspec.core.url_to_fs(memory_out)
    assert _files(memory_out) == local_build["files"]
    assert not fs.exists(f"{root}/work") and list((tmp_path / "work" / "prepared").glob("*.parquet"))


def test_local_url_with_worker_processes(local_build, tmp_path):
    """local:// goes through the URL code paths (staged manifest and log, fsspec writes) in forked workers."""
    url = f"local://{tmp_path / 'via-url'}"
    run_build(local_build["recipe"], url, workers=2)
    assert _files(url) == local_build["files"]
    assert verify(url).ok


def test_a_manifest_at_a_url_opens_read_only(memory_out):
    with pytest.raises(ManifestError, match="no manifest here"):
        open_manifest(memory_out, read_only=True)
    with pytest.raises(ManifestError, match="opens read-only"):
        open_manifest(memory_out)


def test_manifests_cli_reads_a_remote_manifest(local_build, memory_out, capsys):
    from manifests.cli import main

    run_build(local_build["recipe"], memory_out)
    assert main(["verify", "--db", memory_out]) == 0
    assert main(["query", "--db", memory_out, "--format", "csv", "SELECT count(*) AS n FROM shards"]) == 0
    out = capsys.readouterr().out
    n = len(_shard_rows(memory_out))
    assert f"n\r\n{n}" in out and f"ok: {n} shards checked" in out
    # the copy's shard files are out of reach: no local file is read by user SQL either
    assert main(["query", "--db", memory_out, "SELECT * FROM read_parquet('/etc/hosts')"]) != 0
    assert main(["rebuild", "--db", memory_out]) != 0
    assert "rebuilt in a local corpus folder" in capsys.readouterr().err


def test_build_corpus_cli_takes_a_url(local_build, memory_out, capsys):
    from pipelines.build_corpus import main

    args = ["--recipe", str(local_build["recipe"]), "--out", memory_out + "/", "--tasks", "2", "--workers", "1"]
    assert main([*args, "--json"]) == 0
    assert _files(memory_out) == local_build["files"]
    assert f'"out": "{memory_out}"' in capsys.readouterr().out
    assert main([*args[:-2], "--workers", "2"]) == 2  # refused before any work, as a usage error
    assert "memory:// lives in this process" in capsys.readouterr().err


def test_memory_out_with_worker_processes_is_refused(local_build, memory_out):
    from pipelines.build_config import BuildError

    with pytest.raises(BuildError, match="memory:// lives in this process"):
        run_build(local_build["recipe"], memory_out, workers=2)
    fs, root = fsspec.core.url_to_fs(memory_out)
    assert not fs.exists(root)


def test_a_plan_over_a_remote_corpus_streams_the_local_sequences(local_build, memory_out, tmp_path, capsys):
    """mixer resolve --db <url> plans over the URL (corpus_root is the URL) and the sampler reads the shards there."""
    from mixer.cli import main as mixer_main
    from mixer.plan import Plan
    from mixer.sampler import Sampler

    run_build(local_build["recipe"], memory_out)
    mixture = tmp_path / "mix.json"
    mixture.write_text('{"name": "m", "level": "domain", "ratios": {"general": 0.5, "code": 0.3, "math": 0.2}}')
    plans = {}
    for name, db in (("local", str(local_build["out"])), ("remote", memory_out)):
        out = tmp_path / f"{name}.json"
        args = ["resolve", "--mixture", str(mixture), "--db", db, "--target", "20K", "--seq-len", "64"]
        assert mixer_main([*args, "--out", str(out)]) == 0
        plans[name] = Plan.load(out)
    assert "plan not recorded in memory://" in capsys.readouterr().err
    assert plans["remote"].corpus_root == memory_out and plans["local"].corpus_root == str(local_build["out"])
    seqs = {k: [s.tolist() for s in itertools.islice(Sampler(p, prefetch=0), 40)] for k, p in plans.items()}
    assert seqs["remote"] == seqs["local"] and len(seqs["local"]) == 40


class ObjectStoreFS(MemoryFileSystem):
    """memory:// with an object store's folders: none of its own, a prefix exists only while it holds a file."""

    protocol = ("objstore",)

    def mkdir(self, path, create_parents=True, **kwargs):
        pass

    def makedirs(self, path, exist_ok=False):
        pass


def test_an_object_store_out_without_empty_folders(local_build):
    """No step may count on a folder it made existing later (the cluster's sort folders, when nothing spilled)."""
    fsspec.register_implementation("objstore", ObjectStoreFS, clobber=True)
    url = f"objstore://demix-test-{uuid.uuid4().hex}/corpus"
    try:
        run_build(local_build["recipe"], url)
        assert _files(url) == local_build["files"]
        assert verify(url).ok
    finally:
        fs, root = fsspec.core.url_to_fs(url)
        if fs.exists(root):
            fs.rm(root.rsplit("/", 1)[0], recursive=True)
