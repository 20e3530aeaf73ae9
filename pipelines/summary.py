"""The build summary: docs in/out per step and reason, tokens per source and domain, wall time."""

from __future__ import annotations

from typing import Any

from corpus import Recipe
from corpus.tokens import format_tokens
from manifests import get_meta, open_manifest
from pipelines.build_config import located
from pipelines.step_order import step_row_key


def summarize(recipe: Recipe, cfg, timings: dict[str, float], wall_s: float) -> dict[str, Any]:
    """A JSON-serialisable summary read back from the manifest (so it also describes resumed runs)."""
    cfg = located(cfg)
    with open_manifest(cfg.out, read_only=True) as con:  # a URL: open_manifest reads a local copy
        per_split = con.execute("""
            SELECT s.source, src.domain, src.tier, src.candidate, s.split, count(*), sum(s.n_docs), sum(s.n_tokens),
                   sum(s.n_bytes)
            FROM shards s JOIN sources src USING (source) GROUP BY ALL ORDER BY s.source, s.split""").fetchall()
        steps = con.execute("SELECT source, step, docs_in, docs_out, reason, count FROM step_stats").fetchall()
        meta = get_meta(con)  # the stored strings, as the summary has always shown them
    sources: dict[str, dict[str, Any]] = {}
    for src, dom, tier, cand, split, n_shards, n_docs, n_tok, n_bytes in per_split:
        row = sources.setdefault(
            src,
            {
                "domain": dom,
                "tier": tier,
                "candidate": cand,
                "shards": 0,
                "train_docs": 0,
                "train_tokens": 0,
                "validation_docs": 0,
                "validation_tokens": 0,
                "bytes": 0,
            },
        )
        row["shards"] += int(n_shards)
        row[f"{split}_docs"] += int(n_docs)
        row[f"{split}_tokens"] += int(n_tok)
        row["bytes"] += int(n_bytes)
    domains: dict[str, dict[str, int]] = {}
    for row in sources.values():
        d = domains.setdefault(row["domain"], {"train_tokens": 0, "validation_tokens": 0, "train_docs": 0})
        for k in d:
            d[k] += row[k]
    step_rows = sorted(
        (
            {
                "source": s,
                "step": st,
                "docs_in": int(i or 0),
                "docs_out": int(o or 0),
                "reason": r,
                "count": int(c or 0),
            }
            for s, st, i, o, r, c in steps
        ),
        key=step_row_key,
    )
    return {
        "recipe": recipe.name,
        "out": cfg.out,
        "executor": cfg.executor,
        "tasks": cfg.tasks,
        "workers": cfg.workers,
        "limit": cfg.limit,
        "config_hash": recipe.config_hash(),
        "tokenizer": {
            k: meta.get(k) for k in ("tokenizer_name", "tokenizer_hash", "vocab_size", "eos_token", "eos_id")
        },
        "sources": sources,
        "domains": domains,
        "steps": step_rows,
        "train_tokens": sum(r["train_tokens"] for r in sources.values()),
        "validation_tokens": sum(r["validation_tokens"] for r in sources.values()),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "wall_s": round(wall_s, 2),
    }


def render(summary: dict[str, Any], console) -> None:
    """Print the summary as rich tables: docs per step with drop reasons, tokens per source and domain."""
    from rich.table import Table

    steps = Table(title="Documents per step (top drop reasons; all of them in the manifest's step_stats)")
    for col, just in (
        ("source", "left"),
        ("step", "left"),
        ("in", "right"),
        ("out", "right"),
        ("dropped: top reasons", "left"),
    ):
        steps.add_column(col, justify=just, overflow="fold", no_wrap=col in ("source", "step", "in", "out"))
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in summary["steps"]:
        row = rows.setdefault((r["source"], r["step"]), {"in": r["docs_in"], "out": r["docs_out"], "drops": []})
        if r["reason"] != "kept":
            row["drops"].append((r["count"], r["reason"].replace(":gopher_", ":")))
    last = None
    for (src, step), row in rows.items():
        top = sorted(row["drops"], reverse=True)
        text = ", ".join(f"{reason} {n:,}" for n, reason in top[:3]) + (
            f", +{len(top) - 3} more" if len(top) > 3 else ""
        )
        steps.add_row(src if src != last else "", step, f"{row['in']:,}", f"{row['out']:,}", text)
        last = src
    console.print(steps)
    srcs = Table(title="Tokens per source")
    for col in ("source", "domain/tier", "shards", "train docs", "train tokens", "val tokens"):
        srcs.add_column(col, justify="left" if col in ("source", "domain/tier") else "right", no_wrap=True)
    for name, r in sorted(summary["sources"].items()):
        srcs.add_row(
            name,
            f"{r['domain']}/{r['tier']}",
            str(r["shards"]),
            f"{r['train_docs']:,}",
            f"{r['train_tokens']:,}",
            f"{r['validation_tokens']:,}",
        )
    console.print(srcs)
    doms = Table(title="Tokens per domain")
    for col in ("domain", "train docs", "train tokens", "validation tokens"):
        doms.add_column(col, justify="left" if col == "domain" else "right", no_wrap=True)
    for name, d in sorted(summary["domains"].items()):
        doms.add_row(
            name,
            f"{d['train_docs']:,}",
            f"{d['train_tokens']:,} ({format_tokens(d['train_tokens'])})",
            f"{d['validation_tokens']:,}",
        )
    console.print(doms)
    t = summary["timings_s"]
    console.print(
        f"[bold]{format_tokens(summary['train_tokens'])}[/] train tokens, "
        f"{format_tokens(summary['validation_tokens'])} validation tokens in {summary['wall_s']:.1f}s "
        f"({', '.join(f'{k} {v:.1f}s' for k, v in t.items())}) -> {summary['out']}"
    )
