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


def _band(ax, xs, ys_by_seed, label):
    import warnings

    arr = np.array(ys_by_seed, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: before a method's first evaluation
        mean, lo, hi = np.nanmean(arr, axis=0), np.nanmin(arr, axis=0), np.nanmax(arr, axis=0)
    (line,) = ax.plot(xs, mean, label=label)
    if arr.shape[0] > 1:
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15)


def bench_plots(runs: dict, bands: dict, folder: Path) -> None:
    """accuracy vs FLOPs (mean, min–max band over seeds), heldout pass@k, per-step health, bands."""
    import numpy as np


    folder.mkdir(parents=True, exist_ok=True)
    budget = max(p["flops"] for rs in runs.values() for r in rs for p in r["curve"])
    grid = np.linspace(0, budget, 201)
    for key, name in (("train_acc_unprefixed", "hard-train"), ("heldout_acc_unprefixed", "hard-heldout")):
        fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
        for label, rs in runs.items():
            _band(ax, grid, grid_curve([r["curve"] for r in rs], key, grid), label)
        ax.set(xlabel="cumulative FLOPs (rejection sampling charged)", ylabel=f"unprefixed {name} pass@1",
               title=f"{name}: accuracy vs FLOPs (mean, min–max over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / f"acc_vs_flops_{name}.png")
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=120)
    for label, rs in runs.items():
        ks = [int(k) for k in rs[0]["passk_heldout"]]
        ax.plot(ks, [np.mean([r["passk_heldout"][str(k)] for r in rs]) for k in ks], marker="o", ms=3, label=label)
    ax.set(xscale="log", xlabel="k", ylabel="hard-heldout pass@k", title="hard-heldout pass@k (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "passk_heldout.png")
    plt.close(fig)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), dpi=110)
    for label, rs in runs.items():
        n = min(len(r["steps"]) for r in rs)
        for ax, key in zip(axes, ("entropy", "grad_norm", "zero_adv_groups")):
            ax.plot(range(1, n + 1), [np.mean([r["steps"][i][key] for r in rs]) for i in range(n)], lw=0.8, label=label)
    for ax, t in zip(axes, ("token entropy (sampled-token estimate)", "gradient norm (0 = no update)",
                             "share of zero-advantage groups")):
        ax.set(title=t, xlabel="step", xscale="log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "health.png")
    plt.close(fig)
    cut_plot(runs, folder / "prefix_cuts.png")
    if bands:
        fig, ax = plt.subplots(figsize=(6.5, 4), dpi=120)
        for label, curve in bands.items():
            ax.plot([p["flops"] for p in curve], [p["train_acc_unprefixed"] for p in curve], marker="o", ms=3,
                    label=f"prefixes at {label}")
        ax.set(xlabel="cumulative FLOPs", ylabel="unprefixed hard-train pass@1",
               title="back-generalization: prefixrl-only by prefix band")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / "backgen_bands.png")
        plt.close(fig)


def cut_plot(runs: dict, path: Path) -> None:
    """Per step, the mean share of its trace that a prefixed prompt was given (first seed; 0 is a problem
    the adaptive ladder has walked down to no prefix), and, beside it when a run is adaptive, the share of
    problems whose current cut lies in each band. Written only when a run drew prefixes."""
    drew = {label: rs[0]["steps"] for label, rs in runs.items()
            if any(s.get("prefix_fraction") is not None for s in rs[0]["steps"])}
    if not drew:
        return
    adaptive = {label: steps for label, steps in drew.items() if steps and "cut_bands" in steps[0]}
    fig, axes = plt.subplots(1, 2 if adaptive else 1, figsize=(12 if adaptive else 6.5, 4), dpi=110, squeeze=False)
    axes = axes[0]
    for label, steps in drew.items():
        xs = [s["step"] for s in steps if s.get("prefix_fraction") is not None]
        axes[0].plot(xs, [s["prefix_fraction"] for s in steps if s.get("prefix_fraction") is not None], lw=0.6,
                     label=label)
    axes[0].set(title="mean prefix share of the trace, drawn prompts", xlabel="step", ylim=(0, 1))
    for style, (label, steps) in zip(("-", "--", ":"), adaptive.items()):
        for b, band in enumerate(("no prefix", "(0, 0.4)", "[0.4, 0.8)", "[0.8, 1)")):
            axes[1].plot([s["step"] for s in steps], [s["cut_bands"][b] / max(1, sum(s["cut_bands"])) for s in steps],
                         ls=style, color=f"C{b}", lw=0.8, label=f"{label}: {band}")
        axes[1].set(title="adaptive: share of problems whose cut is in each band", xlabel="step", ylim=(0, 1))
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
