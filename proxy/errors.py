"""The proxy package's error for bad inputs and settings (a DemixError: one line on the CLI, exit 1)."""

from __future__ import annotations

from corpus.errors import DemixError


class ProxyError(DemixError, ValueError):
    """A bad setting, score table, objective or prior; the message names the field or file."""
