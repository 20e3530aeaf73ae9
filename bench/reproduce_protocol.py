"""The pre-registered protocol of the reproduction (issue 16) and its exported inputs.

`Protocol` fixes everything before any training: the mixtures (drawn with proxy.mixture_sampling
from the candidates' token counts, seed `seed`), the models, the token budgets and the seeds.
`export_inputs` reads the corpus once through the manifest (DuckDB) and writes a self-contained
folder, so the runner (bench/reproduce_runner.py) needs neither DuckDB nor the shards, on CPU or on
a GPU machine:

    inputs/
      inputs.json              protocol, vocab, candidates, sources, mixtures and every training
                               mixture's source ratios (materialised: g x general + (1 - g) x alpha)
      streams/<source>.npy     train tokens of one source, documents joined by EOS (uint16/uint32)
      validation.jsonl         the scored documents: {"source", "tokens", "text"}, equal tokens per source

Materialisation goes through mixer.materialise, the function `mixer resolve` uses, so a reference
trains on exactly what a plan of the searched mixture would hold.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from mixer import Mixture
from mixer.materialise import DEFAULT_GENERAL, materialise
from proxy import PRESETS, ProxyError, equal_split, sample_mixtures

# Model shapes (Qwen3 family, tied embeddings): `micro` is the CPU proxy model, `pico` the RegMix-style
# baseline (smaller, from scratch), `tiny` is proxy.model's preset and the GPU run's model.
SHAPES = {
    "tiny": PRESETS["tiny"],
    "micro": dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        intermediate_size=192,
    ),
    "nano": dict(
        hidden_size=48,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=24,
        intermediate_size=128,
    ),
    "pico": dict(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=32,
        intermediate_size=64,
    ),
}
INPUTS_FILE = "inputs.json"
VALIDATION_FILE = "validation.jsonl"


@dataclass(frozen=True)
class Protocol:
    """One pre-registered configuration; token budgets are integers (tokens, not steps)."""

    tag: str
    """Name of the run's results (docs/reproduction/<tag>.json)."""
    n_mixtures: int
    """Mixtures drawn before any training (64 full, 24 --quick)."""
    reference_seeds: tuple[int, ...] = (0, 1)
    """Data-order seeds of the references; two give the noise ceiling (E0)."""
    general_share: float = 0.5
    """g of the DeMix components and of every materialised mixture."""
    model: str = "micro"
    """Shape (SHAPES) of base, components, references and the trained proxy."""
    baseline_model: str = "pico"
    """Shape of the RegMix-style baseline (from scratch)."""
    base_tokens: int = 300_000
    """Tokens of the shared base (general data)."""
    component_tokens: int = 100_000
    """Tokens per component and per reference."""
    trained_multiples: tuple[float, ...] = (1.0, 4.0)
    """Trained-proxy compute as multiples of the components' total compute, split over the mixtures."""
    seq_len: int = 128
    """Tokens per training sequence and per evaluation window."""
    batch_size: int = 16
    """Sequences per optimizer step."""
    lr: float = 3e-3
    """Peak learning rate (cosine, 5% warmup), all runs."""
    eval_tokens_per_domain: int = 12_000
    """Validation tokens per domain, split equally over its sources."""
    stream_tokens: int = 2_000_000
    """At most this many train tokens exported per source (training windows are drawn from it)."""
    bootstrap: int = 10_000
    """Bootstrap resamples (mixtures and documents resampled together, paired across methods)."""
    ceiling_min: float = 0.7
    """A target whose reference seed-to-seed rho (E0) is below this is declared uninformative."""
    margin: float = 0.05
    """Non-inferiority margin of E1 (macro rho, DeMix minus trained 1x)."""
    seed: int = 0
    """Seed of the mixture draw, the base and the validation sample."""
    selection_share: float = 0.5
    """Search check: share of each source's validation tokens in the selection half (the search sees only it)."""
    selection_seed: int = 16
    """Search check: seed of each source's document order in the selection/judgement split."""
    search_iterations: int = 3
    """Search check: iterations of the DeMix search (proxy.search.SearchSettings.iterations)."""
    search_per_iteration: int = 64
    """Search check: merged proxies in the first iteration, halved each later one (64 + 32 + 16, as `proxy search`)."""
    search_pool: int = 200_000
    """Search check: pool mixtures the predictors rank (one pool, shared by every searched pick)."""
    search_top_k: int = 128
    """Search check: top predicted pool mixtures averaged into each pick (`proxy search --top-k`)."""
    suite: str | None = None
    """A benchmark suite with generated task files (`offline`) every reference and proxy is also scored on
    through lm-eval (bench/reproduce_suite.py; issue 14), or None for held-out bpb only."""
    suite_limit: int = 24
    """Samples per suite task (lm-eval's limit): at 24 the suite adds about 1.5 s per model on one CPU core."""

    def __post_init__(self) -> None:
        if self.n_mixtures < 8:
            raise ProxyError(f"n_mixtures: {self.n_mixtures} is too few to rank (need >= 8)")
        if len(self.reference_seeds) < 2:
            raise ProxyError(f"reference_seeds: {self.reference_seeds} (need two for the noise ceiling)")
        for key in ("model", "baseline_model"):
            if getattr(self, key) not in SHAPES:
                raise ProxyError(f"{key}: {getattr(self, key)!r} is not one of {', '.join(SHAPES)}")
        if not 0 <= self.general_share < 1:
            raise ProxyError(f"general_share: {self.general_share} is not in [0, 1)")
        if not 0 < self.selection_share < 1:
            raise ProxyError(f"selection_share: {self.selection_share} is not in (0, 1)")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Protocol:
        known = {f.name for f in fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        return cls(**kw)


QUICK = Protocol(
    tag="decide-quick",
    n_mixtures=24,
    component_tokens=60_000,
    base_tokens=300_000,
    eval_tokens_per_domain=9_000,
    suite="offline",
)
FULL = Protocol(tag="decide-full", n_mixtures=64, suite="offline")
CUDA = Protocol(
    tag="decide-cuda",
    n_mixtures=96,
    reference_seeds=(0, 1, 2),
    model="tiny",
    baseline_model="micro",
    base_tokens=2_000_000,
    component_tokens=400_000,
    trained_multiples=(1.0, 2.0, 4.0, 6.0),
    batch_size=32,
    lr=2e-3,
    eval_tokens_per_domain=24_000,
    stream_tokens=4_000_000,
)
TOY = Protocol(
    tag="toy",
    n_mixtures=8,
    base_tokens=1_024,
    component_tokens=512,
    seq_len=32,
    batch_size=8,
    eval_tokens_per_domain=600,
    bootstrap=200,
    model="pico",
    baseline_model="pico",
    stream_tokens=20_000,
    search_iterations=2,
    search_per_iteration=6,
    search_pool=2_000,
    search_top_k=16,
)
PROTOCOLS = {"quick": QUICK, "full": FULL, "cuda": CUDA, "toy": TOY}


@dataclass
class Inputs:
    """Everything the runner needs, in memory; `save`/`load` are the two directions of the folder format.

    inputs.json, key by key:
        protocol     Protocol fields
        vocab_size   tokenizer vocabulary (int); eos_id: the EOS token id joining documents
        candidates   sorted candidate names (the merge's coordinates)
        sources      {source: {"domain", "candidate"}}
        mixtures     {name: {"alpha": {candidate: ratio}, "sources": {source: ratio}}}; "sources" is the
                     materialised mixture g x general + (1 - g) x alpha that references train on
        components   {"g<g>": {candidate: {source: ratio}}} for g in (general_share, 0)
        base         {source: ratio} of the base (general data)
        general      what "general" means ({level, ratios}, mixer.materialise.DEFAULT_GENERAL)
    """

    protocol: Protocol
    vocab_size: int
    eos_id: int
    candidates: list[str]
    sources: dict[str, dict[str, str]]
    mixtures: dict[str, dict[str, dict[str, float]]]
    components: dict[str, dict[str, dict[str, float]]]
    base: dict[str, float]
    streams: dict[str, np.ndarray] = field(repr=False)
    validation: list[dict[str, Any]] = field(repr=False)
    general: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_GENERAL))

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        (folder / "streams").mkdir(parents=True, exist_ok=True)
        dtype = np.uint16 if self.vocab_size <= 65_536 else np.uint32
        for source, arr in self.streams.items():
            np.save(folder / "streams" / f"{source}.npy", arr.astype(dtype))
        with open(folder / VALIDATION_FILE, "w") as f:
            for doc in self.validation:
                f.write(
                    json.dumps(
                        {"source": doc["source"], "tokens": [int(t) for t in doc["tokens"]], "text": doc["text"]},
                        ensure_ascii=False,
                    )
                    + "\n"
                )
        meta = {
            "protocol": asdict(self.protocol),
            "vocab_size": self.vocab_size,
            "eos_id": self.eos_id,
            "candidates": self.candidates,
            "sources": self.sources,
            "mixtures": self.mixtures,
            "components": self.components,
            "base": self.base,
            "general": self.general,
        }
        tmp = folder / f".{INPUTS_FILE}.tmp"
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
        tmp.replace(folder / INPUTS_FILE)  # inputs.json last: its presence means the folder is complete
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Inputs:
        folder = Path(folder)
        path = folder / INPUTS_FILE
        if not path.exists():
            raise ProxyError(f"{path}: not found (export the inputs first: python bench/reproduce.py --export-only)")
        meta = json.loads(path.read_text())
        streams = {s: np.load(folder / "streams" / f"{s}.npy").astype(np.int64) for s in meta["sources"]}
        validation = [json.loads(line) for line in (folder / VALIDATION_FILE).read_text().splitlines() if line]
        return cls(
            Protocol.from_dict(meta["protocol"]),
            int(meta["vocab_size"]),
            int(meta["eos_id"]),
            list(meta["candidates"]),
            meta["sources"],
            meta["mixtures"],
            meta["components"],
            meta["base"],
            streams,
            validation,
            meta.get("general") or dict(DEFAULT_GENERAL),
        )


def draw_mixtures(prior: dict[str, int], protocol: Protocol) -> dict[str, dict[str, float]]:
    """The protocol's mixtures over the candidates, fixed by its seed, drawn before any training."""
    names = sorted(prior)
    rows = sample_mixtures([prior[c] for c in names], protocol.n_mixtures, seed=protocol.seed + 100)
    width = max(2, len(str(protocol.n_mixtures - 1)))
    return {f"mix-{i:0{width}d}": {c: float(r) for c, r in zip(names, row)} for i, row in enumerate(rows)}


def materialised_sources(alpha: dict[str, float], rows: list[dict[str, Any]], g: float, where: str) -> dict[str, float]:
    """Source ratios of g x general + (1 - g) x alpha (mixer.materialise, as `mixer resolve` does)."""
    mix = Mixture(
        name="m", level="candidate", ratios=alpha, provenance={"general_share": g, "general": DEFAULT_GENERAL}
    )
    return dict(materialise(mix, rows, general_share=g, where=where).mixture.ratios)


def _read_docs(paths: list[str], columns: list[str]) -> list[dict[str, Any]]:
    out = []
    for p in paths:
        out.extend(pq.read_table(p, columns=columns).to_pylist())
    return out


def export_inputs(db: str | Path, protocol: Protocol) -> Inputs:
    """Read the manifest and shards once: mixtures, materialised ratios, train streams, validation documents."""
    from manifests import get_meta, list_shards, list_sources, open_manifest  # noqa: PLC0415 - DuckDB, CPU side only

    with open_manifest(db, read_only=True) as con:
        meta = get_meta(con)
    rows = [r for r in list_sources(db) if int(r["n_tokens"]) > 0]
    sources = {r["source"]: {"domain": r["domain"], "candidate": r["candidate"]} for r in rows if r.get("candidate")}
    prior: dict[str, int] = {}
    for r in rows:
        if r.get("candidate"):
            prior[r["candidate"]] = prior.get(r["candidate"], 0) + int(r["n_tokens"])
    where = str(db)
    g = protocol.general_share
    mixtures = {
        name: {"alpha": alpha, "sources": materialised_sources(alpha, rows, g, where)}
        for name, alpha in draw_mixtures(prior, protocol).items()
    }
    components = {
        f"g{share:g}": {c: materialised_sources({c: 1.0}, rows, share, where) for c in sorted(prior)}
        for share in sorted({g, 0.0})
    }
    base = _general_ratios(rows)
    eos = int(meta["eos_id"])
    rng = np.random.default_rng(protocol.seed)
    streams = {}
    for source in sorted(sources):
        paths = [s["abs_path"] for s in list_shards(db, split="train") if s["source"] == source]
        docs = _read_docs(paths, ["tokens"])
        order = rng.permutation(len(docs))
        parts, used = [], 0
        for i in order:  # a seeded sample of whole documents, up to stream_tokens
            toks = docs[i]["tokens"]
            parts.append(np.asarray(toks + [eos], dtype=np.int64))
            used += len(toks) + 1
            if used >= protocol.stream_tokens:
                break
        streams[source] = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    validation = _validation_docs(db, sources, protocol, list_shards)
    return Inputs(
        protocol, int(meta["vocab_size"]), eos, sorted(prior), sources, mixtures, components, base, streams, validation
    )


def _general_ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    general = [r for r in rows if r["domain"] in DEFAULT_GENERAL["ratios"]]
    if not general:
        raise ProxyError("the corpus has no general-domain source with tokens to train the base on")
    total = sum(int(r["n_tokens"]) for r in general)
    return {r["source"]: int(r["n_tokens"]) / total for r in general}


def _validation_docs(db: str | Path, sources: dict[str, dict[str, str]], protocol: Protocol, list_shards) -> list[dict]:
    """Equal tokens per source within each domain (proxy.evaluate's rule); a seeded sample of whole documents."""
    shards: dict[str, list[str]] = {}
    capacity: dict[str, int] = {}
    for s in list_shards(db, split="validation"):
        if s["source"] in sources and s["n_tokens"]:
            shards.setdefault(s["source"], []).append(s["abs_path"])
            capacity[s["source"]] = capacity.get(s["source"], 0) + int(s["n_tokens"])
    out = []
    for domain in sorted({sources[s]["domain"] for s in shards}):
        members = {s: capacity[s] for s in shards if sources[s]["domain"] == domain}
        for source, budget in sorted(equal_split(protocol.eval_tokens_per_domain, members).items()):
            docs = _read_docs(sorted(shards[source]), ["text", "tokens"])
            rng = np.random.default_rng([protocol.seed, zlib.crc32(source.encode())])
            used = 0
            for i in rng.permutation(len(docs)):
                n = len(docs[i]["tokens"])
                if n == 0 or used + n > budget and used:
                    continue
                out.append({"source": source, "tokens": docs[i]["tokens"], "text": docs[i]["text"]})
                used += n
                if used >= budget:
                    break
    if not out:
        raise ProxyError(f"{db}: no validation documents (split='validation') to score")
    return out


def trained_tokens(protocol: Protocol, n_candidates: int, multiple: float) -> int:
    """Tokens per mixture of the trained proxy: `multiple` x the components' total tokens over the mixtures."""
    step = protocol.batch_size * protocol.seq_len
    per = multiple * n_candidates * protocol.component_tokens / protocol.n_mixtures
    return max(step, int(round(per / step)) * step)


def baseline_tokens(protocol: Protocol, n_candidates: int, n_model: int, n_baseline: int) -> int:
    """Tokens per mixture of the RegMix-style baseline: 6ND equal to the components' total compute."""
    step = protocol.batch_size * protocol.seq_len
    per = n_candidates * protocol.component_tokens * n_model / (protocol.n_mixtures * n_baseline)
    return max(step, int(math.floor(per / step)) * step)
