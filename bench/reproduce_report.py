"""Render docs/reproduction.md and its plots from every docs/reproduction/<tag>.json (bench/reproduce.py, issue 16).

The pre-registered protocol (PROTOCOL_TEXT) is fixed text, committed before any number; each run adds
its endpoint tables with 95% bootstrap intervals, its verdict lines and three plots (scatter, forest, compute
curve).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {
    "demix/g0.5": "DeMix g = 0.5",
    "demix/g0": "DeMix g = 0 (materialised weights)",
    "regmix": "RegMix-style (small, from scratch)",
    "share": "share rule (zero compute)",
}

PROTOCOL_TEXT = """## Pre-registered protocol (fixed before any number below)

Question: does merging rank data mixtures as training does, at what cost, and against what?

- **Mixtures.** n mixtures (64 full, 24 `--quick`, 96 on the GPU) over the 5 demo candidates, drawn with
  `proxy.mixture_sampling.sample_mixtures` (the paper's sampler, prior = candidate token counts) before any
  training, fixed by the protocol seed (`bench/reproduce_protocol.py`).
- **Materialisation.** Every mixture alpha is trained as `g x general + (1 - g) x alpha` with the components'
  g = 0.5, through `mixer.materialise` (what `mixer resolve` does).
- **References.** From the shared base, one model per mixture and per data-order seed (two seeds; three on the
  GPU), each with a component's token budget. Their mean is the reference of E1, E2 and E4.
- **Scoring.** Every source is scored, about equal tokens per source within a domain (whole documents, seeded);
  bits per byte per candidate (primary targets, 5) and per domain (secondary). The summed NLL of every
  document is saved for every model.
- **Methods, against the same references:** DeMix with g = 0.5 components merged on alpha; DeMix with g = 0
  components merged on the materialised candidate weights; the paper-style trained proxy (same model, same
  base, trained on each materialised mixture) with 1x and 4x the components' total training tokens split over
  the n mixtures (1/2/4/6x on the GPU); the RegMix-style baseline (a smaller model from scratch, 6ND compute
  equal to the components'); the zero-compute share rule (more of a candidate's data -> lower bpb on it).
- **Statistics.** 10,000 bootstrap replicates; each resamples the mixtures and, within each source, the
  documents, with replacement; the same replicate serves every method, so differences are paired. 95%
  percentile intervals. Spearman rho per target; macro = mean over the informative primary targets; the rank
  aggregate = Spearman of the mean of per-target ranks (the paper's percentile objective); rho of mean bpb is
  shown but never alone. Top-25% rho is printed with its chance probability P(rho = 1) = 1/k!.
- **Endpoints and decision rules.**
  - E0, noise ceiling: Spearman between reference seeds, per target and macro. A target below 0.7 is
    uninformative and is left out of the macro; with no informative target no ranking claim is resolved.
  - E1: macro rho of DeMix g = 0.5 minus trained 1x: *non-inferior at equal compute* when the CI's lower bound
    is above -0.05, *inferior* when its upper bound is below -0.05, otherwise *not resolved*; and DeMix minus the
    share rule: *better* when the CI is above 0.
  - E2: g = 0.5 minus g = 0 (macro rho): a difference is claimed only when the CI excludes 0.
  - E3: each method picks the mixture with its best rank aggregate; regret = the pick's mean candidate bpb minus
    the best, under a reference seed the pick did not use (the last seed; the first seed's own pick is the
    yardstick); top-3 recall of that seed's best. Paired regret difference DeMix minus trained 1x.
  - E4: linearity gap of the merge: mean over mixtures and candidates of (merged minus trained bpb), and the
    maintain ratio (sum of proxy bpb / sum of reference bpb).
- **Reporting.** Every endpoint with its interval and a verdict in plain words, including a negative result.
"""


def _iv(r: dict, key: str, fmt: str = "{:.2f}") -> str:
    lo, hi = r["ci"].get(key, (float("nan"), float("nan")))
    return f"{fmt.format(r['point'][key])} [{fmt.format(lo)}, {fmt.format(hi)}]"


def _label(m: str) -> str:
    if m.startswith("trained/"):
        return f"trained proxy {m.split('/')[1]}"
    return LABELS.get(m, m)


def _compute(r: dict, m: str) -> float:
    """Compute of a method in units of the components' (6ND); runs before the per-variant key used "demix"."""
    return r["compute"].get(m, r["compute"].get(m.split("/")[0], float("nan")))


def _plots(r: dict, folder: Path) -> list[str]:
    tag = r["protocol"]["tag"]
    methods = r["labels"]["methods"]
    names = sorted(r["mixtures"])
    primary = [r["targets"]["names"][t] for t in r["targets"]["primary"]]
    files = []

    def mean_bpb(m: str) -> list[float]:
        return [sum(r["bpb"][m][n][t] for t in primary) / len(primary) for n in names]

    ref = [sum(v) / len(v) for v in zip(*(mean_bpb(x) for x in r["labels"]["refs"]))]
    cols = 3
    rows = -(-len(methods) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.4 * rows), squeeze=False)
    for ax, m in zip(axes.flat, methods):
        ax.scatter(ref, mean_bpb(m), s=14)
        ax.set_title(f"{_label(m)}\nrank-aggregate rho {r['point'][f'rho/{m}/rank_aggregate']:.2f}", fontsize=9)
        ax.set_xlabel("reference mean candidate bpb", fontsize=8)
        ax.set_ylabel("proxy score", fontsize=8)
    for ax in list(axes.flat)[len(methods) :]:
        ax.axis("off")
    fig.suptitle(f"Proxy vs trained references, {len(names)} mixtures ({tag})")
    fig.tight_layout()
    files.append(_save(fig, folder / f"{tag}_scatter.png"))

    fig, ax = plt.subplots(figsize=(7, 0.45 * (2 * len(methods) + 2) + 1))
    rows_ = [("E0 reference seed vs seed", "e0/macro")]
    for m in methods:
        rows_ += [
            (f"{_label(m)}: macro", f"rho/{m}/macro"),
            (f"{_label(m)}: rank aggregate", f"rho/{m}/rank_aggregate"),
        ]
    for i, (lab, key) in enumerate(rows_):
        lo, hi = r["ci"][key]
        ax.errorbar(r["point"][key], -i, xerr=[[r["point"][key] - lo], [hi - r["point"][key]]], fmt="o", capsize=3)
    ax.set_yticks([-i for i in range(len(rows_))], [lab for lab, _ in rows_], fontsize=8)
    ax.axvline(0, color="black", lw=0.6)
    ax.axvline(r["protocol"]["ceiling_min"], color="grey", lw=0.6, ls="--")
    ax.set_xlim(-1, 1)
    ax.set_xlabel("Spearman rho vs references (95% bootstrap CI)")
    ax.set_title(f"Rank consistency ({tag})")
    fig.tight_layout()
    files.append(_save(fig, folder / f"{tag}_forest.png"))

    fig, ax = plt.subplots(figsize=(6, 3.8))
    trained = [m for m in methods if m.startswith("trained/")]
    for group, style in ((trained, "-o"), ([r["labels"]["demix_key"]], "s"), (["regmix"], "^"), (["share"], "x")):
        xs = [max(_compute(r, m), 0.05) for m in group]
        ys = [r["point"][f"rho/{m}/macro"] for m in group]
        err = [
            [y - r["ci"][f"rho/{m}/macro"][0] for m, y in zip(group, ys)],
            [r["ci"][f"rho/{m}/macro"][1] - y for m, y in zip(group, ys)],
        ]
        ax.errorbar(
            xs, ys, yerr=err, fmt=style, capsize=3, label=_label(group[0]) if len(group) == 1 else "trained proxy"
        )
    ax.set_xscale("log")
    ax.set_xlabel("training compute / the components' (6ND; share rule plotted at 0.05)")
    ax.set_ylabel("macro rho (95% CI)")
    ax.set_title(f"Where DeMix sits on the compute curve ({tag})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    files.append(_save(fig, folder / f"{tag}_compute.png"))
    return files


def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _run_section(r: dict, folder: Path) -> list[str]:
    p, tag = r["protocol"], r["protocol"]["tag"]
    names = r["targets"]["names"]
    methods = r["labels"]["methods"]
    t = r["timings_s"]
    lines = [
        f"## Run `{tag}`",
        "",
        f"{len(r['mixtures'])} mixtures over {', '.join(r['candidates'])}; model `{p['model']}` "
        f"({r['parameters']['model']:,} parameters), baseline `{p['baseline_model']}` "
        f"({r['parameters']['baseline']:,}); base {p['base_tokens']:,} tokens; components and references "
        f"{p['component_tokens']:,} tokens each; reference seeds {p['reference_seeds']}; general share "
        f"{p['general_share']}; {r['n_docs']} validation documents; {p['bootstrap']:,} bootstrap replicates; "
        f"device {r.get('device_name', r.get('device'))}. Runtime {t.get('total', 0):.0f} s ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in t.items() if k not in ("total", "train+score"))
        + ").",
        "",
        "**Verdicts.**",
        "",
    ]
    lines += [f"- {v}" for v in r["verdicts"].values()]
    lines += [
        "",
        "### E0: noise ceiling (reference seed vs seed)",
        "",
        "| target | rho [95% CI] | informative |",
        "|---|---|---|",
    ]
    for i, n in enumerate(names):
        lines.append(
            f"| {n} | {_iv(r, f'e0/{i}')} | {'yes' if i in r['targets']['informative'] else '—' if i >= len(r['targets']['primary']) else 'no'} |"
        )
    lines.append(f"| **macro (candidates)** | {_iv(r, 'e0/macro')} | |")
    lines += [
        "",
        "### Rank consistency against the references (mean of seeds)",
        "",
        "| method | compute (x components') | macro rho | rank-aggregate rho | rho of mean bpb | macro rho, domains "
        "| top-25% rho (k; P(rho = 1) by chance) |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        tp = r["top25"][m]
        lines.append(
            f"| {_label(m)} | {_compute(r, m):.2f} | {_iv(r, f'rho/{m}/macro')} | "
            f"{_iv(r, f'rho/{m}/rank_aggregate')} | {_iv(r, f'rho/{m}/mean_bpb')} | "
            f"{_iv(r, f'rho/{m}/macro_secondary')} | {tp['rho']:.2f} ({tp['n']}; {tp['p_chance_rho_1']:.4f}) |"
        )
    lines += [
        "",
        "Per target (rho [95% CI]):",
        "",
        "| method | " + " | ".join(n.split("/", 1)[1] for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for m in methods:
        lines.append(f"| {_label(m)} | " + " | ".join(_iv(r, f"rho/{m}/{i}") for i in range(len(names))) + " |")
    lines += [
        "",
        "Mean bpb over the mixtures, per candidate and domain (lower is better; the share rule has no bpb):",
        "",
        "| model | " + " | ".join(n.split("/", 1)[1] for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for m in [*r["labels"]["refs"], *[x for x in methods if x != "share"]]:
        vals = [sum(r["bpb"][m][mix][n] for mix in r["bpb"][m]) / len(r["bpb"][m]) for n in names]
        lines.append(f"| {_label(m)} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    lines += [
        "",
        "### E1, E2: paired differences (bootstrap, same replicates)",
        "",
        "| difference | macro rho | rank-aggregate rho | regret (bpb) |",
        "|---|---|---|---|",
    ]
    for key, lab in (
        ("demix_vs_trained1x", "DeMix g = 0.5 − trained 1x (E1)"),
        ("demix_vs_share", "DeMix g = 0.5 − share rule (E1)"),
        ("g_vs_g0", "DeMix g = 0.5 − g = 0 (E2)"),
        ("demix_vs_regmix", "DeMix g = 0.5 − RegMix-style"),
        ("trained1x_vs_share", "trained 1x − share rule"),
    ):
        lines.append(
            f"| {lab} | {_iv(r, f'diff/{key}', '{:+.2f}')} | {_iv(r, f'diff_agg/{key}', '{:+.2f}')} | "
            f"{_iv(r, f'diff_regret/{key}', '{:+.4f}')} |"
        )
    lines += [
        "",
        "### E3: decision quality (judged on a reference seed the pick did not use)",
        "",
        "| method | regret of its pick (bpb) | top-3 recall of the best |",
        "|---|---|---|",
        f"| another reference seed | {_iv(r, 'e3/reference_seed/regret', '{:.4f}')} | "
        f"{_iv(r, 'e3/reference_seed/top3')} |",
    ]
    for m in methods:
        lines.append(f"| {_label(m)} | {_iv(r, f'e3/{m}/regret', '{:.4f}')} | {_iv(r, f'e3/{m}/top3')} |")
    lines += [
        "",
        "### E4: linearity gap and maintain ratio",
        "",
        "| method | gap: proxy − reference bpb (mean over candidates) | maintain (Σ proxy / Σ reference) |",
        "|---|---|---|",
    ]
    for m in methods:
        if m != "share":
            lines.append(
                f"| {_label(m)} | {_iv(r, f'e4/{m}/delta', '{:+.3f}')} | {_iv(r, f'e4/{m}/maintain', '{:.3f}')} |"
            )
    lines += [""] + _suite_section(r)
    lines += [""] + [f"![{png}](reproduction/{png})" for png in _plots(r, folder)] + [""]
    return lines


def render_report(folder: Path, out: Path) -> Path:
    """Write `out` (markdown) and the PNGs beside the JSON results in `folder`; returns `out`."""
    reports = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    reports = [r for r in reports if "verdicts" in r]  # results of the issue-16 protocol only
    lines = [
        "# Does merging rank mixtures as training does?",
        "",
        "Regenerated by one command: `python bench/reproduce.py --quick` (n = 24), `python bench/reproduce.py` "
        "(n = 64), or, for the GPU run, `python bench/reproduce.py --device cuda` (exports inputs and prints the "
        "runner command) then `--collect`. Each run writes `docs/reproduction/<tag>.json`; `--report-only` "
        "re-renders this page. Everything runs offline on the demo corpus.",
        "",
        PROTOCOL_TEXT,
        SEARCH_CHECK_TEXT,
    ]
    if not reports:
        lines.append("_No results yet: run `python bench/reproduce.py --quick`._")
    for r in reports:
        lines += _run_section(r, folder)
        lines += search_check_section(r)
    if reports:
        lines += ["## Closing note", ""]
        for r in reports:
            lines += [f"Run `{r['protocol']['tag']}`:", ""] + [f"- {v}" for v in r["verdicts"].values()] + [""]
    out.write_text("\n".join(lines) + "\n")
    return out


SEARCH_CHECK_TEXT = """### Pre-registered: the search check (`python bench/reproduce.py --search-check`, bench/reproduce_search.py)

- **Split.** Each source's validation documents, in an order seeded by `selection_seed`, join the selection or
  the judgement half so that each half holds about `selection_share` = 0.5 of the source's tokens. Searches see
  only the selection half; every number of the check is judged on the judgement half. Targets: the candidates
  with documents in both halves (a one-document source cannot be split).
- **Picks, from one pool of 200,000 mixtures** (the sampler of `proxy search`), each the mean of the top 128 by
  mean predicted percentile over the targets: the DeMix search (`proxy.search.run_search`, 64 + 32 + 16 merged
  proxies of the g = 0.5 components scored on the selection half; compute 1x); the same LightGBM predictor fitted
  on the selection-half bpb of as many 1x trained proxies as the components' tokens pay for (equal compute); the
  zero-compute share rule.
- **Judgement.** Each pick is materialised with g and trained like a reference (same base, tokens, both seeds).
  Macro bpb over the targets (mean of seeds); regret against the best of the protocol's references (the oracle);
  the rank aggregate among the references (0 = better than all on every target); paired differences DeMix pick
  minus the share rule's and minus the trained-proxy search's pick. 95% bootstrap CIs resample the judgement
  documents within each source and the seeds. A difference is claimed only when its CI excludes 0.
"""


def search_check_section(r: dict) -> list[str]:
    """The run's "Search check" table and verdict (bench/reproduce_search.py), or nothing when it has none."""
    c = r.get("search_check")
    if not c:
        return []

    def iv(key: str, fmt: str) -> str:
        lo, hi = c["ci"][key]
        return f"{fmt.format(c['point'][key])} [{fmt.format(lo)}, {fmt.format(hi)}]"

    rows = [*c["picks"], "reference_selected", "oracle"]
    compute = {m: c["picks"][m]["compute"] for m in c["picks"]}
    n_seeds = len(r["protocol"]["reference_seeds"])
    compute["reference_selected"] = compute["oracle"] = c["n_references"] * n_seeds / len(r["candidates"])
    left = f"; left out (documents in one half only): {', '.join(c['left_out'])}" if c["left_out"] else ""
    lines = [
        f"### Search check (`{r['protocol']['tag']}`)",
        "",
        f"Judged on {sum(v['judgement'][0] for v in c['split'].values())} judgement documents (searches saw "
        f"{sum(v['selection'][0] for v in c['split'].values())} others); targets {', '.join(c['targets'])}{left}; "
        f"{c['bootstrap']:,} bootstrap replicates; {c['timings_s']['total']:.0f} s.",
        "",
        f"**Verdict.** {c['verdict']}",
        "",
        "| pick | compute (x components') | proxies | judged macro bpb | regret vs oracle (bpb) | rank aggregate |",
        "|---|---|---|---|---|---|",
    ]
    for m in rows:
        n = c["picks"][m]["n_proxies"] if m in c["picks"] else c["n_references"]
        lines.append(
            f"| {c['labels'][m]} | {compute[m]:.2f} | {n} | {iv(f'bpb/{m}', '{:.4f}')} | "
            f"{iv(f'regret/{m}', '{:.4f}')} | {iv(f'agg/{m}', '{:.2f}')} |"
        )
    lines.append(f"| mean of the {c['n_references']} references | | | {iv('bpb/mean_reference', '{:.4f}')} | | |")
    lines += ["", "| paired difference (judged macro bpb; negative = DeMix better) | bpb [95% CI] |", "|---|---|"]
    for m in ("share", "trained", "reference_selected"):
        lines.append(f"| DeMix pick − {c['labels'][m]} | {iv(f'diff/demix_vs_{m}', '{:+.4f}')} |")
    lines += [
        "",
        "Picks (alpha over the candidates): "
        + "; ".join(
            f"{c['labels'][m]} " + ", ".join(f"{k} {v:.3f}" for k, v in c["picks"][m]["alpha"].items())
            for m in c["picks"]
        ),
        "",
    ]
    return lines


SUITE_TEXT = """Added after the registration above (issue 14), as a second target: every reference and every proxy is also
scored on the protocol's benchmark suite through lm-evaluation-harness (`proxy.benchmarks.SuiteRunner` on the
in-memory model, a fixed number of samples per task). Targets are the suite's domain scores (primary) and its
other task metrics (secondary), each in the suite's direction; the rho endpoints are those above, computed
against the references' suite scores; the bootstrap resamples the mixtures only (the suite's items are fixed)."""


def _suite_section(r: dict) -> list[str]:
    """Rows of every method ranked by the suite (issue 14); nothing when the run had no suite."""
    s = r.get("suite")
    if not s:
        return []
    names = s["targets"]["names"]
    inf = s["targets"]["informative"]
    lines = [
        f"### Ranked by the {s['name']} suite",
        "",
        SUITE_TEXT,
        "",
        f"{s['limit']} samples per task; {s['models_scored']} models scored in {s['seconds']:.0f} s "
        f"(within the phases above). {r['verdicts'].get('suite', '')}",
        "",
        "| target | direction | reference seed vs seed rho [95% CI] | informative |",
        "|---|---|---|---|",
    ]
    for i, n in enumerate(names):
        flag = "yes" if i in inf else "—" if i not in s["targets"]["primary"] else "no"
        lines.append(f"| {n} | {s['targets']['directions'][i]} is better | {_iv(s, f'e0/{i}')} | {flag} |")
    lines.append(f"| **macro (domains)** | | {_iv(s, 'e0/macro')} | |")
    lines += [
        "",
        "| method ranked by the suite | macro rho | rank-aggregate rho (the suite's mean percentile) | "
        "macro rho, other metrics | top-25% rho (k; P(rho = 1) by chance) |",
        "|---|---|---|---|---|",
    ]
    for m in s["methods"]:
        tp = s["top25"][m]
        lines.append(
            f"| {_label(m)} | {_iv(s, f'rho/{m}/macro')} | {_iv(s, f'rho/{m}/rank_aggregate')} | "
            f"{_iv(s, f'rho/{m}/macro_secondary')} | {tp['rho']:.2f} ({tp['n']}; {tp['p_chance_rho_1']:.4f}) |"
        )
    lines += [
        "",
        "Per target, ranked by the suite (rho [95% CI]):",
        "",
        "| method | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for m in s["methods"]:
        lines.append(f"| {_label(m)} | " + " | ".join(_iv(s, f"rho/{m}/{i}") for i in range(len(names))) + " |")
    lines += ["", "| paired difference (suite) | macro rho | rank-aggregate rho |", "|---|---|---|"]
    for key in ("demix_vs_trained1x", "demix_vs_share", "g_vs_g0", "demix_vs_regmix"):
        if f"diff/{key}" in s["point"]:
            lines.append(
                f"| {key.replace('_vs_', ' − ')} | {_iv(s, f'diff/{key}', '{:+.2f}')} | "
                f"{_iv(s, f'diff_agg/{key}', '{:+.2f}')} |"
            )
    lines += [
        "",
        "Mean suite score over the mixtures:",
        "",
        "| model | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for m in s["mean"]:
        lines.append(f"| {_label(m)} | " + " | ".join(f"{s['mean'][m][n]:.3f}" for n in names) + " |")
    return lines + [""]
