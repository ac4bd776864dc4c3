"""`prefixrl train --preset quick`: the demo's quick ingredients (base model, traces, prefixes), built once
through the lab's pipeline and reused, with the library's `train` run on them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prefixrl.cli.policy import task_of
from prefixrl.cli.stages import gate_sampling
from prefixrl.cli.training import run_train
from prefixrl.data.prefixes import cut_prefixes, save_prefixes
from prefixrl.data.verifier import deadlined
from prefixrl.io.errors import BadInput
from prefixrl.rollout.engine import SamplingParams
from prefixrl_lab import pipeline
from prefixrl_lab.configs import DemoConfig, PresetTrainConfig


def run_preset_train(cfg: PresetTrainConfig) -> dict:
    """`prefixrl train`, with --preset's inputs built (once the output is claimed) when it is given."""
    if cfg.preset is None:
        return run_train(cfg)
    return run_train(cfg, prepare=apply_preset, inputs={"--preset-dir": preset_folder(cfg)})


def preset_folder(cfg: PresetTrainConfig) -> Path:
    return cfg.preset_dir or Path("runs/presets") / str(cfg.preset)


def apply_preset(cfg: PresetTrainConfig) -> PresetTrainConfig:
    """Build the preset's ingredients once through the lab's pipeline (reused afterwards) and point the
    config at them."""
    if cfg.preset != "quick":
        raise BadInput(f"unknown preset {cfg.preset!r}; choose from: quick")
    folder = preset_folder(cfg)
    d = DemoConfig(quick=True).resolved()
    pcfg = pipeline.base_config(folder / "base", d, seed=d.seed)
    model, tok = pipeline.ensure_base(pcfg, progress=False)
    with deadlined(task_of(folder / "base")) as task:
        problems = task.problems("hard_train", d.train_problems, d.seed)
        gate_sampling(model, folder / "base", tok, task, problems, d.collect_cap, d.min_yield)
        col = pipeline.collect_traces(folder / "traces.parquet", folder / "base", task, problems,
                                      SamplingParams(max_new_tokens=task.max_response_tokens), d.collect_cap, d.seed,
                                      model=model, tok=tok)
    # deterministic: cut again on every use
    save_prefixes(folder / "prefixes.parquet", cut_prefixes(col.traces, task, tok, seed=d.seed), tok, task)
    return replace(cfg, model=folder / "base", traces=folder / "traces.parquet", prefixes=folder / "prefixes.parquet",
                   problems=d.train_problems, data_seed=d.seed)
