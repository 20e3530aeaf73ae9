"""Local paths and fsspec URLs alike: which is which, joining a relative path onto either, and a local stand-in
for a remote file that a library can only open by path (`staged_file`)."""

from __future__ import annotations

import os
import posixpath
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import fsspec

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def url_protocol(location: str) -> str | None:
    """The scheme of a URL, lower-cased (``s3``, ``file``, ...), or None for a plain path."""
    m = _URL.match(location)
    return m.group(1).lower() if m else None


def is_url(location: str) -> bool:
    """True for a URL with a scheme other than file:// (hf://, s3://, memory://, ...)."""
    return url_protocol(location) is not None and not location.startswith("file://")


def join_url(root: str, rel: str) -> str:
    """``root``/``rel`` for local paths and fsspec URLs alike (``rel`` alone when root is empty)."""
    return f"{root.rstrip('/')}/{rel}" if root else rel


@contextmanager
def staged_file(url: str, *, download: bool = True, upload: str = "success") -> Iterator[str]:
    """A local file path that stands for ``url`` while the block runs (DuckDB and fd redirection need one).

    A local ``url`` (a path or file://) is yielded as its path, untouched. For any other fsspec URL the
    path is a fresh temporary file: first a copy of ``url`` when ``download`` and it exists, then put
    back to ``url`` when the block ends: ``upload="success"`` only if it ended without error,
    ``"always"`` also after one (a log), ``"never"`` not at all (a read).
    """
    if upload not in ("success", "always", "never"):
        raise ValueError(f"staged_file: upload {upload!r}: expected 'success', 'always' or 'never'")
    if not is_url(url):
        yield url[len("file://") :] if url.startswith("file://") else url
        return
    fs, path = fsspec.core.url_to_fs(url)
    with tempfile.TemporaryDirectory(prefix="demix-staged-") as tmp:
        local = os.path.join(tmp, posixpath.basename(path) or "file")
        if download and fs.exists(path):
            fs.get_file(path, local)
        ok = False
        try:
            yield local
            ok = True
        finally:
            if os.path.exists(local) and (upload == "always" or (upload == "success" and ok)):
                fs.makedirs(posixpath.dirname(path), exist_ok=True)
                fs.put_file(local, path)
