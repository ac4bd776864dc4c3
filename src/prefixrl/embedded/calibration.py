"""The regime a built-in base is put in: a target fixed before any method runs, the logit-scale
calibration that meets it, and the gates checked on a base before rejection sampling spends its budget.

Calibration. Pretraining fixes the base's skill only up to where float rounding lands it (a 500-step
base measured 0.49 per step on one CPU and 0.65 on another). Multiplying the final norm's weight by s
multiplies every logit by s — sampling at temperature 1/s — and moves exact pass@1 smoothly without
changing any argmax. `calibrate` finds s by bisection so that exact hard-train pass@1 (`prefixrl.rl.exact`)
meets a target fixed before any method runs, and bakes it into the weights, so transformers, TRL, verl
and vLLM all load the calibrated model from the folder as it is.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from prefixrl.data.tasks.base import Problem
from prefixrl.io.errors import BadInput
from prefixrl.rl.exact import teacher_force


@dataclass(frozen=True)
class Target:
    """A regime target fixed before any method runs: exact hard-train pass@1 in [value/tol, value·tol]."""

    value: float
    tolerance: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.value) and 0 < self.value < 1):
            raise BadInput(f"target_pass1 must be in (0, 1), got {self.value}")
        if not (math.isfinite(self.tolerance) and self.tolerance > 1):
            raise BadInput(f"target_tolerance must be a factor > 1, got {self.tolerance}")

    @property
    def window(self) -> tuple[float, float]:
        return self.value / self.tolerance, self.value * self.tolerance

    def holds(self, x: float) -> bool:
        lo, hi = self.window
        return lo <= x <= hi


class BaseTooWeak(BadInput):
    """Calibration cannot reach the target: no logit scale lifts the base's exact pass@1 that high, so the
    base itself must learn more (pretrain longer) or the target come down."""


def calibrate(model, tokenizer, task, problems: list[Problem], target: Target) -> dict:
    """Find the logit scale s at which exact pass@1 over `problems` meets `target.value`, bake it into
    the final norm's weight, and return the record saved with the model.

    Bisection on log s over the rising branch of exact pass@1(s). Where the base knows every step
    (chain with no rare steps) pass@1 rises with s all the way to greedy pass@1, its limit as s → ∞.
    Where it knows some steps and guesses others (rare steps), pass@1 first rises, as the known steps
    sharpen, then falls, as the guesses collapse onto one argmax; so the peak is found on a grid first.
    Stops within 1 % of the target.
    """
    forced = teacher_force(model, tokenizer, task, problems)
    greedy, before = float(forced.greedy().mean()), float(forced.pass1().mean())
    at = lambda log_s: float(forced.pass1(math.exp(log_s)).mean())  # noqa: E731
    grid = [-4.0 + 0.25 * i for i in range(33)]  # log s: temperatures from e^-4 to e^4
    values = [at(g) for g in grid]
    peak = max(range(len(grid)), key=values.__getitem__)
    lo, hi = -4.0, grid[peak]
    if values[peak] < target.value:
        raise BaseTooWeak(f"calibration: exact hard-train pass@1 peaks at {values[peak]:.2e} over logit scales "
                          f"e^-4..e^4 (greedy pass@1 is {greedy:.4f}), below the target pass@1 {target.value:.2e}; "
                          "pretrain longer (--steps) or lower --target-pass1")
    if values[0] > target.value:
        raise BadInput(f"calibration: exact pass@1 is {values[0]:.2e} even at logit scale e^-4, above the target "
                       f"{target.value:.2e}; raise --target-pass1")
    for _ in range(60):
        mid = (lo + hi) / 2
        value = at(mid)
        if abs(math.log(value / target.value)) < math.log(1.01):
            break
        lo, hi = (mid, hi) if value < target.value else (lo, mid)
    scale = math.exp(mid)
    final_norm(model).weight.data.mul_(scale)
    return {"method": "logit-scale", "scale": scale, "target_pass1": target.value, "tolerance": target.tolerance,
            "problems": len(problems), "exact_pass@1_before": before, "exact_pass@1_after": value,
            "greedy_pass@1": greedy, "peak_pass@1": values[peak]}


def final_norm(model) -> torch.nn.Module:
    """The norm right before the LM head (Llama, Qwen2 and their kin call it `model.norm`)."""
    norm = getattr(model.base_model, "norm", None)
    if norm is None or getattr(norm, "weight", None) is None:
        raise BadInput(f"{type(model).__name__}: no final norm with a weight to carry a logit scale")
    return norm


def base_target(model_dir) -> Target | None:
    """The regime target a base folder was calibrated to (its prefixrl.json), or None if it was not."""
    meta = Path(model_dir) / "prefixrl.json"
    if not meta.is_file():
        return None
    cal = json.loads(meta.read_text()).get("calibration") or {}
    if cal.get("method") != "logit-scale":
        return None
    return Target(cal["target_pass1"], cal["tolerance"])


def sampling_gates(measured: dict, target: Target | None, min_yield: float) -> dict:
    """The gates that must hold before rejection sampling spends its budget, each with what was measured."""
    out = {"exact_pass@1": measured["exact_pass@1"], "expected_yield": measured["expected_yield"],
           "cap": measured["cap"], "problems": measured["problems"], "min_yield": min_yield,
           "yield_ok": measured["expected_yield"] >= min_yield}
    if target is not None:
        out.update(target_pass1=target.value, window=list(target.window),
                   window_ok=target.holds(measured["exact_pass@1"]))
    return out


def check_sampling_gates(g: dict, where: str) -> None:
    """One line, exit 2 (BadInput), naming what was measured, the window or floor, and the knob to turn."""
    if not g.get("window_ok", True):
        lo, hi = g["window"]
        raise BadInput(f"regime gate: {where}: exact hard-train pass@1 {g['exact_pass@1']:.2e} on {g['problems']} "
                       f"problems is outside the window [{lo:.2e}, {hi:.2e}] the base was calibrated to "
                       f"(target {g['target_pass1']:.2e}); re-run `prefixrl pretrain` (it calibrates) or change "
                       "--target-pass1 / --target-tolerance")
    if not g["yield_ok"]:
        raise BadInput(f"regime gate: {where}: rejection sampling is expected to solve {g['expected_yield']:.1%} of "
                       f"{g['problems']} problems at cap {g['cap']} (exact pass@1 {g['exact_pass@1']:.2e}), below the "
                       f"floor {g['min_yield']:.0%}; raise --cap, calibrate the base (`prefixrl pretrain "
                       "--target-pass1`), or pass --min-yield 0 to sample anyway")
