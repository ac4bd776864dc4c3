"""`prefixrl demo`: the whole method on the embedded task, end to end, in one folder.

pretrain → base pass@k → collect (rejection sampling) → prefixes → RL with PrefixRL → standard RL and
SFT→RL (the paper's strongest baseline) given the same total FLOPs (rejection sampling included) → final
pass@1 on hard-train and hard-heldout, and the mechanism's figures (groups with signal, correct samples
seen per TFLOP) → report.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace

import torch

from prefixrl.data.evaluate import evaluate
from prefixrl.data.prefixes import cut_prefixes, save_prefixes
from prefixrl.data.verifier import deadlined
from prefixrl.embedded import calibration
from prefixrl.embedded.config import PretrainConfig
from prefixrl.io.errors import BadInput
from prefixrl.io.outputs import Output, claim
from prefixrl.io.run_state import read_log
from prefixrl.rl import exact
from prefixrl.rl.settings import RLSettings
from prefixrl.rollout.device import resolve
from prefixrl.rollout.engine import Sampler, SamplingParams
from prefixrl.rollout.model import param_count
from prefixrl_lab import gates, pipeline
from prefixrl_lab.configs import DemoConfig
from prefixrl_lab.curves import plot_curves
from prefixrl_lab.reports import save
from prefixrl_lab.stopwatch import Stopwatch


def _pass_at_ks(result, ks):
    return {str(k): result.pass_at(k) for k in ks if k <= result.n}


def run_demo(cfg: DemoConfig) -> dict:
    cfg = cfg.resolved()
    with claim("demo", [Output(cfg.out, kind="folder", existing="owned")], {}), \
            deadlined(pretrain_config(cfg).task()) as task:
        return _run_demo(cfg, task)


def pretrain_config(cfg: DemoConfig) -> PretrainConfig:
    return pipeline.base_config(cfg.out / "base", cfg, seed=cfg.seed, target_pass1=cfg.target_pass1)


def _run_demo(cfg: DemoConfig, task) -> dict:
    clock = Stopwatch()
    torch.manual_seed(cfg.seed)
    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    pcfg = pretrain_config(cfg)

    # 1. the base model, calibrated (reused when the same configuration was pretrained before here)
    with clock.stage("pretrain and calibrate (or reuse) the base"):
        model, tok = pipeline.ensure_base(pcfg, progress=cfg.progress, device=resolve(cfg.device))
    engine = Sampler(model, tok.eos_token_id, tok.pad_token_id)
    params = SamplingParams(max_new_tokens=task.max_response_tokens)
    splits = {s: task.problems(s, n, cfg.seed) for s, n in
              [("easy", cfg.heldout_problems), ("hard_train", cfg.train_problems), ("hard_heldout", cfg.heldout_problems)]}

    # 2. the regime, measured exactly, and its gates, before anything is sampled
    with clock.stage("regime, measured exactly"):
        measured = {s: exact.measure(model, tok, task, probs, cap=cfg.collect_cap if s == "hard_train" else None)
                 for s, probs in splits.items()}
    sampling = calibration.sampling_gates(measured["hard_train"], pcfg.target(), cfg.min_yield)
    calibration.check_sampling_gates(sampling, str(out / "base"))

    # 3. base pass@k on unprefixed problems, sampled
    with clock.stage("base pass@k, sampled"):
        base = {**_base_pass_at_k(cfg, engine, tok, task, splits, params), "exact": measured,
                "calibration": json.loads((out / "base" / "prefixrl.json").read_text())["calibration"]}

    # 4. rejection sampling with the base model
    with clock.stage("rejection sampling"):
        col = pipeline.collect_traces(out / "traces.parquet", out / "base", task, splits["hard_train"], params,
                                      cfg.collect_cap, cfg.seed, cfg.progress, model=model, tok=tok)
    (out / "traces.json").write_text(json.dumps(col.summary(), indent=2))
    if not col.traces:
        raise BadInput(f"rejection sampling found no correct trace in {cfg.collect_cap} samples per problem; "
                       "raise --collect-cap, or lower --rare-steps or --hard-steps")
    rs_flops = col.ledger.total()

    # 5. prefixes (paper rule: 3 cuts per trace at U[0.4, 0.8] of its tokens)
    with clock.stage("prefixes"):
        prefixes = cut_prefixes(col.traces, task, tok, seed=cfg.seed)
        save_prefixes(out / "prefixes.parquet", prefixes, tok, task)
    with clock.stage("prefix success, sampled"):
        prefix_success = _prefix_success(cfg, engine, tok, task, col.traces, params)

    # 6. PrefixRL, then standard RL with the same total FLOPs
    rl = RLSettings(steps=cfg.rl_steps, seed=cfg.seed, max_new_tokens=params.max_new_tokens)
    methods = _methods(cfg, rl, tok, task, splits, prefixes, col.traces, rs_flops, params, clock)

    # 7. report
    checked = _run_gates(cfg, sampling, measured, col, prefix_success, rs_flops)
    report = {
        "seed": cfg.seed,
        "config": {**json.loads(json.dumps(asdict(cfg), default=str)), "task": task.name,
                   "task_config": {"hard_steps": task.hard_steps, "easy_steps": [task.easy_min_steps, task.easy_max_steps],
                                   "ops": task.ops, "rare_steps": task.rare_steps, "classes": task.classes,
                                   "teacher_accuracy": pcfg.accuracy()},
                   "rl": asdict(rl)},
        "model": {"n_params": param_count(model), "path": str(out / "base")},
        "base": base,
        "prefix_success": prefix_success,
        "collection": col.summary(),
        "methods": methods,
        "gates": checked,
    }
    report["compute_efficiency"] = compute_efficiency(methods)
    report["verdict"] = verdict(methods, {"hard_train": cfg.train_problems * cfg.final_samples,
                                          "hard_heldout": cfg.heldout_problems * cfg.final_samples})
    with clock.stage("report and plot"):
        plot_curves(methods, out / "curve.png", "PrefixRL vs standard RL and SFT→RL at equal FLOPs",
                    charged={"prefixrl": rs_flops, "sft-rl": rs_flops})
    # stage table: docs/performance.md's demo figures come from it
    report["seconds"], report["stage_seconds"] = clock.total(), dict(clock.seconds)
    save(out / "report.json", {"kind": "demo", **report})
    return report


def _run_gates(cfg: DemoConfig, sampling: dict, measured: dict, col, prefix_success: dict, rs_flops: float) -> dict:
    """The regime checks read after the runs (docs/regimes.md), from standard RL's log and the collection."""
    out = cfg.out
    rl_steps = [r for r in read_log(out / "runs" / "rl") if r["kind"] == "step"][:100]
    return {"regime": sampling, "rl_steps_checked": len(rl_steps),
            "rl_steps_with_signal": sum(r["zero_adv_groups"] < 1.0 for r in rl_steps),
            "collect_solved_share": col.summary()["solved"] / max(1, col.summary()["problems"]),
            "prefix80_success": prefix_success["80%"],
            "knowledge": gates.knowledge(measured["hard_train"]),
            "rl_starved": gates.rl_starvation(out / "runs" / "rl", rs_flops, len(col.traces)),
            "reachable": gates.reachability(measured["hard_train"]["expected_yield"], cfg.min_yield,
                                                  prefix_success["80%"])}


def _base_pass_at_k(cfg: DemoConfig, engine, tok, task, splits: dict, params) -> dict:
    """The base's sampled pass@k on unprefixed problems, per split."""
    base = {"pass@1": {}, "pass@k": {}}
    for split, probs in splits.items():
        r = evaluate(engine, tok, task, probs, cfg.base_samples, params, seed=cfg.seed + 1, progress=cfg.progress,
                     desc=f"base pass@k {split}")
        base["pass@1"][split] = r.pass_at(1)
        for k, v in _pass_at_ks(r, [1, 8, 64]).items():
            base["pass@k"].setdefault(k, {})[split] = v
    return base


def _prefix_success(cfg: DemoConfig, engine, tok, task, traces, params) -> dict:
    """Success conditioned on the first 20/40/60/80 % of a correct trace (the shape of the paper's Fig. 3)."""
    traced, out = [t.problem for t in traces], {}
    for f in (0.2, 0.4, 0.6, 0.8):
        pre = [t.token_ids[: int(f * len(t.token_ids))] for t in traces]
        r = evaluate(engine, tok, task, traced, cfg.base_samples // 2 or 1, params, seed=cfg.seed + 2, prefixes=pre)
        out[f"{int(f * 100)}%"] = r.pass_at(1)
    return out


def _methods(cfg: DemoConfig, rl: RLSettings, tok, task, splits: dict, prefixes, traces, rs_flops: float, params,
             clock: Stopwatch) -> dict:
    """PrefixRL (charged the rejection sampling), then standard RL and SFT→RL (charged it too: SFT trains on
    the traces) until each has spent the same total FLOPs."""
    out, methods, runs = cfg.out, {}, {}
    for name in ("prefixrl", "rl", "sft-rl"):
        charged = 0.0 if name == "rl" else rs_flops
        if name == "prefixrl":
            settings = replace(rl, method="prefixrl", lr=pipeline.embedded_lr("prefixrl", cfg.rl_lr))
        else:
            budget = runs["prefixrl"]["curve"][-1]["flops"]
            # ~25 curve points whatever the number of steps the budget buys (sampling dominates a step)
            led = runs["prefixrl"]["ledger"]
            per_step = (led.get("rl/prefill", 0) + led.get("rl/decode", 0)) / max(1, runs["prefixrl"]["steps"])
            every = max(rl.eval_every, int(budget / max(per_step, 1.0) / 25))
            settings = replace(rl, method=name, steps=cfg.rl_steps * 50, flops_budget=budget, eval_every=every,
                               lr=pipeline.embedded_lr(name, cfg.rl_lr))
        with clock.stage(f"train {name} (its evaluations during training included)"):
            policy, runs[name] = pipeline.run_method(out / "runs" / name, out / "base", tok, task, settings,
                                                     splits["hard_train"], prefixes, charged, traces=traces,
                                                     progress=cfg.progress, device=resolve(cfg.device))
        eng = Sampler(policy, tok.eos_token_id, tok.pad_token_id)
        with clock.stage("final evaluations"):
            final = {f"{s}_pass@1": evaluate(eng, tok, task, splits[s], cfg.final_samples, params,
                                             seed=cfg.seed + 3, progress=cfg.progress,
                                             desc=f"final {name} {s}").pass_at(1)
                     for s in ("hard_train", "hard_heldout")}
            if exact.supports_exact(task):  # noise-free where sampled pass@1 is a handful of samples
                final["hard_heldout_exact_pass@1"] = exact.measure(policy, tok, task,
                                                                    splits["hard_heldout"])["exact_pass@1"]
                final["rare_knowledge"] = exact.rare_knowledge(policy, tok, task, splits["hard_heldout"])
        steps = [r for r in read_log(out / "runs" / name) if r["kind"] == "step"]
        flops = runs[name]["curve"][-1]["flops"]
        methods[name] = {"curve": runs[name]["curve"], "final": final, "flops_total": flops,
                         "steps": runs[name]["steps"], "charged": charged,
                         "mechanism": pipeline.mechanism(steps, settings, flops - charged)}
    return methods


def compute_efficiency(methods: dict) -> dict:
    """The paper's two headline ratios against each baseline the demo runs (here: standard RL).

    flops_ratio_vs_<b>: FLOPs PrefixRL needs to reach b's final hard-train accuracy ÷ b's total FLOPs
    (None: never reached). final_acc_ratio_vs_rl: PrefixRL's final hard-train pass@1 ÷ standard RL's.
    """
    import numpy as np

    from prefixrl_lab.curves import flops_to_reach

    p = methods["prefixrl"]
    out = {}
    for name, m in methods.items():
        if name == "prefixrl":
            continue
        target = m["curve"][-1]["train_acc_unprefixed"]
        if target <= 0:  # nothing to reach: any curve "reaches" 0 at its first point
            out[f"flops_ratio_vs_{name}"] = None
            continue
        grid = np.linspace(0, max(p["flops_total"], m["flops_total"]), 401)
        reach = flops_to_reach([p["curve"]], "train_acc_unprefixed", target, grid)
        out[f"flops_ratio_vs_{name}"] = None if reach is None else reach / m["flops_total"]
    rl_final = methods["rl"]["final"]["hard_train_pass@1"]  # the paper's 3×: against standard RL
    out["final_acc_ratio_vs_rl"] = p["final"]["hard_train_pass@1"] / rl_final if rl_final > 0 else None
    return out


def verdict(methods: dict, samples: dict[str, int]) -> str:
    """Plain words for the final comparison with each baseline. A gap under two standard errors (binomial,
    over all final samples; it ignores that samples of one problem are correlated, so it is optimistic) is
    called a tie."""
    p, sentences = methods["prefixrl"]["final"], []
    for name, label in (("rl", "standard RL"), ("sft-rl", "SFT→RL")):
        if name not in methods:
            continue
        r, parts = methods[name]["final"], []
        for split, where in (("hard_train", "hard-train"), ("hard_heldout", "hard-heldout")):
            a, b, n = p[f"{split}_pass@1"], r[f"{split}_pass@1"], samples[split]
            se = math.sqrt((a * (1 - a) + b * (1 - b)) / max(1, n))
            word = "level with" if a == b else "within noise of" if abs(a - b) < 2 * se else ("above" if a > b else "BELOW")
            parts.append(f"on {where}, PrefixRL ends {word} {label} ({a:.4f} vs {b:.4f}, ±{2 * se:.4f} at 2 SE)")
        sentences.append("; ".join(parts))
    sentences = [x[0].upper() + x[1:] for x in sentences]
    return "At equal total FLOPs (rejection sampling charged to PrefixRL and SFT→RL). " + ". ".join(sentences) + "."
