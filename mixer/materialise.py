"""From a searched mixture to the training data its proxy stood for (docs/method.md, "From a mixture to training data").

Every DeMix component trains on ``g`` general data plus ``1 - g`` data of its own candidate, so the
merge with weights alpha is a proxy for the data mixture ``g * general + (1 - g) * sum_i alpha_i D_i``,
not for ``sum_i alpha_i D_i``. A mixture found by search records ``g`` and what "general" meant for
its components in its provenance; materialising it gives the source-level mixture a plan must use.
The components' own training streams are built by the same function (a one-hot alpha), so a proxy,
the component it equals, a reference model and a resolved plan all describe the same data.

Within a key (candidate, domain or source) shares go to its sources by ``sources.weight`` when every
source of the key has one, else by train tokens: the same rule for alpha and for "general".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from corpus.errors import DemixError
from mixer.mixture import LEVELS, Mixture, MixtureError

# What "general" means when a component index does not say: every source of the general domain.
DEFAULT_GENERAL: dict[str, Any] = {"level": "domain", "ratios": {"general": 1.0}}
PROVENANCE_SHARE = "general_share"
PROVENANCE_GENERAL = "general"
PROVENANCE_MATERIALISED = "materialised"


class ResolveError(DemixError, ValueError):
    """A target that cannot be met (empty sources, an epoch cap); the message names each source."""


@dataclass(frozen=True)
class GeneralPart:
    """The general data every component saw: its share ``g`` of each component's stream and what it was."""

    share: float
    """Fraction of each component's training tokens that were general data, in [0, 1]."""
    level: str = "domain"
    """Level of ``ratios``: candidate, domain or source."""
    ratios: tuple[tuple[str, float], ...] = (("general", 1.0),)
    """Keys of that level and their shares of the general part (summing to 1)."""

    def __post_init__(self) -> None:
        if isinstance(self.share, bool) or not isinstance(self.share, (int, float)) or not 0.0 <= self.share <= 1.0:
            raise MixtureError(f"{PROVENANCE_SHARE}: {self.share!r} is not a number in [0, 1]")
        if self.level not in LEVELS:
            raise MixtureError(f"{PROVENANCE_GENERAL}.level: {self.level!r} is not one of {', '.join(LEVELS)}")

    @classmethod
    def from_provenance(cls, provenance: Mapping[str, Any], file: str = "<mixture>") -> GeneralPart | None:
        """The general part recorded in a mixture's (or components.json's) provenance; None when absent."""
        if PROVENANCE_SHARE not in provenance:
            return None
        general = provenance.get(PROVENANCE_GENERAL) or DEFAULT_GENERAL
        if not isinstance(general, Mapping) or not isinstance(general.get("ratios"), Mapping):
            raise MixtureError(f"{file}: provenance.{PROVENANCE_GENERAL}: expected {{level, ratios}}, got {general!r}")
        try:
            return cls(
                float(provenance[PROVENANCE_SHARE]),
                str(general.get("level", "domain")),
                tuple((str(k), float(v)) for k, v in general["ratios"].items()),
            )
        except (TypeError, ValueError) as e:
            raise MixtureError(f"{file}: provenance: {e}") from None

    def to_provenance(self) -> dict[str, Any]:
        """The provenance fields: {"general_share": g, "general": {"level", "ratios"}}."""
        return {PROVENANCE_SHARE: self.share, PROVENANCE_GENERAL: {"level": self.level, "ratios": dict(self.ratios)}}

    def mixture(self) -> Mixture:
        """The general part as a mixture of its own."""
        return Mixture(name="general", level=self.level, ratios=dict(self.ratios))


def source_shares(
    mixture: Mixture, sources: Sequence[Mapping[str, Any]], where: str = "the manifest"
) -> dict[str, Fraction]:
    """Exact shares per source of a mixture at any level, over manifest ``sources`` rows (summing to 1).

    Raises MixtureError for a key no source has, ResolveError for a key with ratio > 0 whose sources hold no tokens.
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in sources:
        if row.get(mixture.level) is not None:
            groups.setdefault(row[mixture.level], []).append(row)
    shares: dict[str, Fraction] = {}
    for key, ratio in mixture.ratios.items():
        if ratio <= 0:
            continue
        members = groups.get(key)
        if not members:
            raise MixtureError(
                f"<{mixture.name}>: ratios.{key}: no {mixture.level} {key!r} in {where}; "
                f"known {mixture.level}s are {', '.join(sorted(groups)) or 'none'}"
            )
        by_weight = all(m.get("weight") is not None for m in members)
        weights = {
            m["source"]: Fraction(m["weight"]) if by_weight else Fraction(int(m.get("n_tokens") or 0)) for m in members
        }
        total = sum(weights.values())
        if total == 0:
            raise ResolveError(
                f"<{mixture.name}>: ratios.{key}: {mixture.level} {key!r} has ratio {ratio:g} but its "
                f"sources ({', '.join(weights)}) hold no train tokens in {where}"
            )
        for source, w in weights.items():
            if w > 0:
                shares[source] = shares.get(source, Fraction(0)) + Fraction(ratio) * w / total
    return shares


def materialised_shares(
    alpha: Mixture, general: GeneralPart | None, sources: Sequence[Mapping[str, Any]], where: str = "the manifest"
) -> dict[str, Fraction]:
    """``g * general + (1 - g) * alpha`` as exact per-source shares (``alpha`` alone when ``general`` is None)."""
    own = source_shares(alpha, sources, where)
    if general is None or general.share == 0:
        return own
    g = Fraction(general.share)
    out = {s: (1 - g) * q for s, q in own.items()}
    for s, q in source_shares(general.mixture(), sources, where).items():
        out[s] = out.get(s, Fraction(0)) + g * q
    return {s: q for s, q in out.items() if q > 0}


@dataclass(frozen=True)
class Materialised:
    """A mixture materialised over a corpus: the source-level mixture, its exact shares, and warnings."""

    mixture: Mixture
    """Source-level mixture whose provenance records what it was materialised from (key "materialised")."""
    shares: dict[str, Fraction]
    """Exact share per source (summing to 1); what a resolver splits the target by."""
    warnings: tuple[str, ...] = ()
    """Lines to show the user (a missing general share, an --as-is that drops one)."""


def materialise(
    alpha: Mixture,
    sources: Sequence[Mapping[str, Any]],
    *,
    general_share: float | None = None,
    as_is: bool = False,
    where: str = "the manifest",
) -> Materialised:
    """The source-level mixture a plan should resolve, with its exact shares and warnings for the user.

    The general part is ``alpha``'s recorded provenance, with its share replaced by ``general_share``
    when given. ``as_is`` resolves ``alpha`` unchanged. A candidate-level mixture without a recorded
    general share is resolved as-is with a warning naming the missing field. A mixture that is
    already materialised (its provenance says so) is resolved as it stands.
    """
    if as_is and general_share is not None:
        raise MixtureError("--as-is and --general-share exclude each other")
    made = alpha.provenance.get(PROVENANCE_MATERIALISED)
    if made:
        if general_share is None and not as_is:
            return Materialised(alpha, source_shares(alpha, sources, where), ())
        # another general share for a materialised mixture starts from the alpha it was made from,
        # so the general part is never added twice
        origin = made["from"]
        provenance = {k: v for k, v in alpha.provenance.items() if k != PROVENANCE_MATERIALISED}
        alpha = Mixture(name=origin["name"], level=origin["level"], ratios=origin["ratios"], provenance=provenance)
    recorded = GeneralPart.from_provenance(alpha.provenance, f"<{alpha.name}>")
    warnings: list[str] = []
    if as_is:
        general = None
        if recorded is not None and recorded.share > 0:
            warnings.append(
                f"<{alpha.name}>: resolved as-is (--as-is): the components' general share "
                f"{recorded.share:g} recorded in provenance.{PROVENANCE_SHARE} is not added"
            )
    elif general_share is not None:
        base = recorded or GeneralPart(
            general_share, DEFAULT_GENERAL["level"], tuple(DEFAULT_GENERAL["ratios"].items())
        )
        general = GeneralPart(general_share, base.level, base.ratios)
    else:
        general = recorded
        if general is None and alpha.level == "candidate":
            warnings.append(
                f"<{alpha.name}>: provenance.{PROVENANCE_SHARE} is missing, so the mixture is resolved "
                "as-is; a mixture found by `proxy search` records the components' general share there "
                "(pass --general-share to materialise it, --as-is to silence this)"
            )
    shares = materialised_shares(alpha, general, sources, where)
    total = sum(shares.values())
    ratios = {s: float(q / total) for s, q in sorted(shares.items())}
    drift = 1.0 - math.fsum(ratios.values())
    if ratios and drift:  # float rounding of exact fractions: put the last ulp on the largest share
        top = max(ratios, key=ratios.get)
        ratios[top] += drift
    provenance = dict(alpha.provenance)
    provenance[PROVENANCE_MATERIALISED] = {
        "from": {"name": alpha.name, "level": alpha.level, "ratios": dict(alpha.ratios)},
        "general_share": 0.0 if general is None else general.share,
        "general": None if general is None else general.to_provenance()[PROVENANCE_GENERAL],
        "as_is": general is None,
    }
    return Materialised(
        Mixture(name=alpha.name, level="source", ratios=ratios, provenance=provenance), shares, tuple(warnings)
    )
