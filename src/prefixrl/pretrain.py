"""`prefixrl pretrain`: make the embedded base model — a weak reasoner by construction, calibrated.

A random-init Llama learns the chain task from an *imperfect teacher* on easy (short) problems: each
step value in the teacher's traces is right with probability `teacher_accuracy` (docs/task.md). Data is
drawn fresh every step, so nothing is memorised. Where pretraining lands still depends on float
rounding (the CPU, the thread count), and hard pass@1 ≈ p^H magnifies it; so the trained base is then
calibrated to a hard-train pass@1 fixed in advance, measured exactly (`prefixrl.regime`), and the
measurement is saved beside the weights in `regime.json`.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm import tqdm

from prefixrl import regime
from prefixrl.flops import Ledger
from prefixrl.io.checkpoint import write_folder
from prefixrl.io.errors import BadInput
from prefixrl.io.outputs import Output, claim
from prefixrl.mask import make_batch
from prefixrl.model import ModelShape, build_model, load, param_count
from prefixrl.render import encode_response, render_prompt
from prefixrl.seeds import derive
from prefixrl.sft import sft_step
from prefixrl.tasks.chain import ChainTask
from prefixrl.tokenizer import build_tokenizer


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
        if self.calibration not in regime.CALIBRATIONS:
            raise ValueError(f"unknown calibration {self.calibration!r}; choose from {', '.join(regime.CALIBRATIONS)}")
        if self.calibration_problems < 1:
            raise ValueError("calibration_problems must be >= 1")
        self.target()  # the target and its window are checked before any compute

    def task(self) -> ChainTask:
        return ChainTask(self.easy_min_steps, self.easy_max_steps, self.hard_steps, rare_steps=self.rare_steps,
                         classes=self.classes)

    def accuracy(self) -> float:
        return self.task().design_accuracy() if self.teacher_accuracy is None else self.teacher_accuracy

    def target(self) -> regime.Target:
        value = self.task().teacher_pass1(self.accuracy()) if self.target_pass1 is None else self.target_pass1
        return regime.Target(value, self.target_tolerance)


def pretrain(cfg: PretrainConfig, ledger: Ledger | None = None, progress: bool = True):
    """Pretrain, calibrate and write the base into `cfg.out` atomically, sealed with a manifest (a
    flipped byte is refused on load). An existing folder needs `overwrite`; it is replaced only once the
    new one is complete."""
    cfg.check()
    with claim("pretrain", [Output(cfg.out, kind="folder", existing="replace" if cfg.overwrite else "refuse")], {}):
        return _pretrain(cfg, ledger if ledger is not None else Ledger(), progress)


def _pretrain(cfg: PretrainConfig, ledger: Ledger, progress: bool):
    torch.manual_seed(cfg.seed)
    task, accuracy = cfg.task(), cfg.accuracy()
    tok = build_tokenizer(cfg.tokenizer)
    model = build_model(tok, ModelShape(cfg.hidden, cfg.layers, cfg.heads, cfg.ffn), seed=cfg.seed, arch=cfg.arch)
    n_params = param_count(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.98))
    warmup = max(1, cfg.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / cfg.steps)))
    )
    rng = random.Random(cfg.seed)
    t0, bar = time.time(), tqdm(range(cfg.steps), desc="pretrain", disable=not progress)
    for step in bar:
        problems = task.problems("easy", cfg.batch_size, seed=derive(cfg.seed, step))
        prompts = [render_prompt(tok, p.question) for p in problems]
        responses = [encode_response(tok, task.noisy_solution(p, accuracy, rng)) for p in problems]
        loss = sft_step(model, opt, make_batch(prompts, responses, tok.pad_token_id), ledger, "pretrain/train", n_params)
        sched.step()
        bar.set_postfix(loss=f"{loss:.3f}")
    calib_problems = task.problems("hard_train", cfg.calibration_problems, cfg.seed)
    calibration = {"method": "none"}
    if cfg.calibration == "logit-scale":
        calibration = regime.calibrate(model, tok, task, calib_problems, cfg.target())
    meta = {"pretrain": settings_record(cfg),
            "task": {"name": "chain", "easy_min_steps": cfg.easy_min_steps, "easy_max_steps": cfg.easy_max_steps,
                     "hard_steps": cfg.hard_steps, "rare_steps": cfg.rare_steps, "classes": cfg.classes},
            "teacher_accuracy": accuracy,
            "calibration": calibration,
            "n_params": n_params, "flops": ledger.total("pretrain"), "seconds": round(time.time() - t0, 1)}

    def fill(folder: Path) -> None:
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        (folder / "prefixrl.json").write_text(json.dumps(meta, indent=2))
        # The regime as any loader sees it: measured on the folder as written, not on the model in memory.
        saved, _ = load(folder)
        measured = {"hard_train": regime.measure(saved, tok, task, calib_problems),
                    "easy": regime.measure(saved, tok, task, task.problems("easy", cfg.calibration_problems, cfg.seed))}
        (folder / "regime.json").write_text(json.dumps(measured, indent=2))

    write_folder(cfg.out, fill)
    return model, tok


def settings_record(cfg: PretrainConfig) -> dict:
    """What a base is a function of (recorded in prefixrl.json; `ensure_pretrained` compares it): every
    setting but where it is written and whether it may replace an older one."""
    return {k: v for k, v in json.loads(json.dumps(asdict(cfg), default=str)).items() if k not in ("out", "overwrite")}


def holds_base(cfg: PretrainConfig) -> bool:
    """Whether `cfg.out` holds a base made with exactly this configuration (where the folder was first
    written does not matter: a copied base counts)."""
    meta = cfg.out / "prefixrl.json"
    saved = json.loads(meta.read_text()).get("pretrain") or {} if meta.is_file() else None
    # (older bases recorded their `out` too)
    return saved is not None and {k: v for k, v in saved.items() if k not in ("out", "overwrite")} == settings_record(cfg)


def ensure_pretrained(cfg: PretrainConfig, progress: bool = True) -> None:
    """Pretrain unless `cfg.out` already holds a base model made with exactly this configuration (where
    the folder was first written does not matter: a copied base is reused)."""
    if holds_base(cfg):
        return
    pretrain(replace(cfg, overwrite=True), progress=progress)  # the experiment's own folder: a stale base goes
