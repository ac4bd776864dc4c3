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
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from prefixrl import regime
from prefixrl.flops import Ledger
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

    def __post_init__(self) -> None:
        if not 0 < self.accuracy() <= 1:
            raise ValueError("teacher_accuracy must be in (0, 1]")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")
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
    ledger = ledger if ledger is not None else Ledger()
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
    cfg.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(cfg.out)
    tok.save_pretrained(cfg.out)
    meta = {"pretrain": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
            "task": {"name": "chain", "easy_min_steps": cfg.easy_min_steps, "easy_max_steps": cfg.easy_max_steps,
                     "hard_steps": cfg.hard_steps, "rare_steps": cfg.rare_steps, "classes": cfg.classes},
            "teacher_accuracy": accuracy,
            "calibration": calibration,
            "n_params": n_params, "flops": ledger.total("pretrain"), "seconds": round(time.time() - t0, 1)}
    (cfg.out / "prefixrl.json").write_text(json.dumps(meta, indent=2))
    # The regime as any loader sees it: measured on the folder just written, not on the model in memory.
    saved, _ = load(cfg.out)
    measured = {"hard_train": regime.measure(saved, tok, task, calib_problems),
                "easy": regime.measure(saved, tok, task, task.problems("easy", cfg.calibration_problems, cfg.seed))}
    (cfg.out / "regime.json").write_text(json.dumps(measured, indent=2))
    return model, tok


def ensure_pretrained(cfg: PretrainConfig, progress: bool = True) -> None:
    """Pretrain unless `cfg.out` already holds a base model made with exactly this configuration (where
    the folder was first written does not matter: a copied base is reused)."""
    meta = cfg.out / "prefixrl.json"

    def settings(d: dict) -> dict:
        return {k: v for k, v in d.items() if k != "out"}

    wanted = settings(json.loads(json.dumps(asdict(cfg), default=str)))
    if meta.is_file() and settings(json.loads(meta.read_text()).get("pretrain") or {}) == wanted:
        return
    pretrain(cfg, progress=progress)
