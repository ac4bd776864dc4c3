"""`prefixrl bench last-word`: the comparison docs/last_word.md fixes before its runs, at K = --rare-steps
and each class count of --class-axis (`prefixrl_lab.comparison`), and with --reuse the reuse setting and
its control (`prefixrl_lab.reuse`); last_word.json and its page, last_word_results.md."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import torch

from prefixrl.data.verifier import deadlined
from prefixrl_lab import pipeline
from prefixrl_lab.comparison import Setting
from prefixrl_lab.regime_map import base_steps
from prefixrl_lab.reports import save
from prefixrl_lab.reuse import run_reuse


def run_last_word(cfg) -> dict:
    """cfg: a resolved BenchConfig (which = last-word); one setting per count of --class-axis."""
    settings = {}
    for c in cfg.class_axis:
        name = f"rare{cfg.rare_steps}-classes{c}"
        sub = replace(cfg, classes=c, work=cfg.work / name)
        sub = replace(sub, pretrain_steps=base_steps(sub))
        with deadlined(pipeline.base_config(sub.work / "base", sub).task()) as task:
            settings[name] = Setting(sub, task).run()
    out = {"settings": settings, "config": json.loads(json.dumps(asdict(cfg), default=str)),
           "torch_threads": torch.get_num_threads()}
    if cfg.reuse:  # §4 at the values §1 chose at one class
        one = settings.get(f"rare{cfg.rare_steps}-classes1") or {"chosen": one_class_choice(cfg)}
        out["reuse"] = run_reuse(cfg, one["chosen"])
    cfg.out.mkdir(parents=True, exist_ok=True)
    save(cfg.out / "last_word.json", {"kind": "last-word", **out})
    return out


def one_class_choice(cfg) -> dict:
    """§1's chosen values at one class (its runs, cached in --work, are reused or run)."""
    sub = replace(cfg, classes=1, work=cfg.work / f"rare{cfg.rare_steps}-classes1")
    sub = replace(sub, pretrain_steps=base_steps(sub))
    with deadlined(pipeline.base_config(sub.work / "base", sub).task()) as task:
        return Setting(sub, task).tune_all()[1]
