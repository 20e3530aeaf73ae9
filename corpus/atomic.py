"""Atomic file writes: a file appears whole under its final name, or not at all.

Every writer of ours (shards, plans, mixtures, release files, record files) goes through
`atomic_write`, so a killed run never leaves a half file that a rerun or a reader would take for a
finished one. The temporary name is `.tmp-<uuid hex>-<name>` in the target's own folder: same folder,
so the final rename stays on one file system; unique, so two writers of the same file never write
into one temporary; dot-prefixed with one fixed prefix (`TMP_PREFIX`), so cleaners (a rerun of a
shard task) and listers (the release's upload) can recognise and skip leftovers.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import fsspec

TMP_PREFIX = ".tmp-"
"""Prefix of every temporary name `atomic_write` makes (a leftover of a killed writer starts with it)."""


def temp_path(path: str) -> str:
    """A fresh temporary name for ``path``: ``<folder>/.tmp-<uuid hex>-<name>``."""
    parent, name = posixpath.split(path)
    return posixpath.join(parent, f"{TMP_PREFIX}{uuid.uuid4().hex}-{name}")


@contextmanager
def atomic_write(
    path: str | os.PathLike,
    mode: str = "w",
    *,
    fs: fsspec.AbstractFileSystem | None = None,
    fsync: bool = False,
    **open_kwargs: Any,
) -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it to ``path`` when the block ends without error.

    ``path`` is a local path or an fsspec URL (or a path of ``fs`` when given). ``mode`` is ``"w"``
    (text) or ``"wb"`` (binary); ``open_kwargs`` go to ``fs.open`` (e.g. ``encoding``). The folder is
    created when missing. On any exception (a Ctrl-C included) the temporary file is removed and
    ``path`` keeps what it held before. ``fsync=True`` flushes the bytes to disk before the rename
    (local files; a file system without file descriptors skips it).

        with atomic_write("out/plan.json") as f:
            f.write(text)
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode {mode!r}: expected 'w' or 'wb'")
    if fs is None:
        fs, path = fsspec.core.url_to_fs(str(path))
    path = str(path)
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = temp_path(path)
    try:
        with fs.open(tmp, mode, **open_kwargs) as f:
            yield f
            if fsync:
                _fsync(f)
        fs.mv(tmp, path)
    except BaseException:  # a kill (KeyboardInterrupt) included: no temporary is left behind
        if fs.exists(tmp):
            fs.rm(tmp)
        raise


def _fsync(f: IO) -> None:
    f.flush()
    try:
        fd = f.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):  # an object store's file: nothing to sync
        return
    os.fsync(fd)


def write_json_atomic(
    path: str | os.PathLike,
    data: Any,
    *,
    fs: fsspec.AbstractFileSystem | None = None,
    indent: int | None = 2,
    fsync: bool = False,
    sort_keys: bool = False,
) -> None:
    """Write ``data`` as JSON (``indent`` spaces, key order kept unless ``sort_keys``, a final newline) through
    `atomic_write`."""
    with atomic_write(path, "w", fs=fs, fsync=fsync) as f:
        json.dump(data, f, indent=indent, sort_keys=sort_keys)
        f.write("\n")
