"""The settings the library's stages run with: `RLSettings`, the RL trainer's one settings object (every
method shares it), and `PretrainConfig`, how the embedded base model is made. Each field's docstring is
its --help (`prefixrl train --help`, `prefixrl pretrain --help`), and each `check` is the one place its
values are validated.

This module imports no torch, transformers or pyarrow (a check imports what it needs when it runs), so
that a command's --help answers at once; tests/cli/test_cli.py holds it to that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from prefixrl.io.errors import BadInput
from prefixrl.rl.methods import METHODS
from prefixrl.rollout import limits
from prefixrl.rollout.precision import CHOICES as PRECISIONS

SCHEDULES = ("fixed", "adaptive")  # --prefix-schedule (`prefixrl.rl.pool`)
# --sft-rule (`prefixrl.rl.sft.fit`): search: the lr grid and the epochs by the least validation NLL;
# early-stop: the given lr, epochs by that NLL; epochs: exactly the given epochs at the given lr
SFT_RULES = ("search", "early-stop", "epochs")


@dataclass(frozen=True)
class RLSettings:
    """The RL trainer's settings, shared by every method (docs/baselines.md); each field's text is its --help."""

    method: str = "prefixrl"
    """prefixrl, prefixrl-only (prefixed problems only), rl (standard RL), sft-rl (SFT on the traces,
    then RL), offpolicy (traces in the group, clipped importance weights), luffy (traces in the group,
    policy shaping) or regft-rl (SFT on the policy's own verified completions of the prefixed problems,
    then RL; beyond the paper)."""
    steps: int = 300
    """RL steps."""
    flops_budget: float = 0.0
    """Stop once total FLOPs (the charged offline cost included) reach this; 0 = no budget."""
    prompts_per_step: int = 8
    """Prompts per step (each gets its own group)."""
    samples_per_prompt: int = 8
    """Group size n."""
    mix: float = 0.75
    """Share of prefixed prompts per batch for --method prefixrl (paper: 3 prefixed : 1 unprefixed)."""
    prefixed_samples: int | None = None
    """Of a prefixed prompt's group of n, how many samples are drawn with the prefix; the other n − M are drawn
    from its problem without one, and all n share one baseline (a mixed group, as Critique-GRPO's n_prefix;
    docs/choices.md). Default: all n, the paper's."""
    prefix_schedule: str = "fixed"
    """fixed: the paper's rule, each prefixed prompt one of the stored cuts, drawn uniformly. adaptive (beyond
    the paper): per problem a ladder of cuts of its trace, from none up, on which it steps toward success
    --prefix-target (needs --traces; `prefixrl.rl.pool`, docs/choices.md)."""
    prefix_target: float = 0.5
    """adaptive: the success each problem's cut is moved toward (0.5: where p(1 − p), a group's chance of
    carrying signal, peaks)."""
    prefix_band: float = 0.25
    """adaptive: a problem steps one rung once its running success leaves [target − band, target + band]."""
    prefix_rungs: int = 8
    """adaptive: rungs per ladder: no prefix, then cuts at 1/r, 2/r, … (r − 1)/r of the trace."""
    harvest: bool = False
    """Beyond the paper: a verified-correct on-policy sample of a plain problem without a trace becomes its
    trace (its FLOPs are already in the ledger) and its prefixes join the pool; saved with their step in
    OUT/harvested.parquet (`prefixrl.rl.pool`)."""
    recollect_every: int = 0
    """Beyond the paper: every this many steps, rejection-sample with the current policy on the plain
    problems still without a trace (0: never). Found traces join the pool like harvested ones and go to
    OUT/harvested.parquet with their step; every sample is charged to the ledger (recollect/)."""
    recollect_cap: int = 64
    """Re-collection's budget: most samples per untraced problem at each re-collection."""
    lr: float = 3e-5
    """AdamW learning rate."""
    grad_clip: float = 1.0
    """Clip the gradient's global norm at this."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts."""
    top_p: float = 1.0
    """Nucleus sampling of the rollouts (1 = off)."""
    max_new_tokens: int | None = None
    """Longest completion sampled (default: the task's bound; also the constant of the loss normalisation)."""
    eval_every: int = 20
    """Evaluate unprefixed (and prefixed) hard-train accuracy every this many steps."""
    eval_problems: int = 64
    """Problems in each of those evaluations."""
    eval_samples: int = 4
    """Samples per problem in each of those evaluations."""
    sft_epochs: int = 32
    """sft-rl, regft-rl: most passes over the examples before RL (--sft-rule epochs: exactly this many); the
    number used is chosen on held-out problems (least validation NLL, `prefixrl.rl.sft.fit`)."""
    sft_lr: float = 3e-4
    """sft-rl, regft-rl: centre of the SFT learning rates tried (0.1× to 10× it; chosen like the epochs);
    with --sft-rule early-stop or epochs, the SFT learning rate itself."""
    sft_rule: str = "search"
    """sft-rl, regft-rl: search (lr and epochs by the least validation NLL), early-stop (--sft-lr, epochs by
    that NLL) or epochs (--sft-epochs passes at --sft-lr, nothing held out)."""
    regft_samples: int = 8
    """regft-rl: completions sampled per prefix from the policy before RL; the verified-correct ones are fitted."""
    is_clip: float = 1.0
    """offpolicy: upper clip of the token-level importance weights."""
    shaping_gamma: float = 0.1
    """luffy: γ of the policy shaping p/(p+γ) (LUFFY's value)."""
    max_nonfinite_steps: int = 5
    """Stop after this many consecutive steps with a non-finite loss or gradient (the last good policy is saved)."""
    save_every: int = 0
    """Save the policy in HF format to OUT/step-NNNNNN every this many steps (0: only OUT/final)."""
    checkpoint_every: int = 25
    """Full checkpoint (policy, optimizer, ledger, RNG) every this many steps, for --resume."""
    precision: str = "auto"
    """auto | bf16 | fp32. auto: bf16 autocast on a GPU with native bf16; float32 on every CPU, so the
    default computes alike on CPUs with and without native bf16 (bf16 opts in)."""
    compile: bool = False
    """torch.compile the model's backbone for the training forward (first steps pay the compile)."""
    micro_batch_tokens: int = 8192
    """Padded tokens per training micro-batch; rows are length-bucketed and gradients accumulated."""
    seed: int = 0
    """Seed of batches, sampling and initialisation of the run."""

    def check(self) -> None:
        """Every value, checked in one place before anything is read or written (BadInput: exit 2).
        The CLI calls it after parsing, `train_rl` before its first step."""
        if self.method not in METHODS:
            raise BadInput(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.precision not in PRECISIONS:
            raise BadInput(f"unknown precision {self.precision!r}; choose from: {', '.join(PRECISIONS)}")
        if not 0.0 <= self.mix <= 1.0:
            raise BadInput(f"mix must be in [0, 1], got {self.mix}")
        if self.prompts_per_step < 1 or self.samples_per_prompt < 2:
            raise BadInput("need prompts_per_step >= 1 and samples_per_prompt >= 2 (a group baseline needs 2)")
        if self.prefixed_samples is not None:
            if METHODS[self.method].offpolicy:
                raise BadInput(f"prefixed_samples: method {self.method} puts the trace in the group; mixed groups "
                               "are for the methods that draw prefixed prompts (prefixrl, prefixrl-only)")
            if not 1 <= self.prefixed_samples <= self.samples_per_prompt:
                raise BadInput(f"prefixed_samples must be in [1, {self.samples_per_prompt}] (the group's size), "
                               f"got {self.prefixed_samples}")
        at_least_one = ("eval_every", "eval_problems", "eval_samples", "checkpoint_every", "micro_batch_tokens",
                        "max_nonfinite_steps")
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise BadInput(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("steps", "save_every", "sft_epochs"):
            if getattr(self, name) < 0:
                raise BadInput(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise BadInput(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        for name, low in (("lr", 0.0), ("sft_lr", 0.0), ("flops_budget", 0.0)):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= low):
                raise BadInput(f"{name} must be finite and >= {low:g}, got {getattr(self, name)}")
        for name in ("grad_clip", "is_clip", "shaping_gamma"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise BadInput(f"{name} must be finite and > 0, got {getattr(self, name)}")
        if self.sft_rule not in SFT_RULES:
            raise BadInput(f"unknown SFT rule {self.sft_rule!r}; choose from: {', '.join(SFT_RULES)}")
        limits.check_temperature(self.temperature)
        limits.check_top_p(self.top_p)
        limits.check_seed(self.seed)
        for name in ("samples_per_prompt", "eval_samples", "recollect_cap", "regft_samples"):
            limits.check_samples(getattr(self, name), name)
        self._check_pool()

    def _check_pool(self) -> None:
        if self.prefix_schedule not in SCHEDULES:
            raise BadInput(f"unknown prefix schedule {self.prefix_schedule!r}; choose from: {', '.join(SCHEDULES)}")
        if not 0 < self.prefix_target < 1:
            raise BadInput(f"prefix_target must be in (0, 1), got {self.prefix_target}")
        if not 0 <= self.prefix_band < 0.5:
            raise BadInput(f"prefix_band must be in [0, 0.5), got {self.prefix_band}")
        if self.prefix_rungs < 2:
            raise BadInput(f"prefix_rungs must be >= 2 (no prefix and one cut), got {self.prefix_rungs}")
        share = self.prefixed_share
        if self.prefix_schedule == "adaptive" and share == 0:
            raise BadInput(f"--prefix-schedule adaptive needs a method that draws prefixed problems, not {self.method}")
        if self.recollect_every and share == 0:
            raise BadInput(f"--recollect-every needs a method that draws prefixed problems, not {self.method}")
        if self.recollect_cap < 1:
            raise BadInput(f"recollect_cap must be >= 1, got {self.recollect_cap}")
        if self.harvest and not 0 < share < 1:
            raise BadInput(f"--harvest needs a method that draws both plain and prefixed problems (prefixrl), "
                           f"not {self.method} with mix {share:g}")

    @property
    def prefixed_share(self) -> float:
        fixed = METHODS[self.method].mix
        return self.mix if fixed is None else fixed
