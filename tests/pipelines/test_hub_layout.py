"""Sources laid out as on the Hub (datasets/<org>/<name>/data/**) read through the one reader code path.

A local folder of that layout stands in for the Hub; the hf:// test hands the same tree to fsspec's
HfFileSystem by patching its file methods onto the local folder, so nothing touches the network.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from huggingface_hub import HfFileSystem

from corpus import parse_recipe
from pipelines.readers import SourceFormat, SourceReader, list_units


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


@pytest.fixture
def hub_tree(tmp_path) -> tuple[Path, dict[str, list[str]]]:
    """<tmp>/datasets/org/name with data/ in nested folders and mixed extensions; {relative file: texts}."""
    repo = tmp_path / "datasets" / "org" / "name"
    data = repo / "data"
    files: dict[str, list[str]] = {}

    def texts(rel: str, n: int) -> list[str]:
        files[rel] = [f"Dokument {rel} Nr. {i}: Grüße aus Zürich, {i * 3} Äpfel." for i in range(n)]
        return files[rel]

    for rel in ("train/part-00000.parquet", "train/2024/06/part-00001.parquet"):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"text": texts(rel, 4)}), data / rel)
    (data / "train/2024/07").mkdir(parents=True)
    (data / "train/2024/07/shard.jsonl.zst").write_bytes(
        zstandard.ZstdCompressor().compress(_jsonl([{"text": t} for t in texts("train/2024/07/shard.jsonl.zst", 3)]))
    )
    (data / "extra").mkdir()
    (data / "extra/dump.json.gz").write_bytes(
        gzip.compress(_jsonl([{"text": t} for t in texts("extra/dump.json.gz", 2)]))
    )
    (data / "top.jsonl").write_bytes(_jsonl([{"text": t} for t in texts("top.jsonl", 2)]))
    # what a Hub snapshot also holds: a card, git attributes, huggingface_hub's download metadata
    (repo / "README.md").write_text("---\nlicense: odc-by\n---\n")
    (repo / ".gitattributes").write_text("*.parquet filter=lfs\n")
    (data / ".cache/huggingface/download/train").mkdir(parents=True)
    (data / ".cache/huggingface/download/train/part-00000.parquet.metadata").write_text("sha\n")
    (data / ".cache/huggingface/download/train/stale.jsonl").write_bytes(_jsonl([{"text": "hidden"}]))
    return repo, files


def _read(location: str, fmt: str = "parquet") -> tuple[list, list[tuple[str, str]]]:
    recipe = parse_recipe(
        {
            "name": "r",
            "tokenizer": {"train": {"vocab_size": 300}},
            "sources": [{"name": "web", "domain": "general", "tier": "high", "format": fmt, "location": location}],
        },
        file="r.yaml",
    )
    units, missing = list_units(recipe)
    assert missing == {}
    reader = SourceReader(units, {"web": SourceFormat.of(recipe.source("web"))})
    return units, [(d.id, d.text) for d in reader.run()]


def test_a_local_hub_folder_reads_every_data_file_by_its_own_suffix(hub_tree):
    repo, files = hub_tree
    units, docs = _read(str(repo / "data"))  # the source says parquet; the jsonl files are read as jsonl
    assert sorted(u.rel for u in units) == sorted(files)
    assert sorted(t for _, t in docs) == sorted(t for ts in files.values() for t in ts)
    assert len({i for i, _ in docs}) == len(docs)  # ids from the path below the folder and the row
    assert ("web/train/2024/06/part-00001.parquet:2", files["train/2024/06/part-00001.parquet"][2]) in docs
    # a glob of the Hub's form picks the parquet files at every depth
    units, docs = _read(f"{repo}/data/**/*.parquet")
    assert sorted(u.rel for u in units) == ["train/2024/06/part-00001.parquet", "train/part-00000.parquet"]
    assert len(docs) == 8


def test_hf_urls_go_to_hf_filesystem_unchanged(hub_tree, monkeypatch):
    repo, files = hub_tree
    root = str(repo.parent.parent.parent)  # the folder holding datasets/
    local = fsspec.filesystem("file")
    calls: list[tuple[str, str]] = []

    def to_local(name: str, path: str) -> str:
        calls.append((name, path))
        assert path.startswith("datasets/org/name/"), path  # hf:// stripped, nothing else changed
        return f"{root}/{path}"

    def back(p: str) -> str:
        return p[len(root) + 1 :]

    def glob(self, path, **kw):
        found = local.glob(to_local("glob", path), **kw)
        return {back(k): v for k, v in found.items()} if isinstance(found, dict) else [back(p) for p in found]

    monkeypatch.setattr(HfFileSystem, "glob", glob)
    monkeypatch.setattr(
        HfFileSystem, "find", lambda self, path, **kw: [back(p) for p in local.find(to_local("find", path), **kw)]
    )
    monkeypatch.setattr(HfFileSystem, "isdir", lambda self, path: local.isdir(to_local("isdir", path)))
    monkeypatch.setattr(HfFileSystem, "isfile", lambda self, path: local.isfile(to_local("isfile", path)))
    monkeypatch.setattr(
        HfFileSystem, "_open", lambda self, path, mode="rb", **kw: local.open(to_local("open", path), mode)
    )

    local_units, local_docs = _read(str(repo / "data"))
    units, docs = _read("hf://datasets/org/name/data")
    assert [u.url for u in units] == [f"hf://datasets/org/name/data/{u.rel}" for u in local_units]
    assert docs == local_docs  # the same ids and texts as the local folder
    assert ("isdir", "datasets/org/name/data") in calls
    assert {p for n, p in calls if n == "open"} == {f"datasets/org/name/data/{rel}" for rel in files}
    units, docs = _read("hf://datasets/org/name/data/**/*.parquet")
    assert ("glob", "datasets/org/name/data/**/*.parquet") in calls
    assert len(units) == 2 and len(docs) == 8
