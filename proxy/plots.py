"""PNG plots of a search and of a validation (matplotlib Agg, no display needed)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from corpus.atomic import atomic_write


def _plt():
    import matplotlib  # noqa: PLC0415 - heavy, imported when used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - heavy, imported when used

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    return path


def plot_predicted_vs_measured(
    predicted: Sequence[float],
    measured: Sequence[float],
    iterations: Sequence[int],
    path: str | os.PathLike,
    label: str = "objective",
) -> Path:
    """Scatter of the prediction made before each evaluation against the measured value, coloured by iteration."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    p, m, it = np.asarray(predicted, float), np.asarray(measured, float), np.asarray(iterations)
    ok = np.isfinite(p)
    if ok.any():
        sc = ax.scatter(m[ok], p[ok], c=it[ok], cmap="viridis", s=18)
        fig.colorbar(sc, ax=ax, label="iteration")
        lo, hi = min(m[ok].min(), p[ok].min()), max(m[ok].max(), p[ok].max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    else:
        ax.text(0.5, 0.5, "no predictions yet (one iteration)", ha="center", transform=ax.transAxes)
    ax.set_xlabel(f"measured {label}")
    ax.set_ylabel(f"predicted {label}")
    ax.set_title("predicted vs measured")
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_best_by_iteration(history: Sequence[dict], path: str | os.PathLike, label: str = "objective") -> Path:
    """Best measured objective so far, and best within each iteration."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    its = [h["iteration"] for h in history]
    ax.plot(its, [h["best_measured"] for h in history], "o-", label="best so far")
    ax.plot(its, [h["best_in_iteration"] for h in history], "s--", label="best in iteration")
    ax.set_xlabel("iteration")
    ax.set_ylabel(label)
    ax.set_xticks(its)
    ax.legend()
    ax.set_title("best score by iteration")
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_ratio_distribution(
    top: np.ndarray, candidates: Sequence[str], best: Sequence[float], path: str | os.PathLike
) -> Path:
    """Box plot of each candidate's ratio over the top predicted mixtures, with the final (averaged) mixture."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(candidates) + 2), 3.8))
    ax.boxplot([top[:, i] for i in range(top.shape[1])], showfliers=False)
    ax.set_xticks(range(1, len(candidates) + 1), list(candidates), rotation=30, ha="right")
    ax.plot(range(1, len(candidates) + 1), best, "r*", ms=10, label="final mixture")
    ax.set_ylabel("ratio")
    ax.set_title(f"ratios of the top {top.shape[0]} predicted mixtures")
    ax.legend()
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_rank_scatter(
    reference: Sequence[float], proxy: Sequence[float], path: str | os.PathLike, title: str = "proxy vs reference"
) -> Path:
    """Scatter of proxy scores against reference scores (one point per mixture)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(reference, proxy, s=20)
    ax.set_xlabel("reference score")
    ax.set_ylabel("proxy score")
    ax.set_title(title)
    out = _save(fig, path)
    plt.close(fig)
    return out
