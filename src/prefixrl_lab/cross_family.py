"""`prefixrl bench cross-family`: PrefixRL with prefixes from its own traces and from another model
family's (Qwen2, another tokenizer, moved through text) → docs/cross_family.md."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np

from prefixrl.data.evaluate import evaluate
from prefixrl.data.prefixes import cut_prefixes
from prefixrl.data.traces import save_traces
from prefixrl.rl.settings import RLSettings
from prefixrl.rollout.engine import Sampler, SamplingParams
from prefixrl.rollout.model import param_count
from prefixrl_lab import pipeline
from prefixrl_lab.configs import BenchConfig
from prefixrl_lab.curves import plot_curves
from prefixrl_lab.paper import collection
from prefixrl_lab.reports import save
from prefixrl_lab.stopwatch import WallClock


def run_cross_family(cfg: BenchConfig, task) -> dict:
    """PrefixRL on the Llama policy with prefixes from (a) its own rejection-sampled traces and (b) traces
    rejection-sampled by a Qwen2 model with a different tokenizer, moved through text and cut at
    whitespace. Each run is charged its own rejection-sampling FLOPs (for (b), the Qwen2 model's)."""
    from prefixrl.data.traces import transfer_traces

    clock = WallClock(cfg.work, "cross-family")
    policy_base, tok = pipeline.ensure_base(pipeline.base_config(cfg.work / "base", cfg, calibration=cfg.calibration),
                                            progress=cfg.progress)
    other, other_tok = pipeline.ensure_base(pipeline.base_config(cfg.work / "base-qwen2", cfg, arch="qwen2",
                                                                 tokenizer="pairs", seed=1, calibration=cfg.calibration),
                                            progress=cfg.progress)
    params = SamplingParams(max_new_tokens=task.max_response_tokens)
    train_set = task.problems("hard_train", cfg.train_problems, 0)
    heldout = task.problems("hard_heldout", cfg.heldout_problems, 0)
    sources, runs = {}, {}
    families = {"same-model": (policy_base, tok, "base"), "cross-family": (other, other_tok, "base-qwen2")}
    for name, (model, mtok, folder) in families.items():
        col = collection(cfg, cfg.work / folder, task, train_set, params, 0, cfg.work / f"xfam-{name}-collection",
                          source=name, model=model, tok=mtok)
        traces, boundary, rejected = col.traces, "token", []
        if name == "cross-family":
            save_traces(cfg.work / "qwen2-traces.parquet", col.traces)
            traces, rejected = transfer_traces(cfg.work / "qwen2-traces.parquet", task, tok, other_tok)
            boundary = "whitespace"
        prefixes = cut_prefixes(traces, task, tok, seed=0, boundary=boundary)
        sources[name] = {**col.summary(), "transferred": len(traces), "rejected": len(rejected),
                         "mean_prefix_tokens": float(np.mean([len(p.prefix_ids) for p in prefixes])) if prefixes else 0.0}
        settings = replace(RLSettings(max_new_tokens=params.max_new_tokens, eval_every=25,
                                       lr=pipeline.embedded_lr("prefixrl", cfg.rl_lr)), method="prefixrl",
                           steps=100_000, flops_budget=cfg.flops_budget)
        policy, r = pipeline.run_method(cfg.work / f"xfam-{name}", cfg.work / "base", tok, task, settings, train_set,
                                        prefixes, col.ledger.total(), traces=traces, eval_heldout=heldout[:64],
                                        progress=cfg.progress)
        eng = Sampler(policy, tok.eos_token_id, tok.pad_token_id)
        final = {s: evaluate(eng, tok, task, probs, 16, params, seed=4).pass_at(1)
                 for s, probs in (("hard_train", train_set), ("hard_heldout", heldout))}
        runs[name] = {"curve": r["curve"], "final": final, "steps": r["steps"]}
    clock.save()
    res = {"sources": sources, "runs": runs, "seconds": clock.total(),
           "config": json.loads(json.dumps(asdict(cfg), default=str)),
           "models": {"policy": f"Llama, char tokenizer, {param_count(policy_base):,} parameters",
                      "other": f"Qwen2, pairs tokenizer, {param_count(other):,} parameters"}}
    (cfg.out / "results").mkdir(parents=True, exist_ok=True)
    plot_curves({k: {"curve": v["curve"]} for k, v in runs.items()}, cfg.out / "results" / "cross_family.png",
                "PrefixRL with same-model vs cross-family prefixes",
                charged={k: v["flops"] for k, v in sources.items()})
    save(cfg.out / "cross_family.json", {"kind": "cross-family", **res})
    return res
