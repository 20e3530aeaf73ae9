"""One training run end to end (mixture -> plan -> Sampler -> loop -> model folder), and the DeMix components.

`train_on_mixture` is what `proxy base` (`train_base`), `proxy train` (`train_reference`) and each
component of `proxy components` run; `train_components` trains one component per candidate from a common base and keeps
components.json up to date, skipping finished components and resuming an interrupted one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from corpus.errors import DemixError
from manifests import corpus_root, list_sources, manifest_path, read_corpus_meta
from mixer import Mixture, Sampler, resolve_mixture
from mixer.materialise import DEFAULT_GENERAL, GeneralPart, materialise
from proxy.components import (
    COMPONENTS_FILE,
    read_components_file,
    write_components_file,
)
from proxy.model import (
    build_model,
    count_parameters,
    load_model,
    model_config,
    read_demix,
    save_model_folder,
)
from proxy.training.loop import (
    TrainConfig,
    clear_training_state,
    distributed_context,
    train_loop,
)

PLAN_FILE = "plan.json"


class TrainingRunError(DemixError, ValueError):
    """A run that cannot start as asked (bad base, unknown candidate, finished folder with other settings)."""


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one model folder: trained, resumed or skipped (already finished)."""

    name: str
    out: str
    status: str
    tokens: int
    steps: int
    final_loss: float | None
    tokens_per_s: float
    elapsed_s: float
    parameters: int
    checkpoints: dict[str, str]


def corpus_meta(db: str | os.PathLike) -> dict[str, Any]:
    """Manifest meta with vocab_size/eos_id as ints and the tokenizer folder resolved. Raises TrainingRunError."""
    meta = read_corpus_meta(db)
    for key in ("vocab_size", "tokenizer_path"):
        if getattr(meta, key) is None:
            raise TrainingRunError(
                f"{manifest_path(db)}: meta.{key} is missing (was the corpus built with a tokenizer?)"
            )
    out = {**meta.to_values(), "eos_id": meta.eos_id}
    out["tokenizer_dir"] = str(corpus_root(db) / meta.tokenizer_path)
    return out


def _is_model_folder(init: str) -> bool:
    return (Path(init) / "config.json").exists() and any(Path(init).glob("*.safetensors"))


def initial_model(init: str, meta: dict[str, Any], seed: int, from_pretrained: bool = False) -> torch.nn.Module:
    """A model folder / hub id (loaded, fp32) or a preset / config.json (fresh, seeded)."""
    if from_pretrained or _is_model_folder(init):
        model = load_model(init)
        if model.config.vocab_size < meta["vocab_size"]:
            raise TrainingRunError(
                f"{init}: vocab_size {model.config.vocab_size} < corpus vocab_size {meta['vocab_size']}"
            )
        return model
    return build_model(model_config(init, meta["vocab_size"], meta["eos_id"]), seed)


def _rank() -> tuple[int, int]:
    rank, world, _ = distributed_context()
    return rank, world


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def _settings(config: TrainConfig) -> dict[str, Any]:
    # What determines the weights (budgets and save/log intervals do not).
    return {k: v for k, v in asdict(config).items() if k not in ("checkpoints", "save_every", "log_every", "fsdp")}


def train_on_mixture(
    mixture: Any,
    db: str | os.PathLike,
    out: str | os.PathLike,
    config: TrainConfig,
    *,
    kind: str,
    init: str,
    base: str | None = None,
    from_pretrained: bool = False,
    extra: dict | None = None,
    progress: bool = True,
) -> RunOutcome:
    """Train a model on `mixture` (a mixer.Mixture) from `init` and write the model folder `out`.

    Skips a finished folder with the same kind and token budget; resumes from its training
    state otherwise. Checkpoints at config.checkpoints go to out/checkpoints/tokens-<budget>.
    Raises TrainingRunError when `out` holds a finished model of a different run.
    """
    out, db_path = Path(out), str(manifest_path(db).resolve())
    rank, world = _rank()
    steps = config.total_steps(world)
    tokens = steps * config.tokens_per_step(world)
    name = out.name
    settings = _settings(config)
    done = read_demix(out)
    if done is not None:
        if done.get("kind") != kind or int(done.get("tokens", -1)) != tokens:
            raise TrainingRunError(
                f"{out}: holds a finished {done.get('kind')} model of {done.get('tokens')} tokens; "
                f"this run is a {kind} of {tokens} tokens (use another --out; nothing is overwritten)"
            )
        old = {k: v for k, v in (done.get("config") or {}).items() if k in settings}
        diffs = [f"{k}: {old[k]!r} there, {settings[k]!r} now" for k in sorted(old) if old[k] != settings[k]]
        if diffs:
            raise TrainingRunError(f"{out}: finished with other settings ({'; '.join(diffs)}); use another --out")
        return RunOutcome(name, str(out), "skipped", tokens, steps, None, 0.0, 0.0, 0, done.get("checkpoints", {}))
    meta = corpus_meta(db)
    model = initial_model(init, meta, config.seed, from_pretrained)
    mix = mixture.to_dict()
    checkpoints: dict[str, str] = {}

    def demix(n_tokens: int) -> dict[str, Any]:
        return dict(
            extra or {},
            kind=kind,
            mixture=mix,
            tokens=n_tokens,
            db=db_path,
            base=base,
            seed=config.seed,
            init=init,
            config=settings,
        )

    def export(m: torch.nn.Module, budget: int) -> None:
        rel = f"checkpoints/tokens-{budget}"
        save_model_folder(m, out / rel, tokenizer_dir=meta["tokenizer_dir"], demix=demix(budget))
        checkpoints[str(budget)] = rel

    plan_id = None
    result = None
    if steps > 0:
        plan = resolve_mixture(mixture, db, tokens, seq_len=config.seq_len, seed=config.seed)
        plan_id = plan.plan_id
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            plan.save(out / PLAN_FILE)
        sampler = Sampler(plan, seq_len=config.seq_len, seed=config.seed, rank=rank, world_size=world)
        result = train_loop(model, sampler, config, out, export=export, plan_id=plan_id, progress=progress)
    if rank == 0:
        for budget in config.checkpoints:  # budgets exported before a resume are already on disk
            rel = f"checkpoints/tokens-{int(budget)}"
            if read_demix(out / rel) is not None:
                checkpoints[str(int(budget))] = rel
        final = dict(
            demix(tokens), plan_id=plan_id, checkpoints=dict(sorted(checkpoints.items(), key=lambda kv: int(kv[0])))
        )
        save_model_folder(model, out, tokenizer_dir=meta["tokenizer_dir"], demix=final)
        clear_training_state(out)
    _barrier(world)
    status = (
        "adopted"
        if result is None
        else "trained"
        if result.resumed_from_step == 0
        else f"resumed@{result.resumed_from_step}"
    )
    return RunOutcome(
        name,
        str(out),
        status,
        tokens,
        steps,
        result.final_loss if result else None,
        result.tokens_per_s if result else 0.0,
        result.elapsed_s if result else 0.0,
        count_parameters(model),
        dict(sorted(checkpoints.items(), key=lambda kv: int(kv[0]))),
    )


def train_base(
    db: str | os.PathLike,
    out: str | os.PathLike,
    config: TrainConfig,
    *,
    init: str = "tiny",
    domain: str = "general",
    from_pretrained: bool = False,
    progress: bool = True,
) -> RunOutcome:
    """`proxy base`: pretrain (or, with from_pretrained, adopt) the common base on `domain` from `init`."""
    mixture = Mixture(
        name="base-general", level="domain", ratios={domain: 1.0}, provenance={"method": "demix-base", "domain": domain}
    )
    return train_on_mixture(
        mixture, db, out, config, kind="base", init=init, base=None, from_pretrained=from_pretrained, progress=progress
    )


def train_reference(
    mixture_file: str | os.PathLike,
    db: str | os.PathLike,
    out: str | os.PathLike,
    config: TrainConfig,
    *,
    base: str | os.PathLike | None = None,
    init: str = "tiny",
    progress: bool = True,
) -> RunOutcome:
    """`proxy train`: a model trained on the mixture in `mixture_file` (references, small-proxy baselines).

    It continues from `base` (a model folder) when given, else starts from scratch with the preset or
    config `init`.
    """
    mixture = Mixture.load(mixture_file)
    base = str(Path(base).resolve()) if base else None
    return train_on_mixture(
        mixture,
        db,
        out,
        config,
        kind="trained",
        init=base or init,
        base=base,
        extra={"mixture_file": str(mixture_file)},
        progress=progress,
    )


def component_mixture(db: str | os.PathLike, candidate: str, general_share: float) -> Any:
    """The source-level mixture component ``candidate`` trains on: ``g`` general + ``1 - g`` candidate data.

    It is mixer.materialise of a one-hot alpha, the same function that resolves a searched mixture,
    so a one-hot proxy and its component describe the same data. "General" is every source of the
    general domain (mixer.materialise.DEFAULT_GENERAL); a general candidate's own sources get both
    parts. Raises TrainingRunError when the candidate (or, for g > 0, the general domain) has no train tokens.
    """
    if not 0.0 <= general_share <= 1.0:
        raise TrainingRunError(f"--general-share: {general_share} is not in [0, 1]")
    rows = [r for r in list_sources(db) if int(r["n_tokens"]) > 0]
    if not any(r.get("candidate") == candidate for r in rows):
        known = sorted({r["candidate"] for r in rows if r.get("candidate")})
        raise TrainingRunError(
            f"{manifest_path(db)}: candidate {candidate!r} has no train tokens "
            f"(candidates with data: {', '.join(known) or 'none'})"
        )
    if general_share > 0 and not any(r.get("domain") == "general" for r in rows):
        raise TrainingRunError(
            f"{manifest_path(db)}: --general-share {general_share} but no general-domain source has tokens"
        )
    general = GeneralPart(general_share, DEFAULT_GENERAL["level"], tuple(DEFAULT_GENERAL["ratios"].items()))
    alpha = Mixture(
        name=f"component-{candidate}",
        level="candidate",
        ratios={candidate: 1.0},
        provenance={"method": "demix-component", "candidate": candidate, **general.to_provenance()},
    )
    return materialise(alpha, rows, where=str(manifest_path(db))).mixture


def component_ratios(db: str | os.PathLike, candidate: str, general_share: float) -> dict[str, float]:
    """Source-level ratios of component ``candidate``'s training stream (see component_mixture)."""
    return dict(component_mixture(db, candidate, general_share).ratios)


def default_candidates(db: str | os.PathLike) -> list[str]:
    """Every non-null candidate of the manifest's sources that has train tokens, sorted."""
    return sorted({r["candidate"] for r in list_sources(db) if r.get("candidate") and int(r["n_tokens"]) > 0})


def train_components(
    base: str | os.PathLike,
    db: str | os.PathLike,
    out: str | os.PathLike,
    config: TrainConfig,
    *,
    candidates: Sequence[str] | None = None,
    general_share: float = 0.5,
    progress: bool = True,
) -> list[RunOutcome]:
    """Train one component per candidate from `base`, each on (1 - g) candidate + g general data.

    Writes <out>/<candidate>/ (model folder, checkpoints/tokens-<budget>/) and <out>/components.json
    after every component. Raises TrainingRunError when base is not a model folder or an
    existing components.json was made with another base, general share or budget.
    """
    base, out = Path(base).resolve(), Path(out)
    if not _is_model_folder(str(base)):
        raise TrainingRunError(
            f"--base {base}: not a model folder (config.json + *.safetensors); run `proxy base` first"
        )
    rank, world = _rank()
    tokens = config.total_steps(world) * config.tokens_per_step(world)
    db_path = str(manifest_path(db).resolve())
    candidates = list(candidates) if candidates else default_candidates(db)
    if not candidates:
        raise TrainingRunError(f"{db_path}: no source has a candidate with train tokens")
    # What "general" meant for these components travels with them into every searched mixture's provenance.
    index = {
        "base": str(base),
        "db": db_path,
        "general_share": general_share,
        "general": dict(DEFAULT_GENERAL),
        "tokens": tokens,
        "candidates": {},
    }
    old = read_components_file(out)
    if old is not None:
        for key in ("base", "general_share", "tokens"):
            if old.get(key) != index[key]:
                raise TrainingRunError(
                    f"{out / COMPONENTS_FILE}: {key} is {old.get(key)!r} there but "
                    f"{index[key]!r} now; use another --out (nothing is overwritten)"
                )
        index["candidates"] = old.get("candidates", {})
    outcomes = []
    for cand in candidates:
        mixture = component_mixture(db, cand, general_share)
        mixture = Mixture(
            name=mixture.name,
            level=mixture.level,
            ratios=mixture.ratios,
            provenance={**mixture.provenance, "base": str(base)},
        )
        outcome = train_on_mixture(
            mixture,
            db,
            out / cand,
            config,
            kind="component",
            init=str(base),
            base=str(base),
            extra={"candidate": cand, "general_share": general_share},
            progress=progress,
        )
        outcome = replace(outcome, name=cand)
        outcomes.append(outcome)
        if rank == 0:
            cps = read_demix(out / cand)["checkpoints"]
            index["candidates"][cand] = {
                "path": cand,
                "tokens": outcome.tokens,
                "checkpoints": {k: f"{cand}/{v}" for k, v in cps.items()},
            }
            write_components_file(out, index)
        _barrier(world)
    return outcomes
