"""Per-domain held-out loss (nats/token) and bits per byte of a model on the corpus's validation shards.

Evaluation text: per domain, the validation documents of that domain's sources in a fixed order
(source name, shard path, row order), whole documents taken while the domain's token budget allows
(at least one). Documents are packed: one stream `EOS d1 EOS d2 EOS ...` cut into windows of seq_len
predicted tokens (no overlap, so each token is predicted once with the context since its window start).
Only document tokens are scored (predicting EOS carries no bytes), so
loss = sum NLL / document tokens and bpb = sum NLL / ln 2 / UTF-8 bytes of the documents.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Mapping

import pyarrow.parquet as pq
import torch

IGNORE = -100


@dataclass(frozen=True)
class DomainBatch:
    """Packed evaluation windows of one domain: inputs/targets [N, seq_len], IGNORE where not scored."""

    domain: str
    inputs: torch.Tensor
    targets: torch.Tensor
    n_docs: int
    n_tokens: int
    n_bytes: int


@dataclass(frozen=True)
class ValidationSet:
    """Per-domain evaluation windows, built once and scored against many proxies."""

    domains: tuple[DomainBatch, ...]
    seq_len: int
    tokens_per_domain: int

    @classmethod
    def from_documents(cls, docs_by_domain: Mapping[str, list[tuple[list[int], str]]], eos_id: int,
                       tokens_per_domain: int = 20_000, seq_len: int = 256) -> "ValidationSet":
        """Build from {domain: [(token ids, text), ...]} in the given order; raises ValueError on an empty domain."""
        out = []
        for domain in sorted(docs_by_domain):
            stream, scored, n_tokens, n_bytes, n_docs = [eos_id], [False], 0, 0, 0
            for ids, text in docs_by_domain[domain]:
                if n_docs and n_tokens + len(ids) > tokens_per_domain:
                    break
                stream.extend(ids)
                scored.extend([True] * len(ids))
                stream.append(eos_id)
                scored.append(False)
                n_tokens += len(ids)
                n_bytes += len(text.encode("utf-8"))
                n_docs += 1
            if n_docs == 0 or n_tokens == 0:
                raise ValueError(f"domain {domain!r}: no validation documents with tokens")
            n_windows = math.ceil((len(stream) - 1) / seq_len)
            total = n_windows * seq_len + 1
            ids = torch.full((total,), eos_id, dtype=torch.long)
            ids[: len(stream)] = torch.tensor(stream, dtype=torch.long)
            mask = torch.zeros(total, dtype=torch.bool)
            mask[: len(scored)] = torch.tensor(scored)
            inputs = torch.stack([ids[i * seq_len: (i + 1) * seq_len] for i in range(n_windows)])
            targets = torch.stack([ids[i * seq_len + 1: (i + 1) * seq_len + 1] for i in range(n_windows)])
            tmask = torch.stack([mask[i * seq_len + 1: (i + 1) * seq_len + 1] for i in range(n_windows)])
            targets = torch.where(tmask, targets, torch.full_like(targets, IGNORE))
            out.append(DomainBatch(domain, inputs, targets, n_docs, n_tokens, n_bytes))
        return cls(tuple(out), seq_len, tokens_per_domain)

    @classmethod
    def from_manifest(cls, db: str | os.PathLike, tokens_per_domain: int = 20_000, seq_len: int = 256,
                      domains: list[str] | None = None) -> "ValidationSet":
        """Build from the manifest's validation shards, grouped by the sources' domains; raises ValueError."""
        from manifests import get_meta, list_shards, list_sources, open_manifest  # noqa: PLC0415

        with open_manifest(db, read_only=True) as con:
            meta = get_meta(con)
        if "eos_id" not in meta:
            raise ValueError(f"{db}: meta.eos_id missing; cannot pack documents")
        domain_of = {s["source"]: s["domain"] for s in list_sources(db)}
        docs: dict[str, list[tuple[list[int], str]]] = {}
        budget_left: dict[str, int] = {}
        for shard in list_shards(db, split="validation"):
            domain = domain_of.get(shard["source"])
            if domain is None or (domains is not None and domain not in domains):
                continue
            if budget_left.setdefault(domain, tokens_per_domain) <= 0:
                continue
            table = pq.read_table(shard["abs_path"], columns=["text", "tokens"])
            for text, ids in zip(table.column("text").to_pylist(), table.column("tokens").to_pylist()):
                docs.setdefault(domain, []).append((ids, text))
                budget_left[domain] -= len(ids)
                if budget_left[domain] <= 0:
                    break
        if not docs:
            raise ValueError(f"{db}: no validation shards (split='validation') to evaluate on")
        return cls.from_documents(docs, int(meta["eos_id"]), tokens_per_domain, seq_len)

    @property
    def domain_names(self) -> list[str]:
        """Domains in evaluation order."""
        return [d.domain for d in self.domains]


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, vset: ValidationSet, batch_size: int = 16) -> dict[str, dict[str, float]]:
    """{domain: {"loss": nats/token, "bpb": bits/byte, "tokens", "bytes"}} of a causal LM on the validation set."""
    model.eval()
    device = next(model.parameters()).device
    results = {}
    for d in vset.domains:
        nll = torch.zeros((), dtype=torch.float64, device=device)
        for start in range(0, d.inputs.shape[0], batch_size):
            x = d.inputs[start:start + batch_size].to(device)
            y = d.targets[start:start + batch_size].to(device)
            logits = model(input_ids=x).logits.float()
            nll += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                                     ignore_index=IGNORE, reduction="sum").double()
        total = float(nll)
        results[d.domain] = {"loss": total / d.n_tokens, "bpb": total / math.log(2) / d.n_bytes,
                             "tokens": d.n_tokens, "bytes": d.n_bytes}
    return results


def flat_metrics(results: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Per-domain results as flat metric names: {"bpb/<domain>": .., "loss/<domain>": ..}."""
    out = {}
    for domain, r in results.items():
        out[f"bpb/{domain}"] = float(r["bpb"])
        out[f"loss/{domain}"] = float(r["loss"])
    return out


def lm_eval_scores(model_dir: str, tasks: list[str], batch_size: int = 8) -> dict[str, float]:
    """Benchmark accuracies through lm-eval-harness (GPU users); raises RuntimeError when lm_eval is absent."""
    try:
        import lm_eval  # noqa: PLC0415
    except ImportError:
        raise RuntimeError("--tasks needs lm-eval-harness (pip install lm-eval) and its datasets") from None
    res = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={model_dir}", tasks=tasks, batch_size=batch_size)
    scores = {}
    for task, vals in res["results"].items():
        for key in ("acc_norm,none", "acc,none", "exact_match,none", "pass@1,none"):
            if key in vals:
                scores[f"{key.split(',')[0]}/{task}"] = float(vals[key])
                break
    return scores


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    if (args.model is None) == (args.components is None):
        print("error: give --model DIR, or --components DIR with --mixture FILE", file=sys.stderr)
        return 2
    vset = ValidationSet.from_manifest(args.db, args.tokens_per_domain, args.seq_len)
    if args.model is not None:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, use_safetensors=True)
        label = args.model
    else:
        if args.mixture is None:
            print("error: --components needs --mixture", file=sys.stderr)
            return 2
        from proxy.merge import load_mixture_ratios  # noqa: PLC0415
        from proxy.proxies import ProxyFactory  # noqa: PLC0415
        name, ratios = load_mixture_ratios(args.mixture)
        model = ProxyFactory(args.components).proxy(ratios)
        label = f"proxy {name}"
    results = evaluate_model(model, vset, batch_size=args.batch_size)
    report: dict[str, Any] = {"model": label, "seq_len": args.seq_len, "tokens_per_domain": args.tokens_per_domain,
                              "domains": results,
                              "mean_bpb": sum(r["bpb"] for r in results.values()) / len(results)}
    if args.tasks:
        if args.model is None:
            print("error: --tasks needs --model (a folder lm-eval can load)", file=sys.stderr)
            return 2
        report["tasks"] = lm_eval_scores(args.model, args.tasks.split(","))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415
    table = Table(title=f"held-out metrics: {label}")
    for col in ("domain", "loss (nats/token)", "bits/byte", "tokens", "bytes"):
        table.add_column(col, justify="left" if col == "domain" else "right")
    for domain, r in results.items():
        table.add_row(domain, f"{r['loss']:.4f}", f"{r['bpb']:.4f}", str(r["tokens"]), str(r["bytes"]))
    table.add_row("mean", "", f"{report['mean_bpb']:.4f}", "", "")
    Console(file=sys.stdout).print(table)
    for task, v in report.get("tasks", {}).items():
        print(f"{task}: {v:.4f}")
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `proxy evaluate`."""
    p = subparsers.add_parser(
        "evaluate", help="per-domain held-out loss and bits per byte on the validation shards",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  proxy evaluate --model runs/merged/mix --db out/demo/manifest.duckdb\n"
               "  proxy evaluate --components runs/components --mixture mix.json --db out/demo --json\n")
    p.add_argument("--model", default=None, help="model folder to evaluate")
    p.add_argument("--components", default=None, help="components dir; evaluates the in-memory proxy of --mixture")
    p.add_argument("--mixture", default=None, help="Mixture JSON (with --components)")
    p.add_argument("--db", required=True, help="manifest.duckdb or the corpus folder")
    p.add_argument("--tokens-per-domain", type=int, default=20_000)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--tasks", default=None, help="comma-separated lm-eval-harness tasks (needs lm_eval installed)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_evaluate)
