"""How each issue-10 fix moves the searched mixture: one search per variant over the same components.

    make demo && .venv/bin/python bench/search_attribution.py            # the demo's corpus and components

Variants: all fixes; the old per-domain evaluation (only the alphabetically first source of each domain is
scored); the old pool (the prior sharpened by 1/0.7 instead of flattened by 0.7). Every answer is judged on
the fixed, all-source evaluation. Materialisation does not change alpha, only the plan's data, so its effect
is printed as alpha beside the materialised share. About 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from manifests import get_meta, list_shards, list_sources, open_manifest  # noqa: E402
from mixer import Mixture  # noqa: E402
from mixer.materialise import GeneralPart, materialised_shares  # noqa: E402
from proxy import (  # noqa: E402
    PredictorSettings,
    ProxyFactory,
    SamplingSettings,
    SearchSettings,
    ValidationSet,
    candidate_tokens,
    evaluate_model,
    flat_metrics,
    load_components,
    run_search,
)


def first_source_only(db: str, tokens_per_domain: int, seq_len: int) -> ValidationSet:
    """The old evaluation: each domain's validation documents from its alphabetically first source only."""
    rows = list_sources(db)
    domain_of = {r["source"]: r["domain"] for r in rows}
    first: dict[str, str] = {}
    for r in sorted(rows, key=lambda r: r["source"]):
        first.setdefault(r["domain"], r["source"])
    with open_manifest(db, read_only=True) as con:
        eos = int(get_meta(con)["eos_id"])
    docs: dict[str, list] = {}
    for sh in list_shards(db, split="validation"):
        if sh["source"] == first[domain_of[sh["source"]]]:
            t = pq.read_table(sh["abs_path"], columns=["text", "tokens"])
            for text, ids in zip(t["text"].to_pylist(), t["tokens"].to_pylist()):
                docs.setdefault(domain_of[sh["source"]], []).append((ids, text, sh["source"]))
    return ValidationSet.from_documents(docs, eos, tokens_per_domain, seq_len)


def mean_bpb(model, vset: ValidationSet) -> float:
    metrics = flat_metrics(evaluate_model(model, vset))
    return sum(metrics[f"bpb/{d}"] for d in vset.domain_names) / len(vset.domain_names)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", default=str(ROOT / "out/demo/manifest.duckdb"))
    p.add_argument("--components", default=str(ROOT / "runs/demo/components"))
    p.add_argument("--per-iteration", type=int, default=32)
    p.add_argument("--pool", type=int, default=20_000)
    p.add_argument("--out", default=str(ROOT / "runs/demo/search_attribution.json"))
    args = p.parse_args(argv)
    comps = load_components(args.components)
    factory = ProxyFactory(comps, device="cpu")
    prior = candidate_tokens(args.db)
    fixed_eval = ValidationSet.from_manifest(args.db, 20_000, 256)
    settings = SearchSettings(
        iterations=3,
        per_iteration=args.per_iteration,
        pool=args.pool,
        top_k=128,
        seed=0,
        predictor=PredictorSettings(kind="lightgbm", seed=0),
    )
    variants = [
        ("all fixes", fixed_eval, settings),
        ("old coverage (first source per domain)", first_source_only(args.db, 20_000, 256), settings),
        ("old pool (sharpened prior)", fixed_eval, replace(settings, sampling=SamplingSettings(temperature=1 / 0.7))),
    ]
    results = {}
    for name, vset, st in variants:
        res = run_search(
            lambda r, v=vset: flat_metrics(evaluate_model(factory.proxy(r), v)),
            comps.names,
            prior,
            "bpb",
            st,
            progress=True,
        )
        # every answer is judged on the same, all-source evaluation
        results[name] = {
            "alpha": res.best_ratios,
            "bpb_all_sources": mean_bpb(factory.proxy(res.best_ratios), fixed_eval),
        }
    general = GeneralPart.from_provenance(comps.general_provenance())
    fixed_alpha = Mixture("fixed", "candidate", results["all fixes"]["alpha"])
    rows = list_sources(args.db)
    shares = materialised_shares(fixed_alpha, general, rows)
    candidate_of = {r["source"]: r["candidate"] for r in rows}
    materialised = {c: float(sum(q for s, q in shares.items() if candidate_of[s] == c)) for c in comps.names}
    table = Table(title="the searched mixture under each variant (alpha), judged on all sources")
    for col in ("variant", *comps.names, "bpb (all sources)"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for name, r in results.items():
        table.add_row(name, *(f"{r['alpha'][c]:.3f}" for c in comps.names), f"{r['bpb_all_sources']:.4f}")
    table.add_row("materialised share (all fixes)", *(f"{materialised[c]:.3f}" for c in comps.names), "")
    Console(width=160).print(table)
    base = results["all fixes"]["bpb_all_sources"]
    for name, r in results.items():
        print(f"{name}: {r['bpb_all_sources'] - base:+.4f} bpb against all fixes")
    Path(args.out).write_text(json.dumps({"variants": results, "materialised": materialised}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
