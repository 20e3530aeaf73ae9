"""Resolve a mixture (or a staged recipe) and a token target into a Plan of integer allotments per source.

Allotments are exact integers that sum to the target: each source's quota is an exact rational
(``target * share``), every source gets its floor, and the tokens left go one each to the largest
remainders, ties to the earlier source (largest-remainder rounding). Work is O(sources).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from corpus import Recipe, format_tokens, load_recipe
from manifests import corpus_location, list_shards, list_sources, open_manifest, read_corpus_meta, register_plan
from mixer.materialise import ResolveError, materialise
from mixer.mixture import Mixture
from mixer.plan import Plan, PlanSource


def largest_remainder(total: int, weights: Sequence[int | Fraction]) -> list[int]:
    """Split ``total`` (int) in proportion to non-negative ``weights``; integers summing exactly to total.

    Deterministic: remainders tie toward the lower index. Raises ValueError when all weights are 0.
    """
    fr = [Fraction(w) for w in weights]
    if any(w < 0 for w in fr):
        raise ValueError(f"weights must be >= 0, got {weights!r}")
    scale = math.lcm(*(w.denominator for w in fr)) if fr else 1
    ints = [int(w * scale) for w in fr]
    denom = sum(ints)
    if denom == 0:
        raise ValueError("cannot split tokens over weights that are all 0")
    floors = [total * w // denom for w in ints]
    rems = [total * w % denom for w in ints]
    left = total - sum(floors)
    for i in sorted(range(len(ints)), key=lambda i: (-rems[i], i))[:left]:
        floors[i] += 1
    return floors


def _epochs(allotted: int, available: int) -> float:
    return allotted / available if available > 0 else 0.0


def _check_cap(
    shares: dict[str, Fraction],
    available: dict[str, int],
    allotted: dict[str, int],
    target: int,
    max_epochs: float | None,
) -> None:
    """Raise ResolveError naming each source over ``max_epochs`` and the largest feasible target."""
    if max_epochs is None:
        return
    cap = Fraction(max_epochs)
    over = [s for s, a in allotted.items() if a > 0 and a > cap * available[s]]
    if not over:
        return
    names = list(shares)
    feasible = min(math.floor(cap * available[s] / shares[s]) for s in names if shares[s] > 0)
    for _ in range(64):  # rounding can push one source a token over its cap; step down until it fits
        alloc = dict(zip(names, largest_remainder(feasible, [shares[s] for s in names])))
        if all(alloc[s] <= cap * available[s] for s in names):
            break
        feasible -= 1
    detail = "; ".join(
        f"{s}: {allotted[s] / available[s] if available[s] else math.inf:.3f} epochs "
        f"({format_tokens(allotted[s])} of {format_tokens(available[s])} available)"
        for s in over
    )
    raise ResolveError(
        f"target {format_tokens(target)} exceeds --max-epochs {max_epochs:g} for {len(over)} source(s): {detail}. "
        f"The largest feasible target is {feasible} tokens ({format_tokens(feasible)})"
    )


def resolve_mixture(
    mixture: Mixture | str | os.PathLike | dict,
    db: str | os.PathLike,
    target_tokens: int,
    *,
    seq_len: int = 2048,
    seed: int = 0,
    max_epochs: float | None = None,
    general_share: float | None = None,
    as_is: bool = False,
) -> Plan:
    """Resolve a candidate/domain/source mixture over a built corpus into a Plan of ``target_tokens`` (int).

    The mixture is first materialised (mixer.materialise): a mixture found by search over components
    becomes ``g * general + (1 - g) * alpha`` with the components' general share ``g`` from its
    provenance (``general_share`` overrides it, ``as_is`` keeps alpha unchanged); the plan's mixture is
    that source-level mixture and ``plan.warnings`` says what the user should know. A key's share is
    split over its sources by ``sources.weight`` when every source of the key has one, else by train
    tokens. Epochs count stream tokens (document tokens plus one EOS per document) on both sides.
    Raises MixtureError for keys the manifest lacks and ResolveError for keys without tokens or a
    violated ``max_epochs`` cap.
    """
    if isinstance(mixture, dict):
        mixture = Mixture.from_dict(mixture)
    elif not isinstance(mixture, Mixture):
        mixture = Mixture.load(mixture)
    if target_tokens <= 0:
        raise ResolveError(f"target: {target_tokens} tokens; a plan needs a positive target")
    rows = list_sources(db)
    done = materialise(mixture, rows, general_share=general_share, as_is=as_is, where=str(db))
    info = {r["source"]: r for r in rows}
    shares = done.shares
    empty = [s for s in sorted(shares) if int(info[s]["n_tokens"]) == 0]  # a recipe weight, but nothing was built
    if empty:
        raise ResolveError(f"source(s) {', '.join(empty)} are weighted but hold no train tokens in {db}")
    names = sorted(shares)
    allotted = dict(zip(names, largest_remainder(target_tokens, [shares[s] for s in names])))
    meta = read_corpus_meta(db)
    eos_id = meta.eos_id
    # The sampler's stream appends one EOS per document, and allotments count stream tokens; so must epochs.
    per_doc = 1 if eos_id is not None else 0
    available = {s: int(info[s]["n_tokens"]) + per_doc * int(info[s]["n_docs"] or 0) for s in names}
    _check_cap(shares, available, allotted, target_tokens, max_epochs)
    shards: dict[str, list[dict[str, Any]]] = {s: [] for s in names}
    for sh in list_shards(db, "train", names):
        shards[sh["source"]].append(
            {"path": sh["path"], "sha256": sh["sha256"], "n_tokens": int(sh["n_tokens"]), "n_docs": int(sh["n_docs"])}
        )
    sources = tuple(
        PlanSource(
            source=s,
            domain=info[s]["domain"],
            tier=info[s]["tier"],
            candidate=info[s]["candidate"],
            share=float(shares[s]),
            available_tokens=int(info[s]["n_tokens"]),
            allotted_tokens=allotted[s],
            epochs=_epochs(allotted[s], available[s]),
            shards=tuple(shards[s]),
            n_docs=int(info[s]["n_docs"]),
            license=info[s]["license"],
            title=info[s]["title"],
        )
        for s in names
        if allotted[s] > 0
    )
    return Plan(
        target_tokens=target_tokens,
        seed=seed,
        seq_len=seq_len,
        corpus_root=corpus_location(db),
        eos_id=eos_id,
        mixture=done.mixture.to_dict(),
        sources=sources,
        tokenizer_path=meta.tokenizer_path,
        recipe=meta.recipe_name,
        config_hash=meta.config_hash,
        max_epochs=max_epochs,
        warnings=done.warnings,
    )


def resolve_recipe(
    recipe: Recipe | str | os.PathLike,
    target_tokens: int,
    *,
    stage: str | None = None,
    seq_len: int = 2048,
    seed: int = 0,
    max_epochs: float | None = None,
) -> Plan:
    """Resolve a recipe's own shares (no built corpus) into a Plan of ``target_tokens`` (int).

    With stages, the target is split over the stages by their targets (or given to ``stage`` alone),
    then within each stage by the sources' stage tokens; per-stage allotments are kept on each row.
    Without stages, sources are weighted by ``weight`` or ``available_tokens``. Raises ResolveError.
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    if stage is not None:
        chosen = [recipe.stage(stage)]
        stage_targets = [target_tokens]
    elif recipe.stages:
        chosen = list(recipe.stages)
        stage_targets = largest_remainder(target_tokens, [st.target_tokens for st in chosen])
    else:
        chosen, stage_targets = [], []
    names = [s.name for s in recipe.sources]
    per_stage: dict[str, dict[str, int]] = {n: {} for n in names}
    if chosen:
        for st, st_target in zip(chosen, stage_targets):
            weights = [s.stages.get(st.name, 0) for s in recipe.sources]
            if sum(weights) == 0:
                raise ResolveError(f"{recipe.path}: stage {st.name!r}: no source takes tokens in this stage")
            for n, a in zip(names, largest_remainder(st_target, weights)):
                per_stage[n][st.name] = a
        allotted = {n: sum(per_stage[n].values()) for n in names}
    else:
        weights = [s.weight if s.weight is not None else (s.available_tokens or 0) for s in recipe.sources]
        if sum(weights) == 0:
            raise ResolveError(f"{recipe.path}: sources have neither stages, weight nor available_tokens to split by")
        allotted = dict(zip(names, largest_remainder(target_tokens, weights)))
    available = {s.name: s.available_tokens or 0 for s in recipe.sources}
    shares = {n: Fraction(allotted[n], target_tokens) if target_tokens else Fraction(0) for n in names}
    _check_cap(
        {n: q for n, q in shares.items() if q > 0},
        available,
        {n: a for n, a in allotted.items() if a > 0},
        target_tokens,
        max_epochs,
    )
    sources = tuple(
        PlanSource(
            source=s.name,
            domain=s.domain,
            tier=s.tier,
            candidate=s.candidate,
            share=float(shares[s.name]),
            available_tokens=available[s.name],
            allotted_tokens=allotted[s.name],
            epochs=_epochs(allotted[s.name], available[s.name]),
            stages=per_stage[s.name],
            license=s.license,
            title=s.title or s.name,
        )
        for s in recipe.sources
        if allotted[s.name] > 0
    )
    stages = tuple(
        {"name": st.name, "target_tokens": t, "recipe_target_tokens": st.target_tokens}
        for st, t in zip(chosen, stage_targets)
    )
    label = f"{recipe.name}" + (f"/stage-{stage}" if stage is not None else "")
    return Plan(
        target_tokens=target_tokens,
        seed=seed,
        seq_len=seq_len,
        corpus_root="",
        eos_id=None,
        mixture={
            "name": label,
            "level": "source",
            "ratios": {s.source: s.share for s in sources},
            "provenance": {"recipe": recipe.path},
        },
        sources=sources,
        stages=stages,
        recipe=recipe.name,
        config_hash=recipe.config_hash(),
        max_epochs=max_epochs,
    )


def record_plan(plan: Plan, db: str | os.PathLike) -> int:
    """Write the plan's per-source rows into the manifest's ``plans`` table (idempotent); returns rows."""
    with open_manifest(db) as con:
        return register_plan(con, plan.plan_id, [s.to_dict() for s in plan.sources])
