"""Render docs/reproduction.md and its plots from every docs/reproduction/<tag>.json (see reproduce.py)."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

KNOBS = ("general_share", "component_tokens", "preset", "base_tokens", "references", "baseline")


def _fmt_tokens(n: int) -> str:
    for unit, scale in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def _plot(report: dict, folder: Path) -> list[str]:
    tag = report["setup"]["tag"]
    names = sorted(report["mixtures"])
    files = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, method in zip(axes, ("demix", "regmix")):
        ref = [report["scores"]["reference"][n]["bpb/mean"] for n in names]
        oth = [report["scores"][method][n]["bpb/mean"] for n in names]
        ax.scatter(ref, oth, s=22)
        for n, x, y in zip(names, ref, oth):
            ax.annotate(n.split("-")[-1], (x, y), fontsize=6, alpha=0.6)
        c = report["consistency"][method]
        ax.set_title(f"{method}: rho {c['overall']:.2f} (top-25% {c['top25']:.2f})")
        ax.set_xlabel("reference (trained) mean bpb")
        ax.set_ylabel(f"{method} mean bpb")
    fig.suptitle(f"Proxy vs trained reference, {len(names)} mixtures ({tag})")
    fig.tight_layout()
    path = folder / f"{tag}_scatter.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    files.append(path.name)

    fig, ax = plt.subplots(figsize=(7, 3.6))
    labels = ["overall", "top25", *report["domains"]]
    width = 0.38
    for i, method in enumerate(("demix", "regmix")):
        c = report["consistency"][method]
        vals = [c["overall"], c["top25"], *[c["per_domain"][d] for d in report["domains"]]]
        ax.bar([j + i * width for j in range(len(labels))], vals, width, label=method)
    ax.set_xticks([j + width / 2 for j in range(len(labels))], labels)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylabel("Spearman rho vs references")
    ax.set_ylim(-1, 1)
    ax.legend()
    ax.set_title(f"Rank consistency by domain ({tag})")
    fig.tight_layout()
    path = folder / f"{tag}_rho.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    files.append(path.name)
    return files


def _knob_findings(reports: list[dict]) -> list[str]:
    """Pairs of runs that differ in exactly one knob: how did DeMix's rho move?"""
    lines = []
    for i, a in enumerate(reports):
        for b in reports[i + 1:]:
            diff = [k for k in KNOBS if a["setup"].get(k) != b["setup"].get(k)]
            same_rest = all(a["setup"].get(k) == b["setup"].get(k) for k in ("seq_len", "batch_size", "lr", "eval_tokens"))
            if len(diff) == 1 and same_rest:
                k = diff[0]
                ra, rb = a["consistency"]["demix"], b["consistency"]["demix"]
                lines.append(f"- **{k}** {a['setup'][k]} → {b['setup'][k]} (runs `{a['setup']['tag']}` → "
                             f"`{b['setup']['tag']}`): DeMix overall rho {ra['overall']:.3f} → {rb['overall']:.3f}, "
                             f"top-25% {ra['top25']:.3f} → {rb['top25']:.3f}, macro {ra['macro']:.3f} → {rb['macro']:.3f}.")
    return lines


def _summary_table(reports: list[dict]) -> list[str]:
    """One row per run: its knobs, both methods' rho, where the search's mixture lands when trained."""
    lines = ["## Summary", "",
             "| run | model (params) | base | components | general share | DeMix rho overall / macro / top-25% "
             "| RegMix-style rho overall / macro / top-25% | search best, trained: rank among references + itself "
             "| runtime |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        s, d, b = r["setup"], r["consistency"]["demix"], r["consistency"]["regmix"]
        lines.append(f"| `{s['tag']}` | {s['preset']} ({r['parameters']['component'] / 1e6:.2f}M) | "
                     f"{_fmt_tokens(s['base_tokens'])} | {_fmt_tokens(s['component_tokens'])} | {s['general_share']} | "
                     f"{d['overall']:.2f} / {d['macro']:.2f} / {d['top25']:.2f} | "
                     f"{b['overall']:.2f} / {b['macro']:.2f} / {b['top25']:.2f} | "
                     f"{r['search']['rank_among_references']} of {len(r['mixtures']) + 1} | "
                     f"{r['timings_s']['total']:.0f} s |")
    return lines + ["", "Runs that move only the general share reuse the base, references and baseline of the run "
                    "they vary (their runtime leaves those out). Lower bpb is better; rho is against the references.", ""]


def render_report(folder: Path, out: Path) -> Path:
    """Write `out` (markdown) and the PNGs beside the JSON results in `folder`; returns `out`."""
    reports = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    lines = ["# Do merged proxies rank mixtures like training does?", "",
             "Regenerated by `python bench/reproduce.py [--quick]` (each run adds or replaces "
             "`docs/reproduction/<tag>.json`; `--report-only` re-renders this page). Everything runs offline "
             "on the demo corpus, on CPU.", "",
             "Method (PAPER.md step 7 at toy scale): a base model on general data; one component per candidate "
             "continued from it on (1 − g) candidate + g general data; N reference models trained for real from "
             "the same base on Dirichlet-sampled mixtures (PAPER.md step 5) with a component's token budget; "
             "DeMix proxies = linear merges of the components with the mixture ratios; a RegMix-style baseline = "
             "smaller models trained from scratch on each mixture, with total compute (6·N·D) equal to the "
             "components'. Score = held-out bits per byte per domain (lower is better); rho = Spearman against "
             "the references (overall on the mean over domains, per domain, and within the best 25% of references).", ""]
    if not reports:
        lines.append("_No results yet: run `python bench/reproduce.py --quick`._")
    else:
        lines += _summary_table(reports)
    for r in reports:
        s = r["setup"]
        tag = s["tag"]
        lines += [f"## Run `{tag}`", "",
                  f"{len(r['mixtures'])} mixtures over {len(r['candidates'])} candidates ({', '.join(r['candidates'])}); "
                  f"model `{s['preset']}` ({r['parameters']['component']:,} parameters), baseline "
                  f"{r['parameters']['regmix']:,} parameters; base {_fmt_tokens(s['base_tokens'])} tokens, "
                  f"components and references {_fmt_tokens(s['component_tokens'])} tokens each, general share "
                  f"{s['general_share']}, sequence {s['seq_len']}, batch {s['batch_size']}, evaluation "
                  f"{_fmt_tokens(s['eval_tokens'])} tokens per domain. Runtime {r['timings_s']['total']:.0f} s "
                  f"(" + ", ".join(f"{k} {v:.0f} s" for k, v in r["timings_s"].items() if k != "total") + ").", "",
                  "| method | tokens trained | overall rho | top-25% rho | macro rho | "
                  + " | ".join(f"rho {d}" for d in r["domains"]) + " | maintain |",
                  "|---|---|---|---|---|" + "---|" * len(r["domains"]) + "---|"]
        for method, label in (("demix", "DeMix (merged proxies)"), ("regmix", "RegMix-style small proxies")):
            c = r["consistency"][method]
            lines.append(f"| {label} | {_fmt_tokens(r['compute_tokens'][method])} | {c['overall']:.3f} | "
                         f"{c['top25']:.3f} | {c['macro']:.3f} | "
                         + " | ".join(f"{c['per_domain'][d]:.3f}" for d in r["domains"]) + f" | {c['maintain']:.3f} |")
        lines.append(f"| references (ground truth) | {_fmt_tokens(r['compute_tokens']['references'])} | 1 | 1 | 1 | "
                     + " | ".join("1" for _ in r["domains"]) + " | 1 |")
        d, b = r["consistency"]["demix"], r["consistency"]["regmix"]
        better = ("better than" if d["macro"] > b["macro"] + 0.2 else
                  "worse than" if d["macro"] < b["macro"] - 0.2 else "about as well as")
        lines += ["", f"In short: per domain, DeMix ranks the mixtures {better} the RegMix-style baseline "
                  f"(macro rho {d['macro']:.2f} vs {b['macro']:.2f}; differences under 0.2 are noise here) for "
                  f"{r['compute_tokens']['demix'] / max(r['compute_tokens']['regmix'], 1):.2f}x its training tokens "
                  f"(equal 6ND compute); on the mean over domains its rho is {d['overall']:.2f} vs {b['overall']:.2f}."]
        se = r["search"]
        lines += ["", f"Shared cost: the base, {_fmt_tokens(r['compute_tokens']['base'])} tokens. DeMix then costs "
                  f"{_fmt_tokens(r['compute_tokens']['demix'])} tokens for any number of proxies; the RegMix-style "
                  f"baseline {_fmt_tokens(r['compute_tokens']['regmix'])} tokens of a smaller model for these "
                  f"{len(r['mixtures'])} mixtures only.", "",
                  f"Search ({se['n_evaluated']} merged proxies evaluated): best mixture "
                  + ", ".join(f"{k} {v:.3f}" for k, v in se["best_ratios"].items())
                  + f". Trained for real with the same budget it reaches mean bpb {se['trained_bpb_mean']:.4f}, rank "
                  f"{se['rank_among_references']} among the {len(r['mixtures'])} references plus itself; the best "
                  f"reference (`{se['best_reference']}`) has {se['best_reference_bpb_mean']:.4f}.", ""]
        for png in _plot(r, folder):
            lines.append(f"![{png}](reproduction/{png})")
        lines.append("")
    findings = _knob_findings(reports)
    lines += ["## Knobs", ""]
    lines += findings or ["_Run the same configuration with one knob changed (e.g. `--general-share 0.0 --tag "
                          "quick-gs0`) to see which knob moves the ranking._"]
    lines += ["", "## Reading the numbers", "",
              "At this scale a proxy's absolute bpb is not comparable to training (appendix D of the paper): read "
              "ranks, not values. With 16-24 mixtures one Spearman rho has a standard error of roughly "
              "1/sqrt(n-1) ≈ 0.2-0.25, and the top-25% rho rests on 4-6 points, so differences below ~0.2 are noise.", ""]
    out.write_text("\n".join(lines) + "\n")
    return out
