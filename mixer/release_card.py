"""The dataset card (README.md) of a release, generated from the plan, its layout and the written files."""
from __future__ import annotations

from typing import Any

import yaml

from corpus import format_tokens
from mixer.plan import Plan
from mixer.release_layout import ReleaseLayout
from mixer.sampler import Sampler


def _size_category(n: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")):
        if n < bound:
            return name
    return "1B<n<10B"


def render_card(plan: Plan, sampler: Sampler, layout: ReleaseLayout, stats: dict[str, dict[str, int]]) -> str:
    """README.md: YAML header (configs, license, language, size), then the plan, ratio and source tables.

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
    header = {"license": licenses[0] if len(licenses) == 1 and licenses[0] != "unknown" else "other",
              "language": ["en"], "size_categories": [_size_category(sum(stats[c.name]["rows"] for c in source_configs))],
              "tags": ["demix", "pretraining", "data-mixture"], "configs": configs}
    m = plan.mixture or {}
    mix = stats["mixture"]
    streamed = next(c.span for c in layout.configs if c.kind == "mixture") * sampler.seq_len
    # safe_dump quotes what YAML would misread (a source named `null`, `yes` or `1e3`), never an f-string
    lines = ["---", yaml.safe_dump(header, sort_keys=False, allow_unicode=True).rstrip("\n"), "---",
             "", f"# {m.get('name', 'mixture')}: a DeMix data mixture", "",
             f"Plan `{plan.plan_id}`: {plan.target_tokens:,} tokens ({format_tokens(plan.target_tokens)}) in "
             f"{sampler.num_sequences:,} sequences of {sampler.seq_len}, sampler seed {plan.seed}. The plan and the "
             "seed fix the order: `mixer.Sampler(plan)` regenerates the stream exactly.", "",
             f"- recipe: `{plan.recipe}`; pipeline config hash: `{plan.config_hash}`",
             f"- tokenizer: `{plan.tokenizer_path}` (copied to `tokenizer/`), EOS id {plan.eos_id}",
             f"- mixture level: `{m.get('level')}`; licenses: {', '.join(licenses)}", "",
             "## Mixture", "", "| key | ratio |", "|---|---|",
             *[f"| {k} | {v:.6f} |" for k, v in sorted((m.get("ratios") or {}).items())], "",
             "## Sources", "",
             "Each `data/<source>` config holds the documents the plan takes from that source once; `epochs` says "
             "how many times training repeats them (allotted / available tokens).", "",
             "| source | domain | tier | candidate | license | share | available tokens | allotted tokens | epochs "
             "| documents released | tokens released |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in plan.sources:
        st = stats.get(s.source, {"rows": 0, "tokens": 0})
        lines.append(f"| {s.source} | {s.domain} | {s.tier} | {s.candidate or ''} | {s.license or 'unknown'} | "
                     f"{s.share:.6f} | {s.available_tokens:,} | {s.allotted_tokens:,} | {s.epochs:.3f} | "
                     f"{st['rows']:,} | {st['tokens']:,} |")
    lines += ["", "## The `mixture` config", "",
              f"Documents in the order the `mixer` Sampler streams them (EOS-joined and packed into sequences of "
              f"{sampler.seq_len} at training time), repeats included, with their `source` and `epoch`: "
              f"{mix['rows']:,} documents, {mix['tokens']:,} tokens."]
    if streamed < sampler.num_sequences * sampler.seq_len:
        lines.append(f"This is the first {streamed:,} stream tokens of {plan.target_tokens:,} "
                     "(a prefix; regenerate the whole stream with `mixer.Sampler` and the plan).")
    samples = [c for c in layout.configs if c.kind == "sample"]
    if samples:
        lines += ["", "## Samples", "",
                  "Each `sample-<N>` config is an exact prefix of the training stream: its rows are the Sampler's "
                  f"first sequences of {sampler.seq_len} tokens (`position`, `source`, `k` = that source's sequence "
                  "index, `tokens`), so `load_dataset(repo, \"sample-<N>\")` is what training reads first.", "",
                  "| config | sequences | tokens |", "|---|---|---|",
                  *[f"| {c.name} | {c.span:,} | {c.span * sampler.seq_len:,} |" for c in samples]]
    lines += ["", "Rebuild: `mixer resolve` writes the plan; `mixer release --plan plan.json --out DIR` writes this folder.", ""]
    return "\n".join(lines)
