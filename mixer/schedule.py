"""The slot schedule now lives in ``mixer.slot_schedule`` (CONVENTIONS.md: one name, one thing;
``proxy/schedule.py`` is the learning-rate schedule). This module re-exports it for ``mixer/__init__.py``
and is removed once that file imports ``mixer.slot_schedule``."""
from __future__ import annotations

from mixer.slot_schedule import BLOCK, Schedule

__all__ = ["BLOCK", "Schedule"]
