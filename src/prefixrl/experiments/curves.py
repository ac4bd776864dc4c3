"""Accuracy-against-FLOPs curves: evaluation points on a common FLOPs grid, and the budget to reach a
target (the paper's compute-efficiency ratio, §6.2). Shared by the demo, the benches and their reports."""

from __future__ import annotations

import warnings

import numpy as np


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
