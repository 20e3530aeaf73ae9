"""The search check of the reproduction (issue 16): searched picks, trained for real, judged on held-out documents.

    python bench/reproduce.py --search-check --work runs/reproduce/decide-full

On a finished work folder (bench/reproduce_runner.py), with the corpus manifest the inputs were exported from:

1. **Split.** Each source's validation documents, in a seeded order, go one by one to the half that is further
   below its share of the source's tokens (`selection_split`): a SELECTION half (the searches see only it) and a
   JUDGEMENT half. The check's targets are the candidates with documents in both halves (a source of one document
   cannot be split; its candidate leaves the check when it has no other source).
2. **Three picks from one pool** (`proxy.mixture_sampling`, as `proxy.search.run_search` draws it), each the mean
   of the top-k pool mixtures by mean predicted percentile over the targets (`proxy.search.rank_scores`):
   - DeMix: `run_search` itself, every proxy merged in memory from the g components (`ProxyFactory`) and scored
     on the selection documents only; compute = the components'.
   - trained-proxy search: the same predictor fitted on the paper-style 1x trained proxies' selection-half bpb,
     as many of them as the components' training tokens pay for (`equal_compute_count`).
   - share rule: the zero-compute rule of bench/reproduce_stats (more of a candidate -> lower bpb on it).
3. **Judge.** Every pick is materialised (g x general + (1 - g) x alpha, mixer.materialise) and trained like a
   reference (same base, tokens and data-order seeds); its per-document NLL is saved. On the judgement documents
   only: macro bpb over the targets (mean of seeds), regret against the best of the protocol's references (the
   oracle), the rank aggregate among the references, paired differences, 95% bootstrap CIs over judgement
   documents (within sources) and seeds.

A rerun reuses the saved search (work/search_check/demix_search.json) and every trained pick
(work/nll/search_check/<key>/s<seed>.npy, keyed by the materialised ratios).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
from reproduce_protocol import Inputs, Protocol, draw_mixtures, materialised_sources, trained_tokens  # noqa: E402
from reproduce_stats import judged_statistics, target_bpb  # noqa: E402
from scipy.stats import rankdata  # noqa: E402

from manifests import list_sources  # noqa: E402
from proxy.errors import ProxyError  # noqa: E402
from proxy.mixture_sampling import sample_mixtures  # noqa: E402
from proxy.predictor import MetricPredictor, PredictorSettings  # noqa: E402
from proxy.search import SearchSettings, rank_scores, run_search  # noqa: E402

SEARCH_CHECK_FILE = "search_check.json"
PICKS = ("demix", "trained", "share")


def selection_split(sources: Sequence[str], tokens: Sequence[int], share: float, seed: int) -> np.ndarray:
    """True where a document is in the selection half; stratified per source, deterministic for (share, seed).

    Each source's documents, in an order seeded by (seed, source), join the judgement half while it is at or
    below its (1 - share) of the tokens assigned so far, else the selection half: both halves get about their
    token share (documents differ in length), a source of two or more documents is in both, one of one
    document is judged. Depends only on each source's document sequence, so any ordering of sources agrees.
    """
    src = np.asarray(sources)
    toks = np.asarray(tokens, dtype=np.int64)
    selected = np.zeros(len(src), dtype=bool)
    for source in sorted(set(src.tolist())):
        idx = np.flatnonzero(src == source)
        rng = np.random.default_rng([seed, zlib.crc32(source.encode())])
        sel = judge = 0
        for i in idx[rng.permutation(len(idx))]:
            if judge * share <= sel * (1 - share):  # ties go to judgement: a lone document is judged
                judge += int(toks[i])
            else:
                selected[i] = True
                sel += int(toks[i])
    return selected


def equal_compute_count(p: Protocol, n_candidates: int) -> int:
    """How many 1x trained proxies the components' training tokens pay for (at most the protocol's mixtures)."""
    per = trained_tokens(p, n_candidates, 1.0)
    return min(p.n_mixtures, n_candidates * p.component_tokens // per)


def pick_from_pool(preds: dict[str, np.ndarray], pool: np.ndarray, settings: SearchSettings) -> np.ndarray:
    """The mean of the top-k pool mixtures by mean predicted percentile (lower bpb better), as run_search ends."""
    weights = {m: 1 / len(preds) for m in preds}
    score = rank_scores(preds, weights, False, settings.rank_by)
    top = np.argsort(-score, kind="stable")[: min(settings.top_k, pool.shape[0])]
    vec = pool[top].mean(axis=0)
    return vec / vec.sum()


def _bpb(nll: np.ndarray, masks: np.ndarray, doc_bytes: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """bpb per target ([T] or [M, T]) of per-document NLL ([D] or [M, D]) over the documents in `keep`."""
    out = target_bpb(np.atleast_2d(nll), masks, doc_bytes, keep.astype(np.float64)[None])[0]
    return out[0] if np.ndim(nll) == 1 else out


def corpus_rows(db: Path, inputs: Inputs) -> tuple[list[dict], dict[str, int]]:
    """The manifest's source rows and candidate prior, checked to redraw and rematerialise the protocol's mixtures."""
    rows = [r for r in list_sources(db) if int(r["n_tokens"]) > 0]
    prior: dict[str, int] = {}
    for r in rows:
        if r.get("candidate"):
            prior[r["candidate"]] = prior.get(r["candidate"], 0) + int(r["n_tokens"])
    p = inputs.protocol
    drawn = draw_mixtures(prior, p) if sorted(prior) == inputs.candidates else {}
    first = min(inputs.mixtures)
    same = drawn == {n: m["alpha"] for n, m in inputs.mixtures.items()} and all(
        abs(r - inputs.mixtures[first]["sources"].get(s, 0.0)) < 1e-12
        for s, r in materialised_sources(drawn[first], rows, p.general_share, str(db)).items()
    )
    if not same:
        raise ProxyError(
            f"{db}: not the corpus these inputs were exported from (its prior does not redraw the "
            "protocol's mixtures); pass --corpus"
        )
    return rows, prior


def demix_search(
    inputs: Inputs,
    work: Path,
    scorer_sel,
    masks_sel,
    bytes_sel,
    targets: list[str],
    prior: dict[str, int],
    settings: SearchSettings,
    device: str,
    progress: bool,
) -> dict[str, Any]:
    """run_search over merged proxies scored on the selection documents; saved to and reused from work."""
    from proxy.proxies import ProxyFactory  # noqa: PLC0415 - torch

    path = work / "search_check" / "demix_search.json"
    key = {
        "settings": json.loads(json.dumps(asdict(settings))),
        "targets": targets,
        "selection": scorer_sel.docs.to_dict(),
    }
    if path.exists():
        saved = json.loads(path.read_text())
        if saved["key"] == key:
            return saved
    g = f"g{inputs.protocol.general_share:g}"
    factory = ProxyFactory([work / "models" / f"components-{g}" / c for c in inputs.candidates], device=device)
    ones = np.ones(scorer_sel.n_docs, dtype=bool)

    def score_fn(ratios: dict[str, float]) -> dict[str, float]:
        bpb = _bpb(scorer_sel(factory.proxy(ratios)), masks_sel, bytes_sel, ones)
        return {f"bpb_candidate/{c}": float(v) for c, v in zip(targets, bpb)}

    res = run_search(
        score_fn, inputs.candidates, prior, ",".join(f"bpb_candidate/{c}" for c in targets), settings, progress=progress
    )
    out = {
        "key": key,
        "alpha": res.best_ratios,
        "selection_objective": res.best_objective,
        "predicted_objective": res.predicted_best_objective,
        "n_proxies": len(res.evaluated) + 1,
        "history": res.history,
        "seconds": res.seconds,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(out, indent=1))
    tmp.replace(path)
    return out


def verdict_line(check: dict[str, Any]) -> str:
    """The check's plain-words verdict; a difference is claimed only when its 95% CI excludes 0."""
    if not check["targets"]:
        return "Search check: not resolved (no candidate has validation documents in both halves)."
    p, ci = check["point"], check["ci"]

    def iv(key: str, fmt: str) -> str:
        return f"{fmt.format(p[key])} [{fmt.format(ci[key][0])}, {fmt.format(ci[key][1])}]"

    def versus(m: str) -> str:
        lo, hi = ci[f"diff/demix_vs_{m}"]
        word = "better than" if hi < 0 else "worse than" if lo > 0 else "not distinguishable from"
        return f"{word} the {check['labels'][m]}'s pick ({iv(f'diff/demix_vs_{m}', '{:+.4f}')} bpb)"

    spread = p["bpb/mean_reference"] - p["bpb/oracle"]
    frac = f", {p['regret/demix'] / spread:.0%} of the gap from the mean reference to the oracle" if spread > 0 else ""
    near = (
        f"is within {p['regret/demix']:.4f} bpb of the oracle"
        if p["regret/demix"] > 0
        else f"beats the oracle by {-p['regret/demix']:.4f} bpb"
    )
    return (
        f"Search check: the search's pick, trained for real and judged on documents it did not see, {near} "
        f"(the best of {check['n_references']} references; regret {iv('regret/demix', '{:.4f}')}{frac}); "
        f"it is {versus('share')} and {versus('trained')} at equal compute."
    )


def run_search_check(
    work: Path, db: Path, device: str = "cpu", progress: bool = True, bootstrap: int | None = None
) -> dict[str, Any]:
    """Run the search check on a finished work folder; writes and returns work/search_check.json's content."""
    import torch  # noqa: PLC0415 - heavy, only when training
    from reproduce_runner import DocScorer, Runner  # noqa: PLC0415 - torch
    from tqdm import tqdm  # noqa: PLC0415

    from proxy.model import load_model  # noqa: PLC0415

    t0 = time.perf_counter()
    work = Path(work)
    if not (work / "results.json").exists():
        raise ProxyError(f"{work}: no results.json (run the protocol first: python bench/reproduce.py)")
    if device == "cpu":
        torch.set_num_threads(1)  # tiny models on a shared machine: see reproduce_runner.run_protocol
    inputs = Inputs.load(work / "inputs")
    p, cands = inputs.protocol, inputs.candidates
    rows, prior = corpus_rows(db, inputs)
    runner = Runner(inputs, work, device, progress=False)
    docs = runner.scorer.docs
    selected = selection_split(docs.source, docs.tokens, p.selection_share, p.selection_seed)
    judged = ~selected
    cand = np.array(docs.candidate)
    targets = [c for c in cands if (selected & (cand == c)).any() and (judged & (cand == c)).any()]
    masks = np.array([cand == c for c in targets], dtype=np.float64).reshape(len(targets), len(cand))
    in_val = selection_split(
        [d["source"] for d in inputs.validation],
        [len(d["tokens"]) for d in inputs.validation],
        p.selection_share,
        p.selection_seed,
    )
    scorer_sel = DocScorer(
        replace(inputs, validation=[d for d, s in zip(inputs.validation, in_val) if s]), runner.device
    )
    masks_sel = np.array([np.array(scorer_sel.docs.candidate) == c for c in targets], dtype=np.float64)
    settings = SearchSettings(
        iterations=p.search_iterations,
        per_iteration=p.search_per_iteration,
        pool=p.search_pool,
        seed=p.seed,
        top_k=p.search_top_k,
        predictor=PredictorSettings(seed=p.seed),
    )
    pool = sample_mixtures([prior[c] for c in cands], settings.pool, settings.seed, settings.sampling)  # run_search's
    timings = {}
    t = time.perf_counter()
    demix = demix_search(
        inputs, work, scorer_sel, masks_sel, scorer_sel.docs.bytes, targets, prior, settings, device, progress
    )
    timings["demix search"] = time.perf_counter() - t
    names = sorted(inputs.mixtures)
    n_trained = equal_compute_count(p, len(cands))
    if n_trained < 2:
        raise ProxyError(f"{work}: equal compute pays for {n_trained} trained proxies (the predictor needs 2)")
    x = np.array([[inputs.mixtures[n]["alpha"][c] for c in cands] for n in names[:n_trained]])
    y = np.stack(
        [
            _bpb(np.load(work / "nll" / "trained" / "1x" / f"{n}.npy"), masks, docs.bytes, selected)
            for n in names[:n_trained]
        ]
    )
    preds = {c: MetricPredictor(settings.predictor).fit(x, y[:, i]).predict(pool) for i, c in enumerate(targets)}
    alphas = {
        "demix": np.array([demix["alpha"][c] for c in cands]),
        "trained": pick_from_pool(preds, pool, settings),
        # the share rule ranks by -alpha_c: materialising is increasing in alpha_c, so its ranks are the same
        "share": pick_from_pool({c: -pool[:, cands.index(c)] for c in targets}, pool, settings),
    }
    base = work / "models" / "base"
    picks: dict[str, dict[str, Any]] = {}
    pick_nll: dict[str, np.ndarray] = {}
    t = time.perf_counter()
    bar = tqdm(total=len(PICKS) * len(p.reference_seeds), desc="train picks", disable=not progress, file=sys.stderr)
    for m in PICKS:
        alpha = {c: float(r) for c, r in zip(cands, alphas[m])}
        sources = materialised_sources(alpha, rows, p.general_share, str(db))
        key = hashlib.blake2b(
            json.dumps({s: round(r, 12) for s, r in sorted(sources.items())}).encode(), digest_size=6
        ).hexdigest()
        folder = work / "nll" / "search_check" / key
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "mixture.json").write_text(json.dumps({"alpha": alpha, "sources": sources}, indent=1))
        runs = []
        for seed in p.reference_seeds:  # like a reference: same base, tokens and data-order seed
            runs.append(
                runner.scored(
                    f"search_check/{key}",
                    f"s{seed}",
                    lambda seed=seed, sources=sources: runner.train(
                        load_model(base), sources, p.component_tokens, seed, work / "train" / "search_check"
                    ),
                )
            )
            bar.update(1)
        pick_nll[m] = np.stack(runs)
        picks[m] = {"alpha": alpha, "sources": sources, "key": key}
    bar.close()
    timings["train picks"] = time.perf_counter() - t
    component_tokens = len(cands) * p.component_tokens
    picks["demix"] |= {
        "compute": 1.0,
        "n_proxies": demix["n_proxies"],
        "selection_objective": demix["selection_objective"],
    }
    picks["trained"] |= {
        "compute": n_trained * trained_tokens(p, len(cands), 1.0) / component_tokens,
        "n_proxies": n_trained,
    }
    picks["share"] |= {"compute": 0.0, "n_proxies": 0}
    ref_nll = np.stack(
        [
            np.stack([np.load(work / "nll" / "reference" / f"s{s}" / f"{n}.npy") for n in names])
            for s in p.reference_seeds
        ]
    )
    sel_tables = _bpb(ref_nll.mean(axis=0), masks, docs.bytes, selected)  # [n, T], references on the selection half
    chosen = int(np.argmin(rankdata(sel_tables, axis=0).mean(axis=1)))
    src = np.array(docs.source)
    groups = [g for g in (np.flatnonzero((src == s) & judged) for s in sorted(set(docs.source))) if len(g)]
    t = time.perf_counter()
    stats = judged_statistics(
        ref_nll, pick_nll, masks, docs.bytes, judged, groups, chosen, bootstrap or p.bootstrap, p.seed * 7919 + 16
    )
    timings["bootstrap"] = time.perf_counter() - t
    per_source = {
        s: {
            "selection": [int((selected & (src == s)).sum()), int(docs.tokens[selected & (src == s)].sum())],
            "judgement": [int((judged & (src == s)).sum()), int(docs.tokens[judged & (src == s)].sum())],
        }
        for s in sorted(set(docs.source))
    }
    check = {
        "protocol": {
            k: getattr(p, k)
            for k in (
                "selection_share",
                "selection_seed",
                "search_iterations",
                "search_per_iteration",
                "search_pool",
                "search_top_k",
            )
        },
        "targets": targets,
        "left_out": [c for c in cands if c not in targets],
        "split": per_source,
        "n_references": len(names),
        "reference_selected": names[chosen],
        "picks": picks,
        "bootstrap": bootstrap or p.bootstrap,
        **stats,
        "labels": {
            "demix": "DeMix search",
            "trained": "trained-proxy search",
            "share": "share rule",
            "reference_selected": "best reference on the selection half",
            "oracle": "oracle",
        },
    }
    timings["total"] = time.perf_counter() - t0
    if (
        work / SEARCH_CHECK_FILE
    ).exists():  # a rerun reuses the finished runs: keep the times of the run that made them
        timings = json.loads((work / SEARCH_CHECK_FILE).read_text())["timings_s"] | {"rerun": timings["total"]}
    check["timings_s"] = timings
    check["verdict"] = verdict_line(check)
    tmp = work / f".{SEARCH_CHECK_FILE}.tmp"
    tmp.write_text(json.dumps(check, indent=1, default=float))
    tmp.replace(work / SEARCH_CHECK_FILE)
    return check


def attach_search_check(results: dict[str, Any], work: Path) -> dict[str, Any]:
    """results with work/search_check.json added (key "search_check", verdict "Search"), when it exists."""
    path = Path(work) / SEARCH_CHECK_FILE
    if path.exists():
        check = json.loads(path.read_text())
        results["search_check"] = check
        results.setdefault("verdicts", {})["Search"] = check["verdict"]
    return results
