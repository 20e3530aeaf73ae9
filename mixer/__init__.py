"""Mixtures, resolve into plans, the deterministic streaming sampler, and the Hugging Face release."""

from __future__ import annotations

from mixer.mixture import LEVELS, Mixture, MixtureError
from mixer.plan import Plan, PlanError, PlanSource
from mixer.release import ReleaseError, push_release, write_release
from mixer.resolve import ResolveError, largest_remainder, record_plan, resolve_mixture, resolve_recipe
from mixer.sampler import Sampler, SamplerError
from mixer.slot_schedule import Schedule

__all__ = [
    "LEVELS",
    "Mixture",
    "MixtureError",
    "Plan",
    "PlanError",
    "PlanSource",
    "ReleaseError",
    "ResolveError",
    "Sampler",
    "SamplerError",
    "Schedule",
    "largest_remainder",
    "push_release",
    "record_plan",
    "resolve_mixture",
    "resolve_recipe",
    "write_release",
]
