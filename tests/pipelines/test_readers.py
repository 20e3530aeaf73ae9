"""Reader tests: compressed files cut mid-stream keep the complete lines before the cut."""

from __future__ import annotations

import gzip
import io
import json

import zstandard

from corpus import parse_recipe
from pipelines.readers import SourceFormat, SourceReader, list_units


def _lines(n: int) -> list[bytes]:
    return [
        json.dumps({"id": f"r{i}", "text": f"record {i}: café π 数学, line {i} of the file"}).encode() + b"\n"
        for i in range(n)
    ]


def _read(tmp_path, pattern: str) -> tuple[list[str], dict[str, int]]:
    recipe = parse_recipe(
        {
            "name": "r",
            "tokenizer": {"train": {"vocab_size": 300}},
            "sources": [
                {
                    "name": "w",
                    "domain": "general",
                    "tier": "high",
                    "format": "jsonl",
                    "id_field": "id",
                    "location": f"{tmp_path}/{pattern}",
                }
            ],
        }
    )
    units, _ = list_units(recipe)
    reader = SourceReader(units, {"w": SourceFormat.of(recipe.sources[0])})
    ids = [d.id for d in reader.run(None, 0, 1)]
    drops = {k.split("|drop|")[1]: v.total for k, v in reader.stats.stats.items() if "|drop|" in k}
    return ids, drops


def _gzip_cut_in_line_6(lines: list[bytes]) -> bytes:
    """A gzip of all lines, cut where its decompressed bytes end half-way through line 6."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as g:
        g.write(b"".join(lines[:5]) + lines[5][:20])
        g.flush()  # a sync flush: the compressed bytes so far decode to exactly this prefix
        cut = buf.tell()
        g.write(lines[5][20:] + b"".join(lines[6:]))
    return buf.getvalue()[:cut]


def test_truncated_gzip_keeps_complete_lines(tmp_path):
    (tmp_path / "a.jsonl.gz").write_bytes(_gzip_cut_in_line_6(_lines(8)))
    ids, drops = _read(tmp_path, "*.jsonl.gz")
    assert ids == [f"w/r{i}" for i in range(5)]  # the 5 full lines; the half 6th line is not a record
    assert drops == {"truncated_gzip": 1}  # the file counted once as truncated, not as malformed JSON


def test_truncated_zstd_keeps_complete_blocks(tmp_path):
    lines = _lines(8)
    buf = io.BytesIO()
    w = zstandard.ZstdCompressor().stream_writer(buf, closefd=False)
    w.write(b"".join(lines[:5]) + lines[5][:20])
    w.flush(zstandard.FLUSH_BLOCK)  # zstd decodes whole blocks: the cut falls in the next one
    cut = buf.tell()
    w.write(lines[5][20:] + b"".join(lines[6:]))
    w.close()
    (tmp_path / "a.jsonl.zst").write_bytes(buf.getvalue()[: cut + 5])
    ids, drops = _read(tmp_path, "*.jsonl.zst")
    assert ids == [f"w/r{i}" for i in range(5)]
    assert drops == {"truncated_zstd": 1}


def test_whole_and_multi_member_gzip_read_fully(tmp_path):
    lines = _lines(8)
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(b"".join(lines[:3])) + gzip.compress(b"".join(lines[3:])))
    ids, drops = _read(tmp_path, "*.jsonl.gz")
    assert ids == [f"w/r{i}" for i in range(8)] and drops == {}
