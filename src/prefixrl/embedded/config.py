"""How the embedded base model is made: `PretrainConfig`, the one config of `prefixrl pretrain` (each
field's docstring is its --help) and its `check`, the one place its values are validated.

Like `prefixrl.rl.settings` it imports no torch, so that `prefixrl pretrain --help` answers at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prefixrl.io.errors import BadInput

if TYPE_CHECKING:
    from prefixrl.data.tasks.chain import ChainTask
    from prefixrl.embedded.calibration import Target

CALIBRATIONS = ("logit-scale", "none")  # --calibration (`prefixrl.embedded.calibration`)


@dataclass(frozen=True)
class PretrainConfig:
    """Pretrain the embedded base model (a tiny Llama) on easy problems from an imperfect teacher."""

    out: Path = Path("runs/base")
    """Folder for the base model (Hugging Face format)."""
    steps: int = 500
    """Optimizer steps."""
    batch_size: int = 64
    """Sequences per step."""
    lr: float = 3e-3
    """Peak learning rate (linear warm-up, cosine decay)."""
    teacher_accuracy: float | None = None
    """Probability that the teacher writes a common step's value correctly (default: the value that puts
    hard pass@1 at the design rate 0.65 ** hard_steps at this --rare-steps; 0.65 with none)."""
    easy_min_steps: int = 1
    """Shortest easy chain."""
    easy_max_steps: int = 16
    """Longest easy chain."""
    hard_steps: int = 16
    """Length of hard chains (recorded with the model; used by later stages)."""
    rare_steps: int = 0
    """The regime knob (docs/regimes.md): steps of each hard chain that are rare-operation lookups the
    teacher does not know; 0 is the shared-skill chain."""
    classes: int = 4
    """Problem classes, one rare operation each (used when --rare-steps > 0)."""
    arch: str = "llama"
    """Model family: llama (the embedded default) or qwen2 (a second family for cross-family traces)."""
    tokenizer: str = "char"
    """Tokenizer: char (one token per character) or pairs (BPE merges; a different id space)."""
    hidden: int = 128
    layers: int = 3
    heads: int = 4
    ffn: int = 384
    seed: int = 0
    """Seed for initialisation and data."""
    calibration: str = "logit-scale"
    """logit-scale: scale the logits (the final norm's weight) so that exact hard-train pass@1 meets
    --target-pass1 on any CPU (docs/model.md); none: save the model as trained."""
    target_pass1: float | None = None
    """Exact hard-train pass@1 the base is calibrated to (default: teacher_accuracy ** hard_steps, what a
    base that learned its teacher exactly scores). A property of the regime, fixed before any method runs."""
    target_tolerance: float = 2.0
    """The regime window is target ÷ this to target × this; later stages refuse a base outside it."""
    calibration_problems: int = 256
    """Hard-train problems (data seed --seed) over which exact pass@1 is calibrated and measured."""
    overwrite: bool = False
    """Replace an existing base in --out (the new one is swapped in only once it is complete)."""

    def check(self) -> None:
        """Every value, before anything is computed or written (the CLI calls it after parsing, `pretrain`
        before its first step): a ValueError is one line and exit 2."""
        try:
            self.task()
        except ValueError as e:
            raise BadInput(str(e)) from None
        if not 0 < self.accuracy() <= 1:
            raise ValueError("teacher_accuracy must be in (0, 1]")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be finite and > 0, got {self.lr}")
        if min(self.hidden, self.layers, self.heads, self.ffn) < 1 or self.hidden % self.heads:
            raise ValueError("hidden, layers, heads and ffn must be >= 1, and hidden a multiple of heads")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"unknown calibration {self.calibration!r}; choose from {', '.join(CALIBRATIONS)}")
        if self.calibration_problems < 1:
            raise ValueError("calibration_problems must be >= 1")
        self.target()  # the target and its window are checked before any compute

    def task(self) -> ChainTask:
        from prefixrl.data.tasks.chain import ChainTask

        return ChainTask(self.easy_min_steps, self.easy_max_steps, self.hard_steps, rare_steps=self.rare_steps,
                         classes=self.classes)

    def accuracy(self) -> float:
        return self.task().design_accuracy() if self.teacher_accuracy is None else self.teacher_accuracy

    def target(self) -> Target:
        from prefixrl.embedded.calibration import Target

        value = self.task().teacher_pass1(self.accuracy()) if self.target_pass1 is None else self.target_pass1
        return Target(value, self.target_tolerance)
