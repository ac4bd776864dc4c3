"""Accuracy-against-FLOPs curves: evaluation points on a common FLOPs grid, and the budget to reach a
target (the paper's compute-efficiency ratio, §6.2). Shared by the demo, the benches and their reports."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def grid_curve(curves: list[list[dict]], key: str, grid: np.ndarray) -> np.ndarray:
    """Seeds × grid: each seed's accuracy held constant between evaluations (a step function), NaN before
    its first point (a method charged for rejection sampling has no policy before that cost is paid)."""
    out = np.full((len(curves), len(grid)), np.nan)
    for i, c in enumerate(curves):
        xs = np.array([p["flops"] for p in c])
        ys = np.array([p[key] for p in c], dtype=float)
        idx = np.searchsorted(xs, grid, side="right") - 1
        out[i] = np.where(idx >= 0, ys[np.clip(idx, 0, len(ys) - 1)], np.nan)
    return out


def flops_to_reach(curves: list[list[dict]], key: str, target: float, grid: np.ndarray) -> float | None:
    """First budget at which the seed-mean accuracy reaches `target`, or None."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # grid points before any seed's first evaluation
        mean = np.nanmean(grid_curve(curves, key, grid), axis=0)
    hit = np.nonzero(mean >= target)[0]
    return float(grid[hit[0]]) if len(hit) else None


def final_target(curves: list[list[dict]], split: str, key: str, final_mean: float) -> float:
    """The accuracy another method must reach to match this one's final accuracy on `split`: its final
    mean, except on exact hard-heldout pass@1, whose final figure covers every heldout problem while the
    curve (`key`) is evaluated on the first 64 of them; there, the mean of the curves' last points, so
    that the target and the curve it is read off measure the same problems."""
    if split == "hard_heldout_exact":
        return float(np.mean([c[-1][key] for c in curves]))
    return final_mean


def plot_curves(methods: dict[str, dict], path: Path, title: str, charged: dict[str, float] | None = None) -> None:
    """Unprefixed hard-train accuracy against cumulative FLOPs, one line per method."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name, m in methods.items():
        xs = [p["flops"] for p in m["curve"]]
        ys = [p["train_acc_unprefixed"] for p in m["curve"]]
        (line,) = ax.plot(xs, ys, marker="o", ms=3, label=name)
        off = (charged or {}).get(name, 0.0)
        if off:  # the offline cost a method is charged before its first step (paper Fig. 2's shaded band)
            ax.axvspan(0, off, color=line.get_color(), alpha=0.08)
            ax.axvline(off, color=line.get_color(), ls=":", lw=1)
    ax.set_xlabel("cumulative FLOPs (rejection sampling included)")
    ax.set_ylabel("unprefixed hard-train pass@1")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def fmt_flops(x: float) -> str:
    return f"{x / 1e12:.2f} TFLOP"
