"""Dirichlet sampling of candidate mixtures around a token-count prior (docs/method.md, step 5; the DeMix scripts).

Per draw, with p = token counts / total:
1. caps from the *untempered* prior: cap_i = min(cap * p_i, 1);
2. the prior is *flattened* by the temperature: q = p ** temperature, renormalised (0.7 < 1 gives the
   small candidates more weight: [0.500, 0.111, 0.027, ...] becomes [0.388, 0.135, 0.050, ...]);
3. one Dirichlet sample with concentration q * strength at each of `n_strengths` strengths
   log-spaced in [strength_min, strength_max], of which one is kept at random (no factor K);
4. a coordinate above its cap is set to the cap and the excess spread over the others in proportion
   to them (repeated until none exceeds);
5. values below `unit` zeroed, all rounded to multiples of `unit`, renormalised; duplicates dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from proxy.errors import ProxyError


@dataclass(frozen=True)
class SamplingSettings:
    """Dirichlet sampling parameters (the paper's defaults)."""

    temperature: float = 0.7
    """Exponent that flattens the prior (p ** temperature); < 1 favours small candidates, 1 keeps the prior."""
    strength_min: float = 0.5
    """Smallest Dirichlet strength (sum of the concentration); small = spiky mixtures."""
    strength_max: float = 5.0
    """Largest Dirichlet strength; large = mixtures close to the flattened prior."""
    n_strengths: int = 15
    """Strengths log-spaced over [strength_min, strength_max]; each draw keeps the sample of one at random."""
    cap: float = 4.0
    """Each candidate's share is at most min(cap * its untempered prior share, 1)."""
    unit: float = 2e-4
    """Minimum ratio unit: shares below it are zeroed, all are rounded to multiples of it."""

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ProxyError(f"temperature: {self.temperature!r} must be > 0")
        if not 0 < self.strength_min <= self.strength_max:
            raise ProxyError(f"strength range: [{self.strength_min}, {self.strength_max}] must be positive and ordered")
        if self.n_strengths < 1:
            raise ProxyError(f"n_strengths: {self.n_strengths!r} must be >= 1")
        if self.cap < 1:
            raise ProxyError(f"cap: {self.cap!r} must be >= 1 (a multiple of the prior share)")
        if not 0 < self.unit < 1:
            raise ProxyError(f"unit: {self.unit!r} must be in (0, 1)")

    def strengths(self) -> np.ndarray:
        """The strengths a draw chooses from: n_strengths values log-spaced in [strength_min, strength_max]."""
        return np.geomspace(self.strength_min, self.strength_max, self.n_strengths)


def prior_shares(tokens: Mapping[str, int] | Sequence[int]) -> np.ndarray:
    """Token counts as shares summing to 1; raises ValueError on a negative count or an all-zero prior."""
    vals = np.array(list(tokens.values()) if isinstance(tokens, Mapping) else list(tokens), dtype=np.float64)
    if np.any(vals < 0) or vals.sum() <= 0:
        raise ProxyError(f"prior token counts must be >= 0 with a positive total, got {vals.tolist()}")
    return vals / vals.sum()


def flattened_prior(p: np.ndarray, temperature: float) -> np.ndarray:
    """p ** temperature, renormalised (zero stays zero)."""
    q = np.where(p > 0, p, 0.0) ** temperature
    return q / q.sum()


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
        share = np.where(
            free_sum > 0,
            free / np.where(free_sum > 0, free_sum, 1.0),
            room / np.maximum(room.sum(axis=1, keepdims=True), 1e-300),
        )
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


def sample_mixtures(
    prior_tokens: Mapping[str, int] | Sequence[int],
    n: int,
    seed: int,
    settings: SamplingSettings = SamplingSettings(),
    max_rounds: int = 20,
) -> np.ndarray:
    """Up to n distinct mixtures [n, K] (float64 rows summing to 1), deterministic for (prior, n, seed, settings)."""
    rng = np.random.default_rng(seed)
    p = prior_shares(prior_tokens)
    k = p.shape[0]
    caps = np.minimum(settings.cap * p, 1.0)  # from the untempered prior, before flattening
    # A candidate with no tokens gets no share (cap 0); the rest must be able to hold the whole mixture.
    if caps.sum() < 1.0:
        caps = np.where(p > 0, 1.0, 0.0)
    q = flattened_prior(p, settings.temperature)
    strengths = settings.strengths()
    keys: set[bytes] = set()
    rows: list[np.ndarray] = []
    for _ in range(max_rounds):
        need = n - len(rows)
        if need <= 0:
            break
        m = max(need + need // 4, 16)
        # Sampling all 15 strengths and keeping one at random is the same law as drawing the kept strength
        # uniformly first, and 15x cheaper.
        strength = strengths[rng.integers(0, len(strengths), size=(m, 1))]
        gam = rng.standard_gamma(np.maximum(strength * q[None, :], 1e-300)) * (q[None, :] > 0)
        sums = gam.sum(axis=1, keepdims=True)
        # A draw whose gammas all underflow to 0 (tiny concentrations) falls back to the flattened prior.
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
