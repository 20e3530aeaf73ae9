"""Do merged proxies rank mixtures the way real training does? (issue 6, PAPER.md step 7 at CPU scale)

    python bench/reproduce.py --quick            # about 10 minutes on 2 cores
    python bench/reproduce.py                    # the full configuration: tiny model, 2M-token base (47 min here)
    python bench/reproduce.py --quick --general-share 0.0 --tag quick-gs0   # move one knob

Steps: a base model; one component per candidate (general share g); N reference models trained
for real from the same base on mixtures sampled as in PAPER.md, each with a component's token
budget; merged proxies for the same mixtures; a RegMix-style baseline (smaller models trained
from scratch on each mixture, total compute equal to the components'); Spearman rho of each
method's held-out per-domain bits per byte against the references'; the search's best mixture
trained for real and compared with the best reference. Every training run is resumable and
skipped when finished, so a rerun only redoes the evaluation and the report.
Writes docs/reproduction/<tag>.json and PNGs, then regenerates docs/reproduction.md from every
<tag>.json there.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from corpus import format_tokens, parse_tokens  # noqa: E402
from manifests import get_meta, open_manifest  # noqa: E402
from mixer import Mixture  # noqa: E402
from proxy.evaluate import ValidationSet, evaluate_model, flat_metrics  # noqa: E402
from proxy.mixture_sampling import sample_mixtures  # noqa: E402
from proxy.model import PRESETS, build_model, count_parameters, load_model, model_config  # noqa: E402
from proxy.proxies import ProxyFactory  # noqa: E402
from proxy.search import SearchSettings, run_search  # noqa: E402
from proxy.search_proxies import candidate_tokens  # noqa: E402
from proxy.training_loop import TrainConfig  # noqa: E402
from proxy.training_run import train_components, train_on_mixture  # noqa: E402
from proxy.weights import load_components  # noqa: E402
from proxy.validate import rank_consistency  # noqa: E402
from reproduce_report import render_report  # noqa: E402

DOCS = ROOT / "docs" / "reproduction"
# Shapes beside proxy.model.PRESETS: `micro` keeps --quick near 10 minutes on 2 cores; `nano` and
# `pico` are the RegMix-style baselines (smaller than the proxies' models, trained from scratch).
SHAPES = {
    "micro": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                  head_dim=32, intermediate_size=192),
    "nano": dict(hidden_size=48, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                 head_dim=24, intermediate_size=128),
    "pico": dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1,
                 head_dim=32, intermediate_size=64),
}


@dataclass(frozen=True)
class Setup:
    """One reproduction configuration; token budgets are integers."""

    tag: str
    corpus_limit: int | None
    base_tokens: int
    component_tokens: int
    references: int = 16
    general_share: float = 0.5
    preset: str = "tiny"
    baseline: str = "micro"
    seq_len: int = 128
    batch_size: int = 16
    lr: float = 3e-3
    eval_tokens: int = 16_000
    search_per_iteration: int = 32
    search_pool: int = 20_000
    seed: int = 0


QUICK = Setup(tag="quick", corpus_limit=3_000, base_tokens=parse_tokens("300K"), component_tokens=parse_tokens("100K"),
              references=16, preset="micro", baseline="pico", eval_tokens=8_000, search_per_iteration=24,
              search_pool=5_000)
FULL = Setup(tag="full", corpus_limit=None, base_tokens=parse_tokens("2M"), component_tokens=parse_tokens("400K"),
             references=16, eval_tokens=16_000, search_per_iteration=32, search_pool=20_000)


def ensure_corpus(out: Path, limit: int | None, console: Console) -> Path:
    """Build the demo corpus into `out` unless its manifest is already there."""
    if (out / "manifest.duckdb").exists():
        return out
    cmd = [sys.executable, "-m", "pipelines.build_corpus", "--recipe", "corpus/recipes/demo.yaml", "--out", str(out)]
    if limit:
        cmd += ["--limit", str(limit)]
    console.print(f"[bold]building corpus[/bold]: {' '.join(cmd)}")
    subprocess.run(cmd, cwd=ROOT, check=True)
    return out


def model_init(name: str, work: Path, db: Path) -> str:
    """A proxy.model preset name as is, or the folder of a config.json written for a SHAPES entry."""
    from transformers import Qwen3Config

    if name in PRESETS:
        return name
    if name not in SHAPES:
        raise SystemExit(f"unknown model {name!r}: one of {', '.join([*PRESETS, *SHAPES])}")
    with open_manifest(db, read_only=True) as con:
        meta = get_meta(con)
    eos = int(meta["eos_id"])
    folder = work / f"config-{name}"
    Qwen3Config(vocab_size=int(meta["vocab_size"]), tie_word_embeddings=True, max_position_embeddings=4096,
                bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, **SHAPES[name]).save_pretrained(folder)
    return str(folder)


def scores_of(model: torch.nn.Module, vset: ValidationSet) -> dict[str, float]:
    """bpb per domain plus their mean ("bpb/mean")."""
    metrics = {k: v for k, v in flat_metrics(evaluate_model(model, vset)).items() if k.startswith("bpb/")}
    metrics["bpb/mean"] = float(np.mean(list(metrics.values())))
    return metrics


def consistency(refs: dict[str, dict[str, float]], other: dict[str, dict[str, float]], domains: list[str]) -> dict:
    """Spearman per domain, overall (mean bpb), top-25%, maintain ratio, macro over domains."""
    rc = rank_consistency(refs, other, metrics=[f"bpb/{d}" for d in domains])
    return {"overall": rc.spearman, "top25": rc.spearman_top25, "n_top25": rc.n_top25, "maintain": rc.maintain,
            "macro": rc.macro_spearman, "per_domain": {m.split("/", 1)[1]: v for m, v in rc.per_metric.items()}}


def run(setup: Setup, corpus: Path, work: Path, console: Console) -> dict:
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    db = ensure_corpus(corpus, setup.corpus_limit, console) / "manifest.duckdb"
    cfg = TrainConfig(tokens=setup.component_tokens, seq_len=setup.seq_len, batch_size=setup.batch_size, lr=setup.lr,
                      seed=setup.seed, save_every=50)

    t = time.perf_counter()
    # Runs that move a knob the base, references and baseline do not depend on (general share)
    # reuse them from a shared folder keyed by what they do depend on.
    shared = work.parent / f"shared-{setup.preset}-b{setup.base_tokens}-c{setup.component_tokens}-seed{setup.seed}"
    base = shared / "base"
    # References and the baseline train on the materialised mixture g x general + (1 - g) x alpha, so they
    # depend on the components' general share g too.
    g_key = f"g{setup.general_share:g}"
    refs_dir = shared / f"references-{setup.references}-{g_key}"
    bl_dir = shared / f"regmix-{setup.baseline}-{setup.references}-{g_key}"
    base_mix = Mixture(name="base-general", level="domain", ratios={"general": 1.0}, provenance={"method": "demix-base"})
    train_on_mixture(base_mix, db, base, replace(cfg, tokens=setup.base_tokens), kind="base",
                     init=model_init(setup.preset, work, db), progress=True)
    timings["base"] = time.perf_counter() - t

    t = time.perf_counter()
    comps = train_components(base, db, work / "components", cfg, general_share=setup.general_share, progress=True)
    timings["components"] = time.perf_counter() - t
    candidates = sorted(o.name for o in comps)
    general = load_components(work / "components").general_provenance()  # what mixer resolve materialises with
    prior = candidate_tokens(db)
    mixtures = sample_mixtures([prior[c] for c in candidates], setup.references, seed=setup.seed + 100)
    named = {f"mix-{i:02d}": {c: float(r) for c, r in zip(candidates, row)} for i, row in enumerate(mixtures)}

    t = time.perf_counter()
    for name, ratios in named.items():
        mix = Mixture(name=name, level="candidate", ratios=ratios, provenance={"method": "reproduce-reference", **general})
        train_on_mixture(mix, db, refs_dir / name, cfg, kind="trained", init=str(base), base=str(base),
                         progress=True)
    timings["references"] = time.perf_counter() - t

    # RegMix-style: total baseline compute (6 N D) equals the components' compute.
    bl_init = model_init(setup.baseline, work, db)
    n_comp = count_parameters(load_model(work / "components" / candidates[0]))
    n_bl = count_parameters(load_model_from_config(Path(bl_init)) if Path(bl_init).exists() else
                            build_model(model_config(bl_init, *vocab_and_eos(db)), 0))
    comp_compute = len(candidates) * setup.component_tokens * n_comp
    bl_tokens = int(comp_compute / (len(named) * n_bl))
    bl_cfg = replace(cfg, tokens=bl_tokens)
    t = time.perf_counter()
    for name, ratios in named.items():
        mix = Mixture(name=name, level="candidate", ratios=ratios, provenance={"method": "reproduce-regmix", **general})
        train_on_mixture(mix, db, bl_dir / name, bl_cfg, kind="trained", init=bl_init, progress=True)
    timings["regmix"] = time.perf_counter() - t

    t = time.perf_counter()
    vset = ValidationSet.from_manifest(db, tokens_per_domain=setup.eval_tokens, seq_len=setup.seq_len)
    domains = vset.domain_names
    factory = ProxyFactory(work / "components", device="cpu")
    proxy_scores = {name: scores_of(factory.proxy(ratios), vset) for name, ratios in named.items()}
    ref_scores = {name: scores_of(load_model(refs_dir / name), vset) for name in named}
    bl_scores = {name: scores_of(load_model(bl_dir / name), vset) for name in named}
    timings["evaluate"] = time.perf_counter() - t

    t = time.perf_counter()
    result = run_search(lambda r: scores_of(factory.proxy(r), vset), candidates, prior, objective="bpb/mean",
                        settings=SearchSettings(iterations=3, per_iteration=setup.search_per_iteration,
                                                pool=setup.search_pool, seed=setup.seed,
                                                top_k=max(8, setup.search_pool // 156)), progress=True)
    result.extra_provenance.update(general)
    best = Mixture(name="search-best", level="candidate", ratios=result.best_ratios, provenance=result.provenance())
    train_on_mixture(best, db, work / "search-best", cfg, kind="trained", init=str(base),
                     base=str(base), progress=True)
    best_trained = scores_of(load_model(work / "search-best"), vset)
    timings["search"] = time.perf_counter() - t

    best_ref = min(ref_scores, key=lambda n: ref_scores[n]["bpb/mean"])
    report = {
        "setup": asdict(setup),
        "candidates": candidates, "prior_tokens": {c: prior[c] for c in candidates}, "domains": domains,
        "mixtures": named,
        "scores": {"reference": ref_scores, "demix": proxy_scores, "regmix": bl_scores},
        "consistency": {"demix": consistency(ref_scores, proxy_scores, domains),
                        "regmix": consistency(ref_scores, bl_scores, domains)},
        "compute_tokens": {
            "base": setup.base_tokens,
            "demix": len(candidates) * setup.component_tokens,
            "regmix": len(named) * bl_tokens,
            "references": len(named) * setup.component_tokens,
        },
        "parameters": {"component": n_comp, "regmix": n_bl},
        "search": {"best_ratios": result.best_ratios, "proxy_bpb_mean": result.best_objective,
                   "trained_bpb_mean": best_trained["bpb/mean"], "trained": best_trained,
                   "best_reference": best_ref, "best_reference_bpb_mean": ref_scores[best_ref]["bpb/mean"],
                   "rank_among_references": 1 + sum(s["bpb/mean"] < best_trained["bpb/mean"] for s in ref_scores.values()),
                   "n_evaluated": len(result.evaluated)},
        "timings_s": {**timings, "total": time.perf_counter() - t_start},
        "torch": torch.__version__, "device": "cpu",
    }
    return report


def vocab_and_eos(db: Path) -> tuple[int, int]:
    with open_manifest(db, read_only=True) as con:
        meta = get_meta(con)
    return int(meta["vocab_size"]), int(meta["eos_id"])


def load_model_from_config(folder: Path) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))


def print_summary(report: dict, console: Console) -> None:
    table = Table(title=f"rank consistency vs trained references ({report['setup']['tag']})")
    for col in ("method", "overall rho", "top-25% rho", "macro rho", *[f"rho {d}" for d in report["domains"]],
                "tokens trained"):
        table.add_column(col, justify="right")
    for method in ("demix", "regmix"):
        c = report["consistency"][method]
        table.add_row(method, f"{c['overall']:.3f}", f"{c['top25']:.3f}", f"{c['macro']:.3f}",
                      *[f"{c['per_domain'][d]:.3f}" for d in report["domains"]],
                      format_tokens(report["compute_tokens"][method]))
    console.print(table)
    s = report["search"]
    console.print(f"search best mixture trained: bpb {s['trained_bpb_mean']:.4f} (rank {s['rank_among_references']} "
                  f"of {len(report['mixtures']) + 1}); best reference {s['best_reference']}: {s['best_reference_bpb_mean']:.4f}")
    console.print(f"total {report['timings_s']['total']:.0f}s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the ~10-minute configuration")
    p.add_argument("--tag", help="name of this run's results (default quick/full, plus knob suffixes)")
    p.add_argument("--corpus", type=Path, help="a built corpus folder (default out/reproduce-<quick|full>)")
    p.add_argument("--work", type=Path, help="training outputs (default runs/reproduce/<tag>)")
    p.add_argument("--general-share", type=float, help="components' general-data share (knob)")
    p.add_argument("--component-tokens", type=parse_tokens, help="tokens per component and reference (knob)")
    p.add_argument("--preset", help="model of base, components and references: a proxy preset or micro (knob)")
    p.add_argument("--baseline", help="model of the RegMix-style baseline: a preset or micro/nano/pico")
    p.add_argument("--references", type=int, help="number of reference mixtures (>= 16)")
    p.add_argument("--report-only", action="store_true", help="only regenerate docs/reproduction.md")
    args = p.parse_args(argv)
    console = Console()
    if not args.report_only:
        setup = QUICK if args.quick else FULL
        knobs = {"general_share": args.general_share, "component_tokens": args.component_tokens,
                 "preset": args.preset, "references": args.references, "baseline": args.baseline}
        setup = replace(setup, **{k: v for k, v in knobs.items() if v is not None})
        setup = replace(setup, tag=args.tag or setup.tag)
        if setup.references < 16:
            p.error("--references must be >= 16 (issue 6)")
        corpus = args.corpus or ROOT / "out" / f"reproduce-{'quick' if args.quick else 'full'}"
        work = args.work or ROOT / "runs" / "reproduce" / setup.tag
        report = run(setup, corpus, work, console)
        DOCS.mkdir(parents=True, exist_ok=True)
        (DOCS / f"{setup.tag}.json").write_text(json.dumps(report, indent=1, sort_keys=True, default=float))
        print_summary(report, console)
    path = render_report(DOCS, ROOT / "docs" / "reproduction.md")
    console.print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
