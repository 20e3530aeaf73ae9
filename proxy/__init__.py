"""The DeMix method: component training, merging, proxy evaluation, mixture search, validation."""
from __future__ import annotations
