"""`prefixrl train`: the runner (its config, `RLSettings` composed once, is `prefixrl.cli.options.TrainConfig`)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch

from prefixrl.cli.options import TrainConfig
from prefixrl.cli.policy import load_policy, task_of
from prefixrl.cli.stages import regime_gate
from prefixrl.engine import SamplingParams
from prefixrl.experiments import pipeline
from prefixrl.experiments.settings import DemoConfig
from prefixrl.io.errors import BadInput
from prefixrl.io.outputs import Output, claim
from prefixrl.io.store import write_json_atomic
from prefixrl.io.tracking import Tracker
from prefixrl.prefixes import PrefixedPrompt, cut_prefixes, load_prefixes, save_prefixes
from prefixrl.traces import load_traces
from prefixrl.train import METHODS, train_rl
from prefixrl.verifier import deadlined


def run_train(cfg: TrainConfig) -> dict:
    preset = {"--preset-dir": preset_folder(cfg)} if cfg.preset is not None else {}
    inputs = {"--model": cfg.model, "--prefixes": cfg.prefixes, "--traces": cfg.traces, **preset, **cfg.inputs()}
    with claim("train", [Output(cfg.out, kind="folder", existing="resume" if cfg.resume else "refuse")], inputs,
               hint="--resume (to continue that run)"):
        return _train(apply_preset(cfg) if cfg.preset is not None else cfg)


def preset_folder(cfg: TrainConfig) -> Path:
    return cfg.preset_dir or Path("runs/presets") / str(cfg.preset)


def _train(cfg: TrainConfig) -> dict:
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    model, tok, task = load_policy(cfg.model, cfg.task_spec(), device=cfg.device)
    problems = task.problems("hard_train", cfg.problems, cfg.data_seed)
    method = METHODS[cfg.rl.method]
    uses_traces = cfg.rl.method != "rl"
    settings = replace(cfg.rl, max_new_tokens=cfg.rl.max_new_tokens or task.max_response_tokens)
    with deadlined(task, cfg.verifier_workers, cfg.verifier_timeout) as task:
        prefixes = load_prefixes(cfg.prefixes, task, tok) if method.mix != 0.0 and cfg.prefixes else []
        traces = []
        if (method.offpolicy or method.sft_first or settings.prefix_schedule == "adaptive") and cfg.traces is not None:
            traces, rejected = load_traces(cfg.traces, task, tok)
            for msg in rejected:
                print(f"excluded: {msg}", file=sys.stderr)
        check_length(model, tok, problems, prefixes, settings.max_new_tokens)
        # the collection's cost travels in its trace store (0 for imported traces)
        charged = pipeline.charged_flops(cfg.traces) if uses_traces and cfg.traces is not None else 0.0
        cfg.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cfg.out / "config.json", json.loads(json.dumps(asdict(cfg), default=str)))
        tracker = Tracker(cfg.log_to, cfg.out, asdict(cfg), name=cfg.out.name) if cfg.log_to else None
        try:
            result = train_rl(model, tok, task, settings, problems, prefixes, cfg.out, charged_flops=charged,
                              traces=traces, resume=cfg.resume, tracker=tracker)
        finally:
            if tracker is not None:
                tracker.close()
        counts = task.pool.counts
        if counts["timeout"] or counts["error"]:
            print(f"verifier: {counts['timeout']} timeouts, {counts['error']} errors (reward 0) in "
                  f"{counts['items']} verifications", file=sys.stderr)
        return result


def check_length(model, tok, problems, prefixes, max_new_tokens: int) -> None:
    """The longest prompt + prefix + completion must fit the model's positions, or sampling would fail late."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is None:
        return
    longest = max([len(PrefixedPrompt.of(tok, p).ids) for p in problems]
                  + [len(PrefixedPrompt.of(tok, p.problem, p.prefix_ids).ids) for p in prefixes], default=0)
    if longest + max_new_tokens > limit:
        raise BadInput(f"the longest prompt + prefix ({longest} tokens) + --max-new-tokens ({max_new_tokens}) exceeds "
                       f"the model's {limit} positions (max_position_embeddings); lower --max-new-tokens")


def apply_preset(cfg: TrainConfig) -> TrainConfig:
    """Build the preset's ingredients once through the experiments' pipeline (reused afterwards) and point
    the config at them."""
    if cfg.preset != "quick":
        raise BadInput(f"unknown preset {cfg.preset!r}; choose from: quick")
    folder = preset_folder(cfg)
    d = DemoConfig(quick=True).resolved()
    pcfg = pipeline.base_config(folder / "base", d, seed=d.seed)
    model, tok = pipeline.ensure_base(pcfg, progress=False)
    with deadlined(task_of(folder / "base")) as task:
        problems = task.problems("hard_train", d.train_problems, d.seed)
        regime_gate(model, folder / "base", tok, task, problems, d.collect_cap, d.min_yield)
        col = pipeline.collect_traces(folder / "traces.parquet", folder / "base", task, problems,
                                      SamplingParams(max_new_tokens=task.max_response_tokens), d.collect_cap, d.seed,
                                      model=model, tok=tok)
    save_prefixes(folder / "prefixes.parquet", cut_prefixes(col.traces, task, tok, seed=d.seed), tok)  # deterministic
    return replace(cfg, model=folder / "base", traces=folder / "traces.parquet", prefixes=folder / "prefixes.parquet",
                   problems=d.train_problems, data_seed=d.seed)
