"""Local paths and fsspec URLs alike: which is which, and joining a relative path onto either."""

from __future__ import annotations

import re

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def is_url(location: str) -> bool:
    """True for a URL with a scheme other than file:// (hf://, s3://, memory://, ...)."""
    return bool(_URL.match(location)) and not location.startswith("file://")


def join_url(root: str, rel: str) -> str:
    """``root``/``rel`` for local paths and fsspec URLs alike (``rel`` alone when root is empty)."""
    return f"{root.rstrip('/')}/{rel}" if root else rel
