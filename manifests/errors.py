"""The manifests package's error: a manifest or token shard that is missing, unreadable or inconsistent."""

from __future__ import annotations

from corpus.errors import DemixError


class ManifestError(DemixError, RuntimeError):
    """A manifest that is missing, unreadable or inconsistent; the message names the file."""
