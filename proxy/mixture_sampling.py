"""Dirichlet sampling of candidate mixtures around a token-count prior (PAPER.md step 5).

Per draw: prior p = token counts / total; sharpened q ∝ p^(1/temperature) (temperature 0.7 < 1 sharpens);
strength s ~ log-uniform[strength_min, strength_max]; r ~ Dirichlet(s * K * q); each r_i capped at
cap * p_i with the excess redistributed over the uncapped candidates (repeated until none exceeds);
values below `unit` zeroed, all rounded to multiples of `unit`, renormalized; duplicates dropped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class SamplingSettings:
    """Dirichlet sampling parameters (paper defaults)."""

    temperature: float = 0.7
    strength_min: float = 0.5
    strength_max: float = 5.0
    cap: float = 4.0
    unit: float = 2e-4

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature: {self.temperature!r} must be > 0")
        if not 0 < self.strength_min <= self.strength_max:
            raise ValueError(f"strength range: [{self.strength_min}, {self.strength_max}] must be positive and ordered")
        if self.cap < 1:
            raise ValueError(f"cap: {self.cap!r} must be >= 1 (a multiple of the prior share)")
        if not 0 < self.unit < 1:
            raise ValueError(f"unit: {self.unit!r} must be in (0, 1)")


def prior_shares(tokens: Mapping[str, int] | Sequence[int]) -> np.ndarray:
    """Token counts as shares summing to 1; raises ValueError on a negative count or an all-zero prior."""
    vals = np.array(list(tokens.values()) if isinstance(tokens, Mapping) else list(tokens), dtype=np.float64)
    if np.any(vals < 0) or vals.sum() <= 0:
        raise ValueError(f"prior token counts must be >= 0 with a positive total, got {vals.tolist()}")
    return vals / vals.sum()


def cap_and_redistribute(r: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Rows of r (summing to 1) with r_i <= caps_i, excess spread over uncapped entries in proportion to them."""
    r = r.copy()
    for _ in range(r.shape[1] + 1):
        over = r > caps
        if not over.any():
            break
        excess = np.where(over, r - caps, 0.0).sum(axis=1, keepdims=True)
        r = np.where(over, caps, r)
        free = np.where(over | (r >= caps), 0.0, r)
        free_sum = free.sum(axis=1, keepdims=True)
        # Rows whose uncapped entries are all zero share the excess by remaining headroom instead.
        room = np.where(r < caps, caps - r, 0.0)
        share = np.where(free_sum > 0, free / np.where(free_sum > 0, free_sum, 1.0),
                         room / np.maximum(room.sum(axis=1, keepdims=True), 1e-300))
        r = r + excess * share
    return r


def quantize(r: np.ndarray, unit: float) -> np.ndarray:
    """Zero entries below `unit`, round to multiples of `unit`, renormalize each row to sum 1."""
    r = np.where(r < unit, 0.0, r)
    r = np.round(r / unit) * unit
    sums = r.sum(axis=1, keepdims=True)
    fallback = np.eye(r.shape[1])[np.argmax(r, axis=1)] if np.any(sums <= 0) else r
    r = np.where(sums > 0, r, fallback)
    return r / r.sum(axis=1, keepdims=True)


def sample_mixtures(prior_tokens: Mapping[str, int] | Sequence[int], n: int, seed: int,
                    settings: SamplingSettings = SamplingSettings(), max_rounds: int = 20) -> np.ndarray:
    """Up to n distinct mixtures [n, K] (float64 rows summing to 1), deterministic for (prior, n, seed, settings)."""
    rng = np.random.default_rng(seed)
    p = prior_shares(prior_tokens)
    k = p.shape[0]
    q = np.where(p > 0, p, 0.0) ** (1.0 / settings.temperature)
    q = q / q.sum()
    caps = np.minimum(settings.cap * p, 1.0)
    # A candidate with no tokens gets no share (cap 0); the rest must be able to hold the whole mixture.
    if caps.sum() < 1.0:
        caps = np.where(p > 0, 1.0, 0.0)
    alpha_base = np.maximum(q * k, 1e-6)
    keys: set[bytes] = set()
    rows: list[np.ndarray] = []
    for _ in range(max_rounds):
        need = n - len(rows)
        if need <= 0:
            break
        m = max(need + need // 4, 16)
        strength = np.exp(rng.uniform(np.log(settings.strength_min), np.log(settings.strength_max), size=(m, 1)))
        gam = rng.standard_gamma(strength * alpha_base[None, :])
        sums = gam.sum(axis=1, keepdims=True)
        r = np.where(sums > 0, gam / np.where(sums > 0, sums, 1.0), q[None, :])
        r = quantize(cap_and_redistribute(r, caps[None, :]), settings.unit)
        units = np.round(r / settings.unit).astype(np.int64)
        for row, u in zip(r, units):
            key = u.tobytes()
            if key not in keys:
                keys.add(key)
                rows.append(row)
                if len(rows) == n:
                    break
    return np.array(rows, dtype=np.float64).reshape(-1, k)
