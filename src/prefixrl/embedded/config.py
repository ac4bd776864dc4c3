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


@dataclass(frozen=True, kw_only=True)
class TaskShape:
    """The built-in chain task's shape: one set of knobs, with one default, for every command that builds a
    base (`prefixrl pretrain`, `demo`, `bench`). The stages after pretraining read it from the base's folder,
    so the README's stage-by-stage commands and `prefixrl demo` train on the same task."""

    hard_steps: int = 16
    """Steps in a hard chain (the difficulty knob); easy chains have 1 to hard_steps steps."""
    rare_steps: int = 4
    """The regime knob (docs/regimes.md): steps of each hard chain that are class-specific rare operations the
    base never learned (its teacher guesses them); 0 is the shared-skill chain of earlier releases. 4 was
    chosen by the regime gates."""
    classes: int = 4
    """Problem classes, one rare operation each (used when --rare-steps > 0)."""
    teacher_accuracy: float | None = None
    """Probability that the base's imperfect teacher writes a common step's value correctly (default: the
    value that puts hard pass@1 at the design rate 0.65 ** hard_steps at this --rare-steps; 0.65 with none)."""
    recurrences: int = 0
    """The reuse switch (docs/last_word.md §4): the last steps of a hard chain that look a rare operation up
    again; a recurrence must agree with its operand's first use (0: none, the map's task)."""
    recur_operands: str = "same"
    """same: recurrences on operands of the first uses (the switch); fresh: on operands none of them has (its
    control, where nothing before a recurrence determines it)."""
    copy_rate: float = 0.0
    """Probability that the teacher writes, at a lookup it made before in the same chain, what it wrote
    there (a teacher consistent within a document, so the base can learn to reuse its context)."""

    def check(self) -> None:
        """The shape's values (BadInput: one line, exit 2): the chain task's own rules, and a teacher
        accuracy in (0, 1]."""
        try:
            self.task()
        except ValueError as e:
            raise BadInput(str(e)) from None
        if not 0 < self.accuracy() <= 1:
            raise BadInput("teacher_accuracy must be in (0, 1]")
        if not 0 <= self.copy_rate <= 1:
            raise BadInput(f"copy_rate must be in [0, 1], got {self.copy_rate}")

    def accuracy(self) -> float:
        """The teacher's per-step accuracy on common steps: given, or the design value of this shape."""
        return self.task().design_accuracy() if self.teacher_accuracy is None else self.teacher_accuracy

    def task(self) -> ChainTask:
        """The hard chains of this shape, with easy chains of 1 to hard_steps steps."""
        from prefixrl.data.tasks.chain import ChainTask

        return ChainTask(1, self.hard_steps, self.hard_steps, rare_steps=self.rare_steps, classes=self.classes,
                         recurrences=self.recurrences, recur_operands=self.recur_operands)


@dataclass(frozen=True)
class PretrainConfig(TaskShape):
    """Pretrain the embedded base model (a tiny Llama) on easy problems from an imperfect teacher."""

    out: Path = Path("runs/base")
    """Folder for the base model (Hugging Face format)."""
    steps: int = 500
    """Optimizer steps."""
    batch_size: int = 64
    """Sequences per step."""
    lr: float = 3e-3
    """Peak learning rate (linear warm-up, cosine decay)."""
    easy_min_steps: int = 1
    """Shortest easy chain."""
    easy_max_steps: int = 16
    """Longest easy chain."""
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
        before its first step): BadInput, one line and exit 2."""
        super().check()
        if self.steps < 1 or self.batch_size < 1:
            raise BadInput("steps and batch_size must be >= 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise BadInput(f"lr must be finite and > 0, got {self.lr}")
        if min(self.hidden, self.layers, self.heads, self.ffn) < 1 or self.hidden % self.heads:
            raise BadInput("hidden, layers, heads and ffn must be >= 1, and hidden a multiple of heads")
        if self.calibration not in CALIBRATIONS:
            raise BadInput(f"unknown calibration {self.calibration!r}; choose from {', '.join(CALIBRATIONS)}")
        if self.calibration_problems < 1:
            raise BadInput("calibration_problems must be >= 1")
        self.target()  # the target and its window are checked before any compute

    def task(self) -> ChainTask:
        from prefixrl.data.tasks.chain import ChainTask

        return ChainTask(self.easy_min_steps, self.easy_max_steps, self.hard_steps, rare_steps=self.rare_steps,
                         classes=self.classes, recurrences=self.recurrences, recur_operands=self.recur_operands)

    def target(self) -> Target:
        from prefixrl.embedded.calibration import Target

        value = self.task().teacher_pass1(self.accuracy()) if self.target_pass1 is None else self.target_pass1
        return Target(value, self.target_tolerance)
