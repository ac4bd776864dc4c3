"""`prefixrl pretrain`: make the embedded base model — a weak reasoner by construction, calibrated.

A random-init Llama learns the chain task from an *imperfect teacher* on easy (short) problems: each
step value in the teacher's traces is right with probability `teacher_accuracy` (docs/task.md). Data is
drawn fresh every step, so nothing is memorised. Where pretraining lands still depends on float
rounding (the CPU, the thread count), and hard pass@1 ≈ p^H magnifies it; so the trained base is then
calibrated to a hard-train pass@1 fixed in advance, measured exactly (`prefixrl.rl.exact`), and the
measurement is saved beside the weights in `regime.json`.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from tqdm import tqdm

from prefixrl.data.prompt import encode_response, render_prompt
from prefixrl.embedded.calibration import calibrate
from prefixrl.embedded.config import PretrainConfig
from prefixrl.embedded.tokenizer import build_tokenizer
from prefixrl.io.checkpoint import write_folder
from prefixrl.io.outputs import Output, claim
from prefixrl.rl import exact
from prefixrl.rl.mask import make_batch
from prefixrl.rl.sft import sft_step
from prefixrl.rollout.flops import Ledger
from prefixrl.rollout.model import ModelShape, build_model, load, param_count
from prefixrl.rollout.seeds import derive


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
        responses = [encode_response(tok, task.noisy_solution(p, accuracy, rng, cfg.copy_rate)) for p in problems]
        loss = sft_step(model, opt, make_batch(prompts, responses, tok.pad_token_id), ledger, "pretrain/train", n_params)
        sched.step()
        bar.set_postfix(loss=f"{loss:.3f}")
    calib_problems = task.problems("hard_train", cfg.calibration_problems, cfg.seed)
    calibration = {"method": "none"}
    if cfg.calibration == "logit-scale":
        calibration = calibrate(model, tok, task, calib_problems, cfg.target())
    meta = {"pretrain": settings_record(cfg),
            "task": {"name": "chain", "easy_min_steps": cfg.easy_min_steps, "easy_max_steps": cfg.easy_max_steps,
                     "hard_steps": cfg.hard_steps, "rare_steps": cfg.rare_steps, "classes": cfg.classes,
                     # the reuse switch, where it is on (the stages after pretraining read the task from here)
                     **{k: getattr(task, k) for k, v in task.inert.items() if getattr(task, k) != v}},
            "teacher_accuracy": accuracy,
            "calibration": calibration,
            "n_params": n_params, "flops": ledger.total("pretrain"), "seconds": round(time.time() - t0, 1)}

    def fill(folder: Path) -> None:
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        (folder / "prefixrl.json").write_text(json.dumps(meta, indent=2))
        # The regime as any loader sees it: measured on the folder as written, not on the model in memory.
        saved, _ = load(folder)
        measured = {"hard_train": exact.measure(saved, tok, task, calib_problems),
                    "easy": exact.measure(saved, tok, task, task.problems("easy", cfg.calibration_problems, cfg.seed))}
        (folder / "regime.json").write_text(json.dumps(measured, indent=2))

    write_folder(cfg.out, fill)
    return model, tok


# settings added after bases were made, left out of the record at these values so those bases stay reused
INERT = {"recurrences": 0, "recur_operands": "same", "copy_rate": 0.0}


def settings_record(cfg: PretrainConfig) -> dict:
    """What a base is a function of (recorded in prefixrl.json; `ensure_pretrained` compares it): every
    setting but where it is written and whether it may replace an older one."""
    return {k: v for k, v in json.loads(json.dumps(asdict(cfg), default=str)).items()
            if k not in ("out", "overwrite") and not (k in INERT and v == INERT[k])}


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
