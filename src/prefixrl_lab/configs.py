"""The experiments' settings: `DemoConfig` (`prefixrl demo`) and `BenchConfig` (`prefixrl bench`).

Like `prefixrl.rl.settings`, this module imports no torch, transformers or pyarrow, so that the commands'
--help answers at once (tests/cli/test_cli.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import tyro

from prefixrl.cli.options import TrainConfig
from prefixrl.embedded.config import PretrainConfig, TaskShape
from prefixrl_lab.lineup import DEFAULT_METHODS, QUICK_MAP_METHODS


@dataclass(frozen=True)
class DemoConfig(TaskShape):
    """The whole method end to end: pretrain, collect, prefixes, PrefixRL vs standard RL, report."""

    resume_hint = "rerun the same command: finished pieces are reused"  # not a field

    out: Path = Path("runs/demo")
    """Output folder: base model, traces, prefixes, runs, report.md, report.json, curve.png."""
    quick: bool = False
    """A smaller run (fewer problems and steps): about 3 minutes on 2 cores, most of it pretraining."""
    seed: int = 0
    """Seed for problems, pretraining, sampling and RL."""
    train_problems: int | None = None
    """Hard-train problems (rejection sampling and RL); default 64, --quick 16."""
    heldout_problems: int | None = None
    """Hard-heldout problems (evaluation only); default 128, --quick 32."""
    pretrain_steps: int = PretrainConfig.steps
    """Pretraining steps for the base model."""
    base_samples: int | None = None
    """Samples per problem for the base model's pass@k; default 64, --quick 16."""
    collect_cap: int = 1024
    """Most samples drawn per problem in rejection sampling."""
    rl_steps: int | None = None
    """PrefixRL steps; standard RL then runs until it has spent the same total FLOPs; default 300, --quick 60."""
    rl_lr: float | None = None
    """RL learning rate of every method (default: each method its own, chosen by the pilot in docs/regimes.md)."""
    final_samples: int | None = None
    """Samples per problem for the final pass@1; default 16, --quick 8."""
    target_pass1: float | None = None
    """Exact hard-train pass@1 the base is calibrated to (default: the pass rate of a base that learned its
    teacher exactly, 0.65 ** hard_steps with the default teacher)."""
    min_yield: float = 0.25
    """Stop before rejection sampling if it is expected (exactly) to solve less than this share of problems."""
    progress: bool = True
    """Show progress bars."""
    device: str = "auto"
    """Where sampling, the exact measurements and RL run: auto (a CUDA GPU if torch sees one), cpu, cuda or
    cuda:N. The base is pretrained and calibrated on the CPU whatever this says (docs/model.md: its regime
    is the same on every CPU)."""

    def check(self) -> None:
        super().check()
        from prefixrl.rollout.device import resolve

        resolve(self.device)

    def resolved(self) -> DemoConfig:
        """The sizes the user left unset, from the full or the quick preset; a flag the user passed always
        wins (`prefixrl demo --quick --rl-steps 100` runs 100 steps). Both presets share one base model."""
        preset = QUICK if self.quick else FULL
        return replace(self, **{k: v for k, v in preset.items() if getattr(self, k) is None})


FULL = {"train_problems": 64, "heldout_problems": 128, "base_samples": 64, "rl_steps": 300, "final_samples": 16}
QUICK = {"train_problems": 16, "heldout_problems": 32, "base_samples": 16, "rl_steps": 60, "final_samples": 8}


BENCHES = {"paper": "results.md", "cross-family": "cross_family.md", "perf": "performance.md", "regimes": "regimes.md",
           "last-word": "last_word_results.md", "in-context": "in_context.md"}


@dataclass(frozen=True)
class BenchConfig(TaskShape):
    """The paper's comparisons on the embedded task: all methods, equal FLOPs, several seeds."""

    resume_hint = "rerun the same command: finished runs are reused"  # not a field

    which: tyro.conf.Positional[str] = "paper"
    """paper (all methods, equal FLOPs, seeds → results.md), cross-family (traces from a Qwen2 model with
    another tokenizer, moved through text, against same-model traces → cross_family.md) or perf (sampler,
    training and rejection-sampling speed, side by side → performance.md) or regimes (paper at each setting
    of the regime knob --rare-steps and of --class-axis, with the regime gates → regimes.md) or last-word
    (docs/last_word.md's equal tuning, SFT depths and ReGFT at K = --rare-steps and each --class-axis count
    → last_word_results.md) or in-context (the paper's in-context experiment in the reuse switch's task,
    docs/last_word.md §5 → in_context.md; shares --work with last-word)."""
    json: Path | None = None
    """perf: also write the figures as JSON to this file."""
    out: Path = Path("runs/bench")
    """Where results.md, results.json and the results/ plots go (files of those names there are replaced);
    the committed docs are regenerated with --out docs."""
    work: Path = Path("runs/bench")
    """Scratch folder: base model, traces, runs (reused piece by piece; only a folder bench made)."""
    quick: bool = False
    """A small version (2 seeds, fewer problems, a smaller budget) for a first look or CI."""
    seeds: int = 3
    train_problems: int = 64
    heldout_problems: int = 128
    flops_budget: float = 10e12
    """Total FLOPs per run, rejection sampling included for the methods that use traces."""
    passk_samples: int = 64
    """Samples per heldout problem for pass@k (k = 1, 2, 4, …, this)."""
    methods: tuple[str, ...] | None = None
    """Methods to run (labels; rl-n64 is standard RL with 64 samples per prompt). Beyond the paper, also:
    prefixrl-adaptive, prefixrl-harvest, prefixrl-adaptive-harvest, prefixrl-recollect (docs/choices.md).
    Default: the paper's seven and the two variants pilot 5 admitted, prefixrl-adaptive and
    prefixrl-adaptive-harvest (regimes --quick: prefixrl, rl, sft-rl)."""
    pretrain_steps: int = PretrainConfig.steps
    calibration: str = PretrainConfig.calibration
    """Base calibration (logit-scale or none; docs/model.md). perf at toy size needs none: a base
    pretrained for a few steps reaches no regime target."""
    collect_cap: int = 1024
    """Most samples per problem in rejection sampling."""
    rl_lr: float | None = None
    """RL learning rate of every method (default: each method its own, chosen by the pilot in docs/regimes.md)."""
    bands: bool = True
    """Also run prefixrl-only on prefixes from each length band (back-generalization), first seed only."""
    knob: tuple[int, ...] = (0, 4)
    """regimes: the --rare-steps settings mapped (0: shared skill; 4: the most class-specific knowledge the
    design pass rate allows)."""
    class_axis: tuple[int, ...] = (1, 4)
    """regimes: the --classes counts mapped at each K > 0 (1: one missing table shared by every problem;
    4: a table per quarter of them, a quarter of the examples per fact; docs/regimes.md, pilot 4)."""
    reuse: bool = False
    """last-word: also the reuse setting and its control (docs/last_word.md §4), at the values chosen at one class."""
    progress: bool = True

    def resolved(self) -> BenchConfig:
        cfg = self
        if self.which in ("last-word", "in-context"):  # docs/last_word.md's methods and grids, fixed before the runs
            return replace(self, seeds=2, train_problems=16, heldout_problems=32, flops_budget=1e12) if self.quick else self
        if self.quick and self.which == "regimes":  # the two ends of the knob, the three methods the map is about
            cfg = replace(self, seeds=1, train_problems=16, heldout_problems=32, flops_budget=1e12, passk_samples=16,
                          methods=self.methods or QUICK_MAP_METHODS, knob=(0, 4), class_axis=(self.classes,))
        elif self.quick:
            cfg = replace(self, seeds=2, train_problems=16, heldout_problems=32, flops_budget=2e12, passk_samples=16)
        return replace(cfg, methods=cfg.methods or DEFAULT_METHODS)


@dataclass(frozen=True)
class PresetTrainConfig(TrainConfig):
    """On-policy RL: PrefixRL, or one of the paper's baselines on the same trainer (docs/baselines.md)."""

    preset: str | None = None
    """quick: the demo's quick configuration (base model, traces, prefixes built once in --preset-dir);
    replaces --model, --prefixes, --traces, --problems and --data-seed (the other flags still apply)."""
    preset_dir: Path | None = None
    """Where a preset's base model, traces and prefixes live (default runs/presets/NAME)."""
