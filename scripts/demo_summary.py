"""The last screen of `make demo`: what the flow found and where each output is."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from corpus import format_tokens
from manifests import list_sources


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--runs", type=Path, required=True)
    args = p.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 140)  # a log file still gets whole names
    sources = list_sources(args.corpus)
    best = json.loads((args.runs / "search" / "best_mixture.json").read_text())
    plan = json.loads((args.runs / "plan.json").read_text())

    prov = best.get("provenance", {})
    measured = prov.get("measured_metrics", {})
    materialised = plan.get("mixture", {}).get("provenance", {}).get("materialised", {})
    g = float(materialised.get("general_share", 0.0))
    t = Table(title="DeMix demo: the searched mixture (alpha), the data it stands for, and its plan")
    for col in (
        "candidate",
        "alpha",
        "bpb (best proxy)",
        "materialised share",
        "corpus tokens",
        "source",
        "allotted",
        "epochs",
    ):
        t.add_column(col, justify="left" if col in ("candidate", "source") else "right")
    by_candidate: dict[str, list[dict]] = {}
    for s in plan["sources"]:
        by_candidate.setdefault(s.get("candidate") or s["domain"], []).append(s)
    corpus_tokens = {}
    for s in sources:
        if s["candidate"]:
            corpus_tokens[s["candidate"]] = corpus_tokens.get(s["candidate"], 0) + int(s["n_tokens"])
    for cand, ratio in sorted(best["ratios"].items(), key=lambda kv: -kv[1]):
        rows = by_candidate.get(cand, [])
        bpb = measured.get(f"bpb_candidate/{cand}")
        share = sum(float(s["share"]) for s in rows)
        first = True
        for s in rows or [{}]:
            t.add_row(
                cand if first else "",
                f"{ratio:.3f}" if first else "",
                (f"{bpb:.4f}" if bpb is not None else "-") if first else "",
                f"{share:.3f}" if first else "",
                format_tokens(corpus_tokens.get(cand, 0)) if first else "",
                s.get("source", "-"),
                format_tokens(int(s["allotted_tokens"])) if s else "-",
                f"{s['epochs']:.2f}" if s else "-",
            )
            first = False
    console.print(t)
    if materialised.get("as_is", True):
        console.print("plan: the mixture resolved as-is (no general share recorded or --as-is)")
    else:
        console.print(
            f"plan: materialised with the components' general share g = {g:g}: "
            f"{g:g} x general + {1 - g:g} x alpha (every component trained on {g:.0%} general data)"
        )
    if "measured_objective" in prov:
        console.print(
            f"best mixture: measured objective {prov['measured_objective']:.4f} "
            f"(predicted {prov.get('predicted_objective', float('nan')):.4f}) over "
            f"{prov.get('n_evaluated', '?')} merged proxies"
        )
    where = Table(title="outputs")
    where.add_column("what")
    where.add_column("where")
    for what, path in (
        ("corpus shards + manifest", args.corpus / "manifest.duckdb"),
        ("base model", args.runs / "base"),
        ("components", args.runs / "components"),
        ("search (evaluated mixtures, plots)", args.runs / "search"),
        ("best mixture", args.runs / "search" / "best_mixture.json"),
        (f"plan ({format_tokens(int(plan['target_tokens']))} tokens)", args.runs / "plan.json"),
        ("Hugging Face dataset release", args.runs / "release"),
    ):
        where.add_row(what, str(path))
    console.print(where)
    console.print(
        f"next: `manifests summary --db {args.corpus / 'manifest.duckdb'}`, "
        f"`mixer sample --plan {args.runs / 'plan.json'} --n 2 --decode`"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
