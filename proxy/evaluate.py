"""Per-domain held-out loss (nats/token) and bits per byte of a model on the corpus's validation shards.

Evaluation text: every source that has validation documents contributes to its domain, with **equal
tokens per source**: the domain's token budget is split evenly over its sources (a source with fewer
validation tokens gives all it has and the rest is re-split over the others). Equal shares, not
shares proportional to size, because a domain's sources are its quality tiers and candidates: a
small high-tier source must weigh as much in the domain's score as a large medium-tier one, as each
benchmark counts equally in the paper's domain score; a source's own size already enters the
search through the prior. Within a source the documents are a seeded sample: shards in a seeded
order, rows in a seeded permutation, whole documents taken while they fit the source's budget (at
least one), so only the shards needed are read, whatever the corpus size.

Documents are packed: one stream `EOS d1 EOS d2 EOS ...` per domain cut into windows of seq_len
predicted tokens (no overlap, so each token is predicted once with the context since its window
start). Only document tokens are scored (predicting EOS carries no bytes), so loss = sum NLL /
document tokens and bpb = sum NLL / ln 2 / UTF-8 bytes of the documents. Each scored token carries
its source, so the same pass also gives bpb per source and per candidate.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from corpus.errors import UsageError
from manifests import list_shards, list_sources, read_corpus_meta
from proxy.benchmarks import (
    SuiteRunner,
    default_cache,
    load_tokenizer_for,
    prepare_suite,
)
from proxy.errors import ProxyError
from proxy.merge import load_mixture_ratios
from proxy.proxies import ProxyFactory
from proxy.suite import load_suite

IGNORE = -100
Doc = tuple  # (token ids, text) or (token ids, text, source)


@dataclass(frozen=True)
class DomainBatch:
    """Packed evaluation windows of one domain: inputs/targets [N, seq_len], IGNORE where not scored.

    ``source_index`` [N, seq_len] gives, for every scored target, the index of its source in
    ``sources`` (-1 where not scored); ``source_tokens`` and ``source_bytes`` are per source.
    """

    domain: str
    inputs: torch.Tensor
    targets: torch.Tensor
    n_docs: int
    n_tokens: int
    n_bytes: int
    sources: tuple[str, ...]
    source_index: torch.Tensor
    source_tokens: tuple[int, ...]
    source_bytes: tuple[int, ...]
    source_docs: tuple[int, ...]


def equal_split(budget: int, capacity: Mapping[str, int]) -> dict[str, int]:
    """Split ``budget`` tokens evenly over sources, none above its ``capacity`` (water-filling); ints."""
    left, out = budget, {}
    open_ = sorted(capacity, key=lambda s: (capacity[s], s))
    while open_:
        share = left // len(open_)
        small = [s for s in open_ if capacity[s] <= share]
        if not small:
            for i, s in enumerate(sorted(open_)):
                out[s] = share + (1 if i < left - share * len(open_) else 0)
            break
        for s in small:
            out[s] = capacity[s]
            left -= capacity[s]
            open_.remove(s)
    return out


def _take(docs: Sequence[Doc], budget: int) -> list[Doc]:
    """Whole documents, in order, while they fit ``budget`` tokens (the first one always)."""
    out, used = [], 0
    for d in docs:
        if out and used + len(d[0]) > budget:
            continue
        out.append(d)
        used += len(d[0])
        if used >= budget:
            break
    return out


def _pack(domain: str, docs: Sequence[Doc], sources: tuple[str, ...], eos_id: int, seq_len: int) -> DomainBatch:
    index = {s: i for i, s in enumerate(sources)}
    stream, tag = [eos_id], [-1]
    tokens, nbytes, ndocs = [0] * len(sources), [0] * len(sources), [0] * len(sources)
    for d in docs:
        ids, text, src = d[0], d[1], (d[2] if len(d) > 2 else domain)
        k = index[src]
        stream.extend(ids)
        tag.extend([k] * len(ids))
        stream.append(eos_id)
        tag.append(-1)
        tokens[k] += len(ids)
        nbytes[k] += len(text.encode("utf-8"))  # bits per *byte*: UTF-8 bytes, not characters
        ndocs[k] += 1
    n_windows = math.ceil((len(stream) - 1) / seq_len)
    total = n_windows * seq_len + 1
    ids = torch.full((total,), eos_id, dtype=torch.long)
    ids[: len(stream)] = torch.tensor(stream, dtype=torch.long)
    tags = torch.full((total,), -1, dtype=torch.long)
    tags[: len(tag)] = torch.tensor(tag, dtype=torch.long)
    inputs = ids[:-1].view(n_windows, seq_len)
    targets = ids[1:].view(n_windows, seq_len)
    tags = tags[1:].view(n_windows, seq_len)
    targets = torch.where(tags >= 0, targets, torch.full_like(targets, IGNORE))
    return DomainBatch(
        domain,
        inputs.clone(),
        targets,
        sum(ndocs),
        sum(tokens),
        sum(nbytes),
        sources,
        tags,
        tuple(tokens),
        tuple(nbytes),
        tuple(ndocs),
    )


@dataclass(frozen=True)
class ValidationSet:
    """Per-domain evaluation windows, built once and scored against many proxies."""

    domains: tuple[DomainBatch, ...]
    seq_len: int
    tokens_per_domain: int
    candidate_of: tuple[tuple[str, str], ...] = ()
    """(source, candidate) pairs, for bpb per candidate."""

    @classmethod
    def from_documents(
        cls,
        docs_by_domain: Mapping[str, Sequence[Doc]],
        eos_id: int,
        tokens_per_domain: int = 20_000,
        seq_len: int = 256,
        candidate_of: Mapping[str, str] | None = None,
    ) -> ValidationSet:
        """Build from {domain: [(token ids, text[, source]), ...]}: equal tokens per source, documents in the given
        order (a document without a source belongs to a source named like its domain). Raises ValueError on an
        empty domain."""
        out = []
        for domain in sorted(docs_by_domain):
            by_source: dict[str, list[Doc]] = {}
            for d in docs_by_domain[domain]:
                by_source.setdefault(d[2] if len(d) > 2 else domain, []).append(d)
            capacity = {s: sum(len(d[0]) for d in ds) for s, ds in by_source.items()}
            budgets = equal_split(tokens_per_domain, {s: c for s, c in capacity.items() if c > 0})
            chosen = [d for s in sorted(budgets) for d in _take(by_source[s], budgets[s])]
            if not chosen:
                raise ProxyError(f"domain {domain!r}: no validation documents with tokens")
            out.append(_pack(domain, chosen, tuple(sorted(budgets)), eos_id, seq_len))
        return cls(tuple(out), seq_len, tokens_per_domain, tuple(sorted((candidate_of or {}).items())))

    @classmethod
    def from_manifest(
        cls,
        db: str | os.PathLike,
        tokens_per_domain: int = 20_000,
        seq_len: int = 256,
        domains: list[str] | None = None,
        seed: int = 0,
    ) -> ValidationSet:
        """Build from the manifest's validation shards: every source of a domain, equal tokens per source, a seeded
        document sample within each; raises ValueError."""
        meta = read_corpus_meta(db)
        if meta.eos_id is None:
            raise ProxyError(f"{db}: meta.eos_id missing; cannot pack documents")
        rows = {s["source"]: s for s in list_sources(db)}
        shards: dict[str, list[dict[str, Any]]] = {}
        for shard in list_shards(db, split="validation"):
            row = rows.get(shard["source"])
            if row is None or (domains is not None and row["domain"] not in domains) or not shard["n_tokens"]:
                continue
            shards.setdefault(shard["source"], []).append(shard)
        if not shards:
            raise ProxyError(f"{db}: no validation shards (split='validation') to evaluate on")
        docs: dict[str, list[Doc]] = {}
        for domain in sorted({rows[s]["domain"] for s in shards}):
            members = {s: sum(int(sh["n_tokens"]) for sh in shards[s]) for s in shards if rows[s]["domain"] == domain}
            for source, budget in sorted(equal_split(tokens_per_domain, members).items()):
                docs.setdefault(domain, []).extend(_sample_source(shards[source], source, budget, seed))
        candidate_of = {s: rows[s]["candidate"] for s in shards if rows[s].get("candidate")}
        return cls.from_documents(docs, meta.eos_id, tokens_per_domain, seq_len, candidate_of)

    @property
    def domain_names(self) -> list[str]:
        """Domains in evaluation order."""
        return [d.domain for d in self.domains]


def _sample_source(shards: Sequence[Mapping[str, Any]], source: str, budget: int, seed: int) -> list[Doc]:
    """A seeded sample of whole documents of one source, about ``budget`` tokens, reading only the shards needed."""
    rng = np.random.default_rng([seed, zlib.crc32(source.encode())])
    out: list[Doc] = []
    used = 0
    for i in rng.permutation(len(shards)):
        table = pq.read_table(shards[i]["abs_path"], columns=["text", "tokens"])
        texts, tokens = table.column("text").to_pylist(), table.column("tokens").to_pylist()
        for j in rng.permutation(len(texts)):
            n = len(tokens[j])
            if n == 0 or (out and used + n > budget):
                continue
            out.append((tokens[j], texts[j], source))
            used += n
            if used >= budget:
                return out
    return out


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, vset: ValidationSet, batch_size: int = 16) -> dict[str, dict[str, Any]]:
    """{domain: {"loss": nats/token, "bpb": bits/byte, "tokens", "bytes", "nll", "sources": {source: {...}}}}.

    Per source: the same keys plus its candidate (or None); ``nll`` is the summed loss in nats.
    """
    model.eval()
    device = next(model.parameters()).device
    candidate_of = dict(vset.candidate_of)
    results = {}
    for d in vset.domains:
        nll = torch.zeros(len(d.sources) + 1, dtype=torch.float64, device=device)
        for start in range(0, d.inputs.shape[0], batch_size):
            x = d.inputs[start : start + batch_size].to(device)
            y = d.targets[start : start + batch_size].to(device)
            logits = model(input_ids=x).logits.float()
            per_token = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE, reduction="none"
            ).double()
            # bucket 0 collects unscored positions (their loss is 0), bucket i + 1 source i
            where = d.source_index[start : start + batch_size].to(device).reshape(-1) + 1
            nll.index_add_(0, where, per_token)
        per_source = nll[1:].tolist()
        total = float(sum(per_source))
        results[d.domain] = {
            "loss": total / d.n_tokens,
            "bpb": total / math.log(2) / d.n_bytes,
            "tokens": d.n_tokens,
            "bytes": d.n_bytes,
            "nll": total,
            "sources": {
                s: {
                    "loss": per_source[i] / max(d.source_tokens[i], 1),
                    "bpb": per_source[i] / math.log(2) / max(d.source_bytes[i], 1),
                    "tokens": d.source_tokens[i],
                    "bytes": d.source_bytes[i],
                    "nll": per_source[i],
                    "candidate": candidate_of.get(s),
                }
                for i, s in enumerate(d.sources)
            },
        }
    return results


def flat_metrics(results: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Flat metric names: "bpb/<domain>", "loss/<domain>", "bpb_source/<source>", "bpb_candidate/<candidate>".

    Objectives over "bpb" use the per-domain "bpb/*" metrics only; the per-source and per-candidate ones
    show what each component learned.
    """
    out: dict[str, float] = {}
    cand_nll: dict[str, float] = {}
    cand_bytes: dict[str, int] = {}
    for domain, r in results.items():
        out[f"bpb/{domain}"] = float(r["bpb"])
        out[f"loss/{domain}"] = float(r["loss"])
        for source, sr in (r.get("sources") or {}).items():
            out[f"bpb_source/{source}"] = float(sr["bpb"])
            if sr.get("candidate"):
                cand_nll[sr["candidate"]] = cand_nll.get(sr["candidate"], 0.0) + float(sr["nll"])
                cand_bytes[sr["candidate"]] = cand_bytes.get(sr["candidate"], 0) + int(sr["bytes"])
    for cand in sorted(cand_nll):
        out[f"bpb_candidate/{cand}"] = cand_nll[cand] / math.log(2) / max(cand_bytes[cand], 1)
    return out


def lm_eval_scores(model_dir: str, tasks: list[str], batch_size: int = 8) -> dict[str, float]:
    """Benchmark accuracies through lm-eval-harness (GPU users); raises RuntimeError when lm_eval is absent."""
    try:
        import lm_eval  # noqa: PLC0415 - heavy, imported when used
    except ImportError:
        raise ProxyError("--tasks needs lm-eval-harness (pip install lm-eval) and its datasets") from None
    res = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={model_dir}", tasks=tasks, batch_size=batch_size)
    scores = {}
    for task, vals in res["results"].items():
        for key in ("acc_norm,none", "acc,none", "exact_match,none", "pass@1,none"):
            if key in vals:
                scores[f"{key.split(',')[0]}/{task}"] = float(vals[key])
                break
    return scores


def evaluate_report(
    db: str | os.PathLike,
    *,
    model: str | None = None,
    components: str | None = None,
    mixture: str | None = None,
    tokens_per_domain: int = 20_000,
    seq_len: int = 256,
    batch_size: int = 16,
    tasks: list[str] | None = None,
    suite: str | None = None,
    suite_cache: str | None = None,
    limit: int | None = None,
    device: str | None = None,
    dtype: str = "float32",
) -> dict[str, Any]:
    """`proxy evaluate`: held-out metrics of a model folder, or of the in-memory proxy of `mixture` over
    `components`, with lm-eval `tasks` and a benchmark `suite` when asked; returns the JSON-ready report.

    Raises UsageError for a bad combination of inputs, ProxyError / SuiteError naming a bad input.
    """
    from transformers import AutoModelForCausalLM  # noqa: PLC0415 - heavy (seconds)

    if (model is None) == (components is None):
        raise UsageError("give --model DIR, or --components DIR with --mixture FILE")
    prepared = None
    if suite:  # a bad suite, unknown task or missing data file is refused before any model loads
        if limit is not None and limit < 1:
            raise UsageError(f"--limit {limit}: expected at least 1 sample per task")
        loaded = load_suite(suite)
        prepared = prepare_suite(loaded, suite_cache or default_cache(loaded, db), db)
    vset = ValidationSet.from_manifest(db, tokens_per_domain, seq_len)
    torch_dtype = getattr(torch, dtype)
    if model is not None:
        net = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype, use_safetensors=True)
        if device:
            net = net.to(device)
        label = model
    else:
        if mixture is None:
            raise UsageError("--components needs --mixture")
        name, ratios = load_mixture_ratios(mixture)
        factory = ProxyFactory(components, device=device, dtype=torch_dtype)
        net = factory.proxy(ratios)
        label = f"proxy {name}"
    results = evaluate_model(net, vset, batch_size=batch_size)
    report: dict[str, Any] = {
        "model": label,
        "seq_len": seq_len,
        "tokens_per_domain": tokens_per_domain,
        "domains": results,
        "mean_bpb": sum(r["bpb"] for r in results.values()) / len(results),
        "candidates": {
            k.split("/", 1)[1]: v for k, v in flat_metrics(results).items() if k.startswith("bpb_candidate/")
        },
    }
    if tasks:
        if model is None:
            raise UsageError("--tasks needs --model (a folder lm-eval can load)")
        report["tasks"] = lm_eval_scores(model, tasks)
    if prepared is not None:
        tok_dir = model if model is not None else factory.components.paths[0]
        runner = SuiteRunner(prepared, net, load_tokenizer_for(tok_dir, db), batch_size=batch_size, limit=limit)
        scores = runner.score()
        report["suite"] = {
            "name": prepared.suite.name,
            "combine": prepared.suite.combine,
            "limit": limit,
            "scores": scores,
            "seconds": runner.seconds,
        }
        if prepared.suite.combine == "mean":  # a percentile needs a population of proxies: see proxy search
            report["suite"]["combined"] = prepared.suite.combined([scores])[0]
    return report
