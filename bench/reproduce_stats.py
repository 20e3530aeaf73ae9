"""Statistics of the reproduction (issue 16): endpoints E0-E4 with paired bootstrap confidence intervals.

Every statistic is a function of the per-document NLL tables (one per method, [mixtures, documents]).
A bootstrap replicate resamples the mixtures (with replacement) and, within each source, the
documents (with replacement); the same replicate is applied to every method, so a difference of two
methods is paired. Point estimates use the data as it is; the 95% interval is the 2.5/97.5 percentile
of the replicates. `statistics` computes every flat key at once for a stack of replicates, so the
point estimate and the bootstrap are the same code.

Targets: the primary targets are the candidates (bpb of each candidate's validation documents); the
domains are secondary. A target whose reference seed-to-seed rho (E0) is below the protocol's
ceiling_min is uninformative and is left out of the macro (pre-registered in docs/reproduction.md).
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import numpy as np
from scipy.stats import rankdata

LN2 = math.log(2)


def spearman_rows(a: np.ndarray, b: np.ndarray, axis: int = 1) -> np.ndarray:
    """Spearman rho along `axis` (average ranks for ties), vectorised over the other axes; NaN for a constant side."""
    ra, rb = rankdata(a, axis=axis), rankdata(b, axis=axis)
    ra = ra - ra.mean(axis=axis, keepdims=True)
    rb = rb - rb.mean(axis=axis, keepdims=True)
    den = np.sqrt((ra * ra).sum(axis=axis) * (rb * rb).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(axis=axis) / np.where(den > 0, den, 1.0), np.nan)


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The (lo, hi) percentile interval of finite samples; NaN when none is finite."""
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(s, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def resamples(
    n_mixtures: int, groups: list[np.ndarray], n_docs: int, count: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """`count` replicates: mixture indices [count, n] and document weights [count, n_docs] (resampled per group)."""
    rng = np.random.default_rng(seed)
    mix = rng.integers(0, n_mixtures, (count, n_mixtures))
    weights = np.zeros((count, n_docs))
    rows = np.arange(count)[:, None]
    for g in groups:
        np.add.at(weights, (rows, g[rng.integers(0, len(g), (count, len(g)))]), 1.0)
    return mix, weights


def target_bpb(nll: np.ndarray, masks: np.ndarray, doc_bytes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """bpb [replicates, mixtures, targets] = weighted NLL / ln 2 / weighted bytes of each target's documents."""
    wt = weights[:, None, :] * masks[None, :, :]  # [R, T, D]
    num = np.einsum("rtd,md->rmt", wt, nll, optimize=True)  # optimize: through BLAS, 10,000 replicates in seconds
    den = np.einsum("rtd,d->rt", wt, doc_bytes, optimize=True)
    return num / LN2 / den[:, None, :]


def _pick(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """a [R, M, T] (or [M, T]) at mixture indices idx [R, n] -> [R, n, T]."""
    if a.ndim == 2:
        return a[idx]
    return np.take_along_axis(a, idx[:, :, None], axis=1)


def statistics(
    tables: dict[str, np.ndarray],
    refs: list[str],
    primary: list[int],
    informative: list[int],
    secondary: list[int],
    methods: list[str],
    pairs: dict[str, tuple[str, str]],
) -> dict[str, np.ndarray]:
    """Every endpoint for replicate stacks: tables {name: bpb [R, n, T]} (already resampled) -> {key: [R]}.

    refs: the reference seeds' table names; the reference of E1, E2 and E4 is their mean. `pairs`
    names paired differences {key: (method a, method b)} of macro rho.
    """
    out: dict[str, np.ndarray] = {}
    ref = np.mean([tables[r] for r in refs], axis=0)
    inf = informative or primary

    def agg(t: np.ndarray) -> np.ndarray:  # mean of per-target ranks over the primary targets (the paper's percentile)
        return rankdata(t[:, :, primary], axis=1).mean(axis=2)

    for t in primary + secondary:
        vals = [spearman_rows(tables[a][:, :, t], tables[b][:, :, t]) for a, b in combinations(refs, 2)]
        out[f"e0/{t}"] = np.mean(vals, axis=0)
    out["e0/macro"] = np.nanmean([out[f"e0/{t}"] for t in primary], axis=0)
    ref_agg = agg(ref)
    judge, chooser = tables[refs[1]], tables[refs[0]]
    judge_obj = judge[:, :, primary].mean(axis=2)
    best = judge_obj.min(axis=1)
    for m in methods:
        rho = spearman_rows(tables[m], ref, axis=1)  # [R, T]
        for t in primary + secondary:
            out[f"rho/{m}/{t}"] = rho[:, t]
        out[f"rho/{m}/macro"] = np.nanmean(rho[:, inf], axis=1)
        out[f"rho/{m}/macro_secondary"] = np.nanmean(rho[:, secondary], axis=1) if secondary else rho[:, 0] * np.nan
        m_agg = agg(tables[m])
        out[f"rho/{m}/rank_aggregate"] = spearman_rows(m_agg, ref_agg, axis=1)
        out[f"rho/{m}/mean_bpb"] = spearman_rows(tables[m][:, :, primary].mean(axis=2), ref[:, :, primary].mean(axis=2))
        # E3: pick by the method's rank aggregate, judged on a reference seed it never saw
        pick = np.argmin(m_agg, axis=1)
        out[f"e3/{m}/regret"] = np.take_along_axis(judge_obj, pick[:, None], axis=1)[:, 0] - best
        top3 = np.argsort(m_agg, axis=1, kind="stable")[:, :3]
        out[f"e3/{m}/top3"] = (np.take_along_axis(judge_obj, top3, axis=1) == best[:, None]).any(axis=1).astype(float)
        # E4: linearity gap (method bpb minus trained reference bpb) and the maintain ratio
        gap = (tables[m] - ref).mean(axis=1)  # [R, T]
        out[f"e4/{m}/delta"] = gap[:, primary].mean(axis=1)
        out[f"e4/{m}/maintain"] = tables[m][:, :, primary].sum(axis=(1, 2)) / ref[:, :, primary].sum(axis=(1, 2))
    c_agg = agg(chooser)
    pick = np.argmin(c_agg, axis=1)
    out["e3/reference_seed/regret"] = np.take_along_axis(judge_obj, pick[:, None], axis=1)[:, 0] - best
    top3 = np.argsort(c_agg, axis=1, kind="stable")[:, :3]
    out["e3/reference_seed/top3"] = (np.take_along_axis(judge_obj, top3, axis=1) == best[:, None]).any(axis=1) * 1.0
    for key, (a, b) in pairs.items():
        out[f"diff/{key}"] = out[f"rho/{a}/macro"] - out[f"rho/{b}/macro"]
        out[f"diff_agg/{key}"] = out[f"rho/{a}/rank_aggregate"] - out[f"rho/{b}/rank_aggregate"]
        out[f"diff_regret/{key}"] = out[f"e3/{a}/regret"] - out[f"e3/{b}/regret"]
    return out


def top25(method: np.ndarray, ref: np.ndarray, primary: list[int]) -> dict[str, float]:
    """Spearman of rank aggregates within the best quarter of references, and P(rho = 1) by chance (1 / k!)."""
    ref_agg = rankdata(ref[:, primary], axis=0).mean(axis=1)
    m_agg = rankdata(method[:, primary], axis=0).mean(axis=1)
    k = max(3, math.ceil(len(ref_agg) / 4))
    top = np.argsort(ref_agg, kind="stable")[:k]
    rho = float(spearman_rows(m_agg[top][None], ref_agg[top][None])[0])
    return {"rho": rho, "n": k, "p_chance_rho_1": 1 / math.factorial(k)}


def verdict_lines(r: dict[str, Any], margin: float, ceiling: float) -> dict[str, str]:
    """Plain-words verdicts from the point estimates and intervals, by the pre-registered rules."""
    p, ci = r["point"], r["ci"]

    def iv(key: str, fmt: str = "{:+.2f}") -> str:
        lo, hi = ci[key]
        return f"{fmt.format(p[key])} [{fmt.format(lo)}, {fmt.format(hi)}]"

    g = r["labels"]["demix"]
    lines = {}
    e0 = p["e0/macro"]
    n_inf = len(r["targets"]["informative"])
    lines["E0"] = (
        f"E0 noise ceiling: reference seeds agree with macro rho {iv('e0/macro', '{:.2f}')}; "
        f"{n_inf} of {len(r['targets']['primary'])} candidate targets reach {ceiling} and are informative"
        + ("" if n_inf else " -> no target is informative, so no ranking claim below can be resolved")
        + f" ({'ceiling adequate' if e0 >= ceiling else 'ceiling below ' + str(ceiling)})."
    )
    lo = ci["diff/demix_vs_trained1x"][0]
    hi = ci["diff/demix_vs_trained1x"][1]
    word = "non-inferior to" if lo > -margin else "inferior to" if hi < -margin else "not resolved against"
    if not n_inf:  # pre-registered: with no informative target no ranking claim is resolved
        word = "not resolved (no informative target) against"
    lo_s, hi_s = ci["diff/demix_vs_share"]
    share = "better than" if lo_s > 0 else "worse than" if hi_s < 0 else "not distinguishable from"
    lines["E1"] = (
        f"E1: DeMix ({g}) is {word} the trained proxy at equal compute (macro rho difference "
        f"{iv('diff/demix_vs_trained1x')}, margin -{margin}) and {share} the zero-compute share rule "
        f"({iv('diff/demix_vs_share')})."
    )
    lo2, hi2 = ci["diff/g_vs_g0"]
    word2 = (
        f"{g} components rank better than g = 0"
        if lo2 > 0
        else f"g = 0 components rank better than {g}"
        if hi2 < 0
        else "no difference resolved between g = 0.5 and g = 0"
    )
    if not n_inf:
        word2 = "not resolved (no informative target) between g = 0.5 and g = 0"
    lines["E2"] = f"E2: {word2} (macro rho difference {iv('diff/g_vs_g0')})."
    lo3, hi3 = ci["diff_regret/demix_vs_trained1x"]
    word3 = "worse picks than" if lo3 > 0 else "better picks than" if hi3 < 0 else "picks not distinguishable from"
    lines["E3"] = (
        f"E3: DeMix's pick has regret {iv('e3/' + r['labels']['demix_key'] + '/regret', '{:.4f}')} bpb "
        f"(top-3 recall {p['e3/' + r['labels']['demix_key'] + '/top3']:.2f}); a second reference seed's pick "
        f"{iv('e3/reference_seed/regret', '{:.4f}')}; DeMix makes {word3} the trained 1x proxy "
        f"(regret difference {iv('diff_regret/demix_vs_trained1x', '{:+.4f}')})."
    )
    k = r["labels"]["demix_key"]
    lines["E4"] = (
        f"E4: the merge's linearity gap is {iv('e4/' + k + '/delta', '{:+.3f}')} bpb (merged minus trained, "
        f"mean over candidates); maintain ratio {iv('e4/' + k + '/maintain', '{:.3f}')}"
        f" ({'merged proxies score worse than training: rank them, do not read their values' if p['e4/' + k + '/delta'] > 0 else 'merged proxies score at or below training bpb'})."
    )
    return lines


def analyse(record: dict[str, Any], nll: dict[str, np.ndarray], chunk: int = 500) -> dict[str, Any]:
    """The results of one run: point estimates, 95% CIs, top-25% with its chance probability, verdicts."""
    proto = record["protocol"]
    docs = record["docs"]
    names = sorted(record["mixtures"])
    cands = record["candidates"]
    domains = sorted(set(docs["domain"]))
    target_names = [f"bpb_candidate/{c}" for c in cands] + [f"bpb/{d}" for d in domains]
    primary = list(range(len(cands)))
    secondary = list(range(len(cands), len(target_names)))
    doc_cand, doc_dom = np.array(docs["candidate"]), np.array(docs["domain"])
    masks = np.array([doc_cand == c for c in cands] + [doc_dom == d for d in domains], dtype=np.float64)
    doc_bytes = np.asarray(docs["bytes"], dtype=np.float64)
    src = np.array(docs["source"])
    groups = [np.flatnonzero(src == s) for s in sorted(set(docs["source"]))]
    n_docs = len(doc_bytes)
    # the zero-compute share rule: more of a candidate (domain) in the materialised mixture -> lower bpb there
    share = np.zeros((len(names), len(target_names)))
    for i, n in enumerate(names):
        for s, r in record["mixtures"][n]["sources"].items():
            share[i, cands.index(record["sources"][s]["candidate"])] -= r
            share[i, len(cands) + domains.index(record["sources"][s]["domain"])] -= r
    g_key = f"demix/g{proto['general_share']:g}"
    refs = [f"reference/s{s}" for s in proto["reference_seeds"]]
    trained = [f"trained/{m:g}x" for m in proto["trained_multiples"]]
    methods = [g_key, "demix/g0", *trained, "regmix", "share"]
    pairs = {
        "demix_vs_trained1x": (g_key, trained[0]),
        "demix_vs_share": (g_key, "share"),
        "g_vs_g0": (g_key, "demix/g0"),
        "trained1x_vs_share": (trained[0], "share"),
        "demix_vs_regmix": (g_key, "regmix"),
    }

    def stats_for(mix_idx: np.ndarray, weights: np.ndarray, informative: list[int]) -> dict[str, np.ndarray]:
        tables = {m: _pick(target_bpb(v, masks, doc_bytes, weights), mix_idx) for m, v in nll.items()}
        tables["share"] = _pick(share, mix_idx)
        return statistics(tables, refs, primary, informative, secondary, methods, pairs)

    identity = (np.arange(len(names))[None], np.ones((1, n_docs)))
    first = stats_for(*identity, [])
    informative = [t for t in primary if first[f"e0/{t}"][0] >= proto["ceiling_min"]]
    point = {k: float(v[0]) for k, v in stats_for(*identity, informative).items()}
    boot: dict[str, list[np.ndarray]] = {}
    done = 0
    while done < proto["bootstrap"]:
        count = min(chunk, proto["bootstrap"] - done)
        mix_idx, weights = resamples(len(names), groups, n_docs, count, seed=proto["seed"] * 7919 + done)
        for k, v in stats_for(mix_idx, weights, informative).items():
            boot.setdefault(k, []).append(v)
        done += count
    ci = {k: percentile_ci(np.concatenate(v)) for k, v in boot.items()}
    full = {m: target_bpb(v, masks, doc_bytes, np.ones((1, n_docs)))[0] for m, v in nll.items()}
    full["share"] = share
    ref_mean = np.mean([full[r] for r in refs], axis=0)
    results = dict(record)
    results.pop("docs", None)
    results.update(
        {
            "n_docs": n_docs,
            "targets": {"names": target_names, "primary": primary, "secondary": secondary, "informative": informative},
            "labels": {
                "demix": f"g = {proto['general_share']:g}",
                "demix_key": g_key,
                "methods": methods,
                "refs": refs,
            },
            "point": point,
            "ci": ci,
            "top25": {m: top25(full[m], ref_mean, primary) for m in methods},
            "bpb": {
                m: {n: dict(zip(target_names, map(float, full[m][i]))) for i, n in enumerate(names)}
                for m in [*refs, *methods]
            },
            "timings_s": dict(record.get("timings_s", {})),
        }
    )
    results["verdicts"] = verdict_lines(results, proto["margin"], proto["ceiling_min"])
    if record.get("suite"):  # issue 14: the same rho endpoints against the references' suite scores
        results["suite"] = analyse_suite(
            record, methods, refs, pairs, proto["bootstrap"], proto["seed"], proto["ceiling_min"]
        )
        results["verdicts"]["suite"] = suite_verdict(results["suite"], g_key)
    return results


def judged_statistics(
    ref_nll: np.ndarray,
    pick_nll: dict[str, np.ndarray],
    masks: np.ndarray,
    doc_bytes: np.ndarray,
    judged: np.ndarray,
    groups: list[np.ndarray],
    chosen_ref: int,
    count: int,
    seed: int,
    chunk: int = 500,
) -> dict[str, Any]:
    """The search check's statistics (bench/reproduce_search.py) on the judgement documents only: {"point": {key: v}, "ci": {key: (lo, hi)}}.

    ref_nll [S, n, D] (seeds, protocol mixtures, documents), pick_nll {name: [S, D]}, masks [T, D] of the
    targets. A replicate resamples the judgement documents within each source (`groups`, judged indices only)
    and the seeds, both with replacement, the same for every model (paired). Keys: bpb/<m> (macro over the
    targets, mean of seeds), regret/<m> (minus the best reference, the oracle), agg/<m> (mean over targets of
    the fraction of references that beat it, ties half: 0 = best on every target), diff/demix_vs_<m>, for
    m in the picks, reference_selected (the reference picked on the selection half) and oracle; bpb/mean_reference.
    """
    n_seeds, n = ref_nll.shape[:2]
    names = list(pick_nll)
    nll = np.concatenate([ref_nll, np.stack([pick_nll[m] for m in names], axis=1)], axis=1)  # [S, n + P, D]

    def stats(weights: np.ndarray, seed_counts: np.ndarray) -> dict[str, np.ndarray]:
        w = weights * judged[None]  # only judgement documents count, whatever the weights say
        tables = (
            sum(seed_counts[:, s, None, None] * target_bpb(nll[s], masks, doc_bytes, w) for s in range(n_seeds))
            / n_seeds
        )  # [R, M, T]
        macro = tables.mean(axis=2)
        refs = tables[:, :n]
        best = np.argmin(macro[:, :n], axis=1)
        rows = {m: tables[:, n + i] for i, m in enumerate(names)}
        rows["reference_selected"] = tables[:, chosen_ref]
        rows["oracle"] = np.take_along_axis(tables, best[:, None, None], axis=1)[:, 0]
        out = {"bpb/mean_reference": macro[:, :n].mean(axis=1)}
        for m, t in rows.items():
            out[f"bpb/{m}"] = t.mean(axis=1)
            out[f"regret/{m}"] = out[f"bpb/{m}"] - macro[:, :n].min(axis=1)
            x = t[:, None, :]
            out[f"agg/{m}"] = ((refs < x) + 0.5 * (refs == x)).mean(axis=(1, 2))
        for m in rows:
            if m != "demix" and "demix" in rows:
                out[f"diff/demix_vs_{m}"] = out["bpb/demix"] - out[f"bpb/{m}"]
        return out

    point = {k: float(v[0]) for k, v in stats(np.ones((1, len(doc_bytes))), np.ones((1, n_seeds))).items()}
    rng = np.random.default_rng(seed + 1)
    boot: dict[str, list[np.ndarray]] = {}
    for done in range(0, count, chunk):
        size = min(chunk, count - done)
        _, weights = resamples(1, groups, len(doc_bytes), size, seed + done)
        draws = rng.integers(0, n_seeds, (size, n_seeds))
        seed_counts = np.stack([(draws == s).sum(axis=1) for s in range(n_seeds)], axis=1).astype(np.float64)
        for k, v in stats(weights, seed_counts).items():
            boot.setdefault(k, []).append(v)
    return {"point": point, "ci": {k: percentile_ci(np.concatenate(v)) for k, v in boot.items()}}


def analyse_suite(
    record: dict[str, Any],
    methods: list[str],
    refs: list[str],
    pairs: dict[str, tuple[str, str]],
    replicates: int,
    seed: int,
    ceiling: float,
    chunk: int = 1000,
) -> dict[str, Any]:
    """The rho endpoints against the references' suite scores (issue 14): E0, per target, macro, rank aggregate,
    top-25% and the paired differences, with 95% intervals.

    Targets: the suite's domain scores (primary) and its other task metrics (secondary), each oriented by the
    suite's direction (a higher-is-better column is negated, so that lower is better everywhere, as for bpb;
    rho is unchanged by orienting both sides). A bootstrap replicate resamples the mixtures only: the suite
    items are fixed (per-item resampling would need every sample's score, which the suite does not keep).
    The share rule ranks a suite domain by the mixture's share of that corpus domain; it is left out when a
    suite domain is not a corpus domain.
    """
    suite = record["suite"]
    names = sorted(record["mixtures"])
    columns = suite["primary"] + suite["secondary"]
    sign = np.array([-1.0 if suite["directions"][c] == "higher" else 1.0 for c in columns])
    tables = {
        m: np.array([[suite["scores"][m][n][c] for c in columns] for n in names]) * sign
        for m in refs + methods
        if m in suite["scores"]
    }
    corpus_domains = {v["domain"] for v in record["sources"].values()}
    if {suite["domain_of"][c] for c in columns} <= corpus_domains:
        share = np.zeros((len(names), len(columns)))
        for i, n in enumerate(names):
            for s, r in record["mixtures"][n]["sources"].items():
                for j, c in enumerate(columns):
                    share[i, j] -= r * (record["sources"][s]["domain"] == suite["domain_of"][c])
        tables["share"] = share
    methods = [m for m in methods if m in tables]
    pairs = {k: (a, b) for k, (a, b) in pairs.items() if a in tables and b in tables}
    primary = list(range(len(suite["primary"])))
    secondary = list(range(len(suite["primary"]), len(columns)))

    def stats_for(idx: np.ndarray, informative: list[int]) -> dict[str, np.ndarray]:
        return statistics({m: t[idx] for m, t in tables.items()}, refs, primary, informative, secondary, methods, pairs)

    identity = np.arange(len(names))[None]
    informative = [t for t in primary if stats_for(identity, [])[f"e0/{t}"][0] >= ceiling]
    point = {k: float(v[0]) for k, v in stats_for(identity, informative).items() if not k.startswith(("e3/", "e4/"))}
    rng = np.random.default_rng(seed * 7919 + 14)
    boot: dict[str, list[np.ndarray]] = {}
    for done in range(0, replicates, chunk):
        idx = rng.integers(0, len(names), (min(chunk, replicates - done), len(names)))
        for k, v in stats_for(idx, informative).items():
            if k in point:
                boot.setdefault(k, []).append(v)
    ref = np.mean([tables[r] for r in refs], axis=0)
    return {
        "name": suite["name"],
        "limit": suite["limit"],
        "resampled": "mixtures",
        "targets": {
            "names": columns,
            "primary": primary,
            "secondary": secondary,
            "informative": informative,
            "directions": [suite["directions"][c] for c in columns],
        },
        "methods": methods,
        "point": point,
        "ci": {k: percentile_ci(np.concatenate(v)) for k, v in boot.items()},
        "top25": {m: top25(tables[m], ref, primary) for m in methods},
        "mean": {m: dict(zip(columns, map(float, (tables[m] * sign).mean(axis=0)))) for m in tables if m != "share"},
        "seconds": suite["seconds"],
        "models_scored": suite["models_scored"],
    }


def suite_verdict(s: dict[str, Any], demix_key: str) -> str:
    """One plain-words line for the suite target, by the same rules as E1 (CI of the paired difference)."""
    p, ci = s["point"], s["ci"]

    def iv(key: str, fmt: str = "{:+.2f}") -> str:
        return f"{fmt.format(p[key])} [{fmt.format(ci[key][0])}, {fmt.format(ci[key][1])}]"

    lo, hi = ci.get("diff/demix_vs_trained1x", (float("nan"), float("nan")))
    word = "better than" if lo > 0 else "worse than" if hi < 0 else "not distinguishable from"
    n_inf = len(s["targets"]["informative"])
    return (
        f"Suite ({s['name']}, {s['limit']} samples per task): reference seeds agree with macro rho "
        f"{iv('e0/macro', '{:.2f}')} ({n_inf} of {len(s['targets']['primary'])} domains reach the ceiling); "
        f"DeMix ranks with macro rho {iv(f'rho/{demix_key}/macro', '{:.2f}')}, {word} the trained 1x proxy "
        f"(difference {iv('diff/demix_vs_trained1x')})"
        + ("" if n_inf else "; no domain is informative, so no suite ranking claim is resolved")
        + "."
    )
