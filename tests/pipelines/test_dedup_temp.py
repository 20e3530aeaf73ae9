"""Dedup's own files are written through corpus.atomic: a failed write leaves nothing behind."""

from __future__ import annotations

import fsspec
import pytest

from pipelines.dedup_runs import write_bytes


def test_write_bytes_is_atomic(tmp_path):
    fs = fsspec.filesystem("file")
    path = tmp_path / "runs" / "band" / "00000" / "00001_00000.bin"
    write_bytes(fs, str(path), b"abc")
    assert path.read_bytes() == b"abc" and [p.name for p in path.parent.iterdir()] == [path.name]
    with pytest.raises(TypeError):
        write_bytes(fs, str(path), "not bytes")  # the write fails half-way
    assert path.read_bytes() == b"abc" and [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary
