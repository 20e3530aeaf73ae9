"""The dataset card (README.md) of a release, generated from the plan, its recipe, its layout and the written files.

Two cards: ``render_card`` for a release with data, ``render_recipe_card`` for a recipe-only one.
Both state each source's licence and upstream URL and the recipe's filter, dedup and
decontamination settings, from the recipe the plan was built from (``mixer.release_recipe``).
"""

from __future__ import annotations

import json
import os
from typing import Any

import yaml

from corpus import Recipe, format_tokens
from mixer.plan import Plan
from mixer.release_layout import ReleaseLayout
from mixer.sampler import Sampler


def _mixture_table(m: dict) -> list[str]:
    """The card's "## Mixture" section: the mixture's ratios, one row per key."""
    return ["## Mixture", "", "| key | ratio |", "|---|---|",
            *[f"| {k} | {v:.6f} |" for k, v in sorted((m.get("ratios") or {}).items())]]  # fmt: skip


def _size_category(n: int) -> str:
    for bound, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
        (1_000_000_000, "100M<n<1B"),
    ):
        if n < bound:
            return name
    return "1B<n<10B"


def render_card(
    plan: Plan, sampler: Sampler, layout: ReleaseLayout, stats: dict[str, dict[str, int]], recipe: Recipe | None = None
) -> str:
    """README.md: YAML header (configs, license, language, size), then the plan, ratio and source tables,
    the sources' upstream links and the processing settings (from ``recipe``, when known).

    ``stats`` maps each config name to ``{"rows", "tokens"}`` of its written files.
    """
    by_name = {s.source: s for s in plan.sources}
    source_configs = [c for c in layout.configs if c.kind == "source"]
    licenses = sorted({by_name[c.name].license or "unknown" for c in source_configs})
    configs: list[dict[str, Any]] = []
    for c in layout.configs:
        entry: dict[str, Any] = {"config_name": c.name}
        if c.kind == "mixture":
            entry["default"] = True
        entry["data_files"] = [{"split": "train", "path": c.glob}]
        configs.append(entry)
    configs.sort(key=lambda e: not e.get("default", False))  # the mixture first: the default config
    header = {
        "license": licenses[0] if len(licenses) == 1 and licenses[0] != "unknown" else "other",
        "language": ["en"],
        "size_categories": [_size_category(sum(stats[c.name]["rows"] for c in source_configs))],
        "tags": ["demix", "pretraining", "data-mixture"],
        "configs": configs,
    }
    m = plan.mixture or {}
    mix = stats["mixture"]
    streamed = next(c.span for c in layout.configs if c.kind == "mixture") * sampler.seq_len
    # safe_dump quotes what YAML would misread (a source named `null`, `yes` or `1e3`), never an f-string
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False, allow_unicode=True).rstrip("\n"),
        "---",
        "",
        f"# {m.get('name', 'mixture')}: a DeMix data mixture",
        "",
        f"Plan `{plan.plan_id}`: {plan.target_tokens:,} tokens ({format_tokens(plan.target_tokens)}) in "
        f"{sampler.num_sequences:,} sequences of {sampler.seq_len}, sampler seed {plan.seed}. The plan and the "
        "seed fix the order: `mixer.Sampler(plan)` regenerates the stream exactly.",
        "",
        f"- recipe: `{plan.recipe}`; pipeline config hash: `{plan.config_hash}`",
        f"- tokenizer: `{plan.tokenizer_path}` (copied to `tokenizer/`), EOS id {plan.eos_id}",
        f"- mixture level: `{m.get('level')}`; licenses: {', '.join(licenses)}",
        "",
        *_mixture_table(m),
        "",
        "## Sources",
        "",
        "Each `data/<source>` config holds the documents the plan takes from that source once; `epochs` says "
        "how many times training repeats them (allotted / available tokens).",
        "",
        "| source | domain | tier | candidate | license | share | available tokens | allotted tokens | epochs "
        "| documents released | tokens released |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in plan.sources:
        st = stats.get(s.source, {"rows": 0, "tokens": 0})
        lines.append(
            f"| {s.source} | {s.domain} | {s.tier} | {s.candidate or ''} | {s.license or 'unknown'} | "
            f"{s.share:.6f} | {s.available_tokens:,} | {s.allotted_tokens:,} | {s.epochs:.3f} | "
            f"{st['rows']:,} | {st['tokens']:,} |"
        )
    lines += [
        "",
        "## The `mixture` config",
        "",
        f"Documents in the order the `mixer` Sampler streams them (EOS-joined and packed into sequences of "
        f"{sampler.seq_len} at training time), repeats included, with their `source` and `epoch`: "
        f"{mix['rows']:,} documents, {mix['tokens']:,} tokens.",
    ]
    if streamed < sampler.num_sequences * sampler.seq_len:
        lines.append(
            f"This is the first {streamed:,} stream tokens of {plan.target_tokens:,} "
            "(a prefix; regenerate the whole stream with `mixer.Sampler` and the plan)."
        )
    samples = [c for c in layout.configs if c.kind == "sample"]
    if samples:
        lines += [
            "",
            "## Samples",
            "",
            "Each `sample-<N>` config is an exact prefix of the training stream: its rows are the Sampler's "
            f"first sequences of {sampler.seq_len} tokens (`position`, `source`, `k` = that source's sequence "
            'index, `tokens`), so `load_dataset(repo, "sample-<N>")` is what training reads first.',
            "",
            "| config | sequences | tokens |",
            "|---|---|---|",
            *[f"| {c.name} | {c.span:,} | {c.span * sampler.seq_len:,} |" for c in samples],
        ]
    lines += upstream_lines(plan, recipe) + processing_lines(plan, recipe)
    lines += [
        "",
        "Rebuild: `mixer resolve` writes the plan; `mixer release --plan plan.json --out DIR` writes this folder.",
        "",
    ]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    """A Markdown table cell: a pipe or a newline would end the cell or the row."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def upstream_lines(plan: Plan, recipe: Recipe | None) -> list[str]:
    """The ``Upstream sources`` section: per source its licence, upstream URL and filter set."""
    known = {s.name: s for s in recipe.sources} if recipe else {}
    lines = [
        "",
        "## Upstream sources",
        "",
        "Where each source comes from and under which licence; its own card has the terms of use.",
        "",
        "| source | title | license | upstream | filters | filter parameters |",
        "|---|---|---|---|---|---|",
    ]
    for s in plan.sources:
        r = known.get(s.source)
        params = (r.params or {}).get("filter_params") if r else None
        lines.append(
            f"| {s.source} | {_cell(s.title or (r.title if r else '') or '')} | {s.license or 'unknown'} | "
            f"{r.url if r and r.url else 'unknown'} | {r.filters if r else 'unknown'} | "
            f"{_cell(json.dumps(params, sort_keys=True)) if params else ''} |"
        )
    return lines


def processing_lines(plan: Plan, recipe: Recipe | None) -> list[str]:
    """The ``Processing`` section: the recipe's dedup, decontamination, language and validation settings."""
    lines = ["", "## Processing", ""]
    if recipe is None:
        return lines + [
            f"The recipe `{plan.recipe}` (config hash `{plan.config_hash}`) was not found where this "
            "release was written, so its filter and dedup settings are not stated here; release with "
            "`--recipe PATH` to include them."
        ]
    d, dc, lang = recipe.dedup, recipe.decontamination, recipe.language
    minhash = (
        f"MinHash LSH, {d.num_buckets} bands x {d.hashes_per_bucket} hashes over {d.ngram}-word shingles, "
        f"pairs confirmed at Jaccard similarity >= {d.threshold}"
        if d.minhash
        else "no near-duplicate removal"
    )
    benchmarks = (["HumanEval prompts"] if dc.humaneval else []) + [os.path.basename(p) for p in dc.extra_paths]
    decontam = (
        f"documents sharing a {dc.ngram}-word n-gram with {', '.join(benchmarks) or 'no benchmark'} are "
        f"dropped (benchmark texts under {dc.min_words} words match only whole)"
        if dc.enabled
        else "none"
    )
    language = (
        f"fastText `{os.path.basename(lang.model_path)}`, kept {', '.join(lang.languages)} at score >= {lang.threshold}"
        if lang.model_path
        else "none"
    )
    return lines + [
        f"The settings of recipe `{recipe.name}` (config hash `{recipe.config_hash()}`, the plan's), which "
        "`pipelines/build_corpus.py` applies in this order: read, normalize, quality filters per source (the table "
        "above), dedup, decontamination, tokenize.",
        "",
        f"- dedup, within each source: {'exact (normalized text)' if d.exact else 'no exact dedup'}; {minhash}",
        f"- decontamination: {decontam}",
        f"- language identification: {language}",
        f"- validation split: {recipe.validation_fraction:g} of each source's documents held out (not released)",
    ]


def render_recipe_card(plan: Plan, recipe: Recipe | None, table_rows: dict[str, int]) -> str:
    """README.md of a recipe-only release: the plan, the manifest tables as configs, sources, upstream, processing.

    ``table_rows`` maps each exported manifest table to its row count.
    """
    licenses = sorted({s.license or "unknown" for s in plan.sources})
    header = {
        "license": licenses[0] if len(licenses) == 1 and licenses[0] != "unknown" else "other",
        "tags": ["demix", "pretraining", "data-mixture", "recipe"],
        "configs": [
            {
                "config_name": t,
                **({"default": True} if i == 0 else {}),
                "data_files": [{"split": "train", "path": f"manifest/{t}.parquet"}],
            }
            for i, t in enumerate(table_rows)
        ],
    }
    m = plan.mixture or {}
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False, allow_unicode=True).rstrip("\n"),
        "---",
        "",
        f"# {m.get('name', 'mixture')}: a DeMix data mixture (recipe only)",
        "",
        f"Plan `{plan.plan_id}`: {plan.target_tokens:,} tokens ({format_tokens(plan.target_tokens)}) in sequences "
        f"of {plan.seq_len}, sampler seed {plan.seed}. This release holds no data: `plan.json` says how many "
        "tokens each source gives and how often it repeats, `recipe.yaml` where each source lives and how it "
        "was filtered, and `manifest/*.parquet` what the build produced (shards with sha256).",
        "",
        f"- recipe: `{plan.recipe}`; pipeline config hash: `{plan.config_hash}`",
        f"- mixture level: `{m.get('level')}`; licenses: {', '.join(licenses)}",
        "- manifest tables: " + ", ".join(f"`{t}` ({n:,} rows)" for t, n in table_rows.items()),
        "",
        *_mixture_table(m),
        "",
        "## Sources",
        "",
        "| source | domain | tier | candidate | share | documents | available tokens | allotted tokens | epochs |",
        "|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {s.source} | {s.domain} | {s.tier} | {s.candidate or ''} | {s.share:.6f} | {s.n_docs:,} | "
            f"{s.available_tokens:,} | {s.allotted_tokens:,} | {s.epochs:.3f} |"
            for s in plan.sources
        ],
    ]
    lines += upstream_lines(plan, recipe) + processing_lines(plan, recipe)
    lines += [
        "",
        "## Rebuild",
        "",
        "1. Build the corpus: `python pipelines/build_corpus.py --recipe recipe.yaml --out CORPUS` (the same "
        "config hash means the same filters and dedup).",
        "2. Resolve the plan's mixture on it: `mixer resolve --mixture mixture.json --db CORPUS --target "
        f"{format_tokens(plan.target_tokens)} --seq-len {plan.seq_len} --seed {plan.seed}` (the mixture is "
        "`plan.json`'s `mixture`); the shard checksums in `manifest/shards.parquet` say whether the rebuild "
        "matches the original.",
        "3. Train on `mixer.Sampler(plan)`: the plan and the seed fix the order of the stream exactly.",
        "",
    ]
    return "\n".join(lines)
