"""`prefixrl bench paper`: every method under one total FLOP budget, over seeds → docs/results.md.

One base model (pretrained once); per seed: rejection sampling, prefixes, and one run of each method
until it has spent the budget (rejection sampling charged to the methods that use the traces). Then
heldout pass@k, the headline ratios, training-health curves and the back-generalization bands.
Numbers in results.md come only from this command.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from prefixrl.data.collect import Collection
from prefixrl.data.evaluate import evaluate
from prefixrl.data.prefixes import cut_prefixes
from prefixrl.embedded.pretrain import INERT
from prefixrl.io.run_state import read_log
from prefixrl.rl import exact
from prefixrl.rl.settings import RLSettings
from prefixrl.rollout.engine import Sampler, SamplingParams
from prefixrl.rollout.model import load, param_count
from prefixrl_lab import pipeline
from prefixrl_lab.configs import BenchConfig
from prefixrl_lab.curves import bench_plots, final_target, flops_to_reach
from prefixrl_lab.lineup import RUNS, VARIANTS, is_baseline
from prefixrl_lab.reports import save
from prefixrl_lab.stopwatch import WallClock

BANDS = ((0.0, 0.4), (0.4, 0.8), (0.8, 1.0))
DEFAULT_BAND = (0.4, 0.8)  # cut_prefixes' default: the prefixrl-only run already is this band


def bench_key(cfg: BenchConfig) -> dict:
    """What a finished run's result depends on besides its own settings (for reuse across restarts)."""
    return {"version": version("prefixrl"), "record": 2, "train_problems": cfg.train_problems, "heldout_problems": cfg.heldout_problems,
            "passk_samples": cfg.passk_samples, "hard_steps": cfg.hard_steps, "collect_cap": cfg.collect_cap,
            "teacher_accuracy": cfg.teacher_accuracy, "pretrain_steps": cfg.pretrain_steps, "rare_steps": cfg.rare_steps,
            "classes": cfg.classes, "rl_lr": cfg.rl_lr,
            # the reuse switch's settings, only where set: runs cached before it existed keep their keys
            **{k: getattr(cfg, k) for k, v in INERT.items() if getattr(cfg, k) != v}}


def collection(cfg: BenchConfig, model_dir: Path, task, problems, params, seed: int, folder: Path,
                source: str | None = None, model=None, tok=None) -> Collection:
    """Rejection sampling with the model in `model_dir`, reused from `folder` when it ran with the same key."""
    return pipeline.collect_traces(folder / "traces.parquet", model_dir, task, problems, params, cfg.collect_cap, seed,
                                   cfg.progress, model=model, tok=tok, source=source)


def run_paper(cfg: BenchConfig, task) -> dict:
    unknown = [m for m in cfg.methods if m not in RUNS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    clock = WallClock(cfg.work)
    pcfg = pipeline.base_config(cfg.work / "base", cfg, calibration=cfg.calibration)
    base, tok = pipeline.ensure_base(pcfg, progress=cfg.progress)
    params = SamplingParams(max_new_tokens=task.max_response_tokens)
    rl = RLSettings(max_new_tokens=params.max_new_tokens, eval_every=25)
    train_set = task.problems("hard_train", cfg.train_problems, 0)
    heldout = task.problems("hard_heldout", cfg.heldout_problems, 0)
    runs: dict[str, list[dict]] = {m: [] for m in cfg.methods}
    collections, band_runs = [], {}
    for seed in range(cfg.seeds):
        col = collection(cfg, cfg.work / "base", task, train_set, params, seed, cfg.work / f"seed{seed}", model=base,
                          tok=tok)
        collections.append(col.summary())
        prefixes = cut_prefixes(col.traces, task, tok, seed=seed)
        for label in cfg.methods:
            method, over = RUNS[label]
            settings = replace(rl, method=method, seed=seed, steps=100_000, flops_budget=cfg.flops_budget,
                               lr=pipeline.embedded_lr(method, cfg.rl_lr), **over)
            charged = col.ledger.total() if method != "rl" else 0.0

            def one_run(label=label, settings=settings, charged=charged, seed=seed, prefixes=prefixes, col=col):
                out = cfg.work / f"seed{seed}" / label
                policy, r = pipeline.run_method(out, cfg.work / "base", tok, task, settings, train_set, prefixes, charged,
                                                traces=col.traces, eval_heldout=heldout[:64], progress=cfg.progress)
                eng = Sampler(policy, tok.eos_token_id, tok.pad_token_id)
                final_train = evaluate(eng, tok, task, train_set, 16, params, seed=seed + 3)
                final_held = evaluate(eng, tok, task, heldout, cfg.passk_samples, params, seed=seed + 4,
                                      progress=cfg.progress, desc=f"pass@k {label}")
                ks = [2**i for i in range(int(math.log2(cfg.passk_samples)) + 1)]
                steps = read_log(out)
                final = {"hard_train": final_train.pass_at(1), "hard_heldout": final_held.pass_at(1)}
                if exact.supports_exact(task):  # noise-free where sampled pass@1 is a handful of samples
                    final["hard_heldout_exact"] = exact.measure(policy, tok, task, heldout)["exact_pass@1"]
                    final["rare_knowledge"] = exact.rare_knowledge(policy, tok, task, heldout)
                return {"seed": seed, "curve": r["curve"], "steps": [s for s in steps if s["kind"] == "step"],
                        "final": final,
                        "passk_heldout": {str(k): final_held.pass_at(k) for k in ks}, "charged": charged,
                        "strategy": strategy_change(task, train_set, final_train, col.traces), "sft": r.get("sft"),
                        "harvested": r.get("harvested"), "recollected": r.get("recollected")}

            key = pipeline.record_key(settings, charged, bench=bench_key(cfg))
            record = pipeline.cached(cfg.work / f"seed{seed}" / label / "bench_record.json", key, one_run)
            if exact.supports_exact(task):  # read off the saved final policy: one teacher-forced pass
                record = {**record, "exact_spread": heldout_spread(cfg.work / f"seed{seed}" / label / "final", task,
                                                                   heldout)}
            runs[label].append(record)
            clock.save()
        if cfg.bands and seed == 0:
            band_runs = run_bands(cfg, rl, col, task, tok, train_set, heldout, runs, clock)
    results = summarise(runs, cfg)
    results["analysis"] = analyse(runs, collections)
    if exact.supports_exact(task):
        results["base_exact_spread"] = exact.spread(exact.problem_pass1(base, tok, task, heldout))
    results["runs"] = {m: [{"seed": r["seed"], "charged": r["charged"], "curve": r["curve"]} for r in rs]
                       for m, rs in runs.items()}
    results.update({"config": json.loads(json.dumps(asdict(cfg), default=str)), "collections": collections,
                    "bands": band_runs, "n_params": param_count(base), "seconds": clock.total(),
                    "torch_threads": torch.get_num_threads(),
                    "rl_lr": {m: pipeline.embedded_lr(RUNS[m][0], cfg.rl_lr) for m in cfg.methods}})
    cfg.out.mkdir(parents=True, exist_ok=True)
    bench_plots(runs, band_runs, cfg.out / "results")
    save(cfg.out / "results.json", {"kind": "paper", **results})
    clock.save()
    return results


def run_bands(cfg: BenchConfig, rl: RLSettings, col: Collection, task, tok, train_set, heldout, runs: dict,
              clock: WallClock) -> dict:
    """Back-generalization by prefix band (the paper's prefix-length-band ablation): prefixrl-only on seed
    0's traces cut within each band; each band's curve."""
    band_runs = {}
    for lo, hi in BANDS:
        name = f"{int(lo * 100)}–{int(hi * 100)} %"
        if (lo, hi) == DEFAULT_BAND and "prefixrl-only" in runs:  # the same run as prefixrl-only, seed 0
            band_runs[name] = runs["prefixrl-only"][0]["curve"]
            continue
        settings = replace(rl, method="prefixrl-only", seed=0, steps=100_000, flops_budget=cfg.flops_budget)

        def band_run(lo=lo, hi=hi, settings=settings):
            band = cut_prefixes(col.traces, task, tok, low=lo, high=hi, seed=0)
            _, r = pipeline.run_method(cfg.work / f"band{lo}-{hi}", cfg.work / "base", tok, task, settings,
                                       train_set, band, col.ledger.total(), traces=col.traces,
                                       eval_heldout=heldout[:64], progress=cfg.progress)
            return r["curve"]

        key = pipeline.record_key(settings, col.ledger.total(), band=[lo, hi], bench=bench_key(cfg))
        band_runs[name] = pipeline.cached(cfg.work / f"band{lo}-{hi}" / "bench_record.json", key, band_run)
        clock.save()
    return band_runs


def summarise(runs: dict[str, list[dict]], cfg: BenchConfig) -> dict:
    grid = np.linspace(0, cfg.flops_budget, 201)
    table = {}
    for label, rs in runs.items():
        fin = {s: [r["final"][s] for r in rs] for s in FINALS if all(r["final"].get(s) is not None for r in rs)}
        table[label] = {
            **{f"{s}_mean": float(np.mean(v)) for s, v in fin.items()},
            **{f"{s}_std": float(np.std(v)) for s, v in fin.items()},
            "passk_heldout": {k: float(np.mean([r["passk_heldout"][k] for r in rs])) for k in rs[0]["passk_heldout"]},
            "steps": [len(r["steps"]) for r in rs],
            "zero_adv_share": float(np.mean([s["zero_adv_groups"] for r in rs for s in r["steps"]])),
            "grad_norm_mean": float(np.mean([s["grad_norm"] for r in rs for s in r["steps"] if s["trained_rows"]] or [0])),
            "grad_norm_std": float(np.std([s["grad_norm"] for r in rs for s in r["steps"] if s["trained_rows"]] or [0])),
            "entropy_last": float(np.mean([r["steps"][-1]["entropy"] for r in rs if r["steps"]] or [float("nan")])),
            "strategy_differ_share": _mean_of([(r.get("strategy") or {}).get("differ_share") for r in rs]),
            "strategy_solves": sum((r.get("strategy") or {}).get("solves") or 0 for r in rs),
            "sft": [{k: r["sft"][k] for k in ("lr", "epochs", "entropy_before", "entropy_after")} for r in rs
                    if r.get("sft")],
            "harvested": [r["harvested"] for r in rs if r.get("harvested") is not None],
            "recollected": [r["recollected"] for r in rs if r.get("recollected") is not None],
            "exact_spread": [r["exact_spread"] for r in rs if r.get("exact_spread")],
        }
    ratios = {}
    if "prefixrl" in runs:
        baselines = [m for m in runs if is_baseline(m)]
        for split, key in (("hard_train", "train_acc_unprefixed"), ("hard_heldout", "heldout_acc_unprefixed"),
                           ("hard_heldout_exact", "heldout_exact_pass@1")):
            if f"{split}_mean" not in table["prefixrl"]:
                continue
            strongest = max(baselines, key=lambda m: table[m][f"{split}_mean"]) if baselines else None
            entry = {}
            if strongest:
                target = final_target([r["curve"] for r in runs[strongest]], split, key, table[strongest][f"{split}_mean"])
                reach = flops_to_reach([r["curve"] for r in runs["prefixrl"]], key, target, grid) if target > 0 else None
                entry.update({"strongest_baseline": strongest, "target": target,
                              "flops_ratio": None if reach is None else reach / cfg.flops_budget})
            if "rl" in runs and table["rl"][f"{split}_mean"] > 0:
                entry["final_acc_ratio_vs_rl"] = table["prefixrl"][f"{split}_mean"] / table["rl"][f"{split}_mean"]
                # the seed spread: each seed's PrefixRL ÷ the same seed's standard RL (None where RL ended at 0)
                entry["final_acc_ratio_vs_rl_seeds"] = [
                    p["final"][split] / r["final"][split] if r["final"][split] else None
                    for p, r in zip(runs["prefixrl"], runs["rl"])]
            else:
                entry["final_acc_ratio_vs_rl"] = None
            ratios[split] = entry
    return {"table": table, "ratios": ratios, "variants": variant_ratios(runs, table, ratios, cfg.flops_budget, grid)}


def variant_ratios(runs: dict, table: dict, ratios: dict, budget: float, grid) -> dict:
    """Each variant beyond the paper against PrefixRL with the paper's fixed cuts and against the strongest
    baseline: the FLOPs it needs to reach their final accuracy ÷ the budget (None: never), and its final
    accuracy ÷ theirs, on hard-train (sampled) and hard-heldout (exact, where the task has it)."""
    out = {}
    for label in (m for m in runs if m in VARIANTS):
        out[label] = {}
        for split, key in (("hard_train", "train_acc_unprefixed"), ("hard_heldout_exact", "heldout_exact_pass@1")):
            if f"{split}_mean" not in table[label]:
                continue
            entry = {}
            for name, other in (("prefixrl", "prefixrl"), ("strongest", ratios.get(split, {}).get("strongest_baseline"))):
                if other not in runs:
                    continue
                target = final_target([r["curve"] for r in runs[other]], split, key, table[other][f"{split}_mean"])
                reach = flops_to_reach([r["curve"] for r in runs[label]], key, target, grid) if target > 0 else None
                mine = table[label][f"{split}_mean"]
                entry[name] = {"method": other, "flops_ratio": None if reach is None else reach / budget,
                               "final_ratio": mine / table[other][f"{split}_mean"] if table[other][f"{split}_mean"] else None}
            out[label][split] = entry
    return out


def heldout_spread(folder: Path, task, heldout) -> dict:
    """`exact.spread` of the policy saved in `folder` on the hard-heldout problems: where its exact pass@1
    comes from (the median problem, the problems learned, the largest problem's share)."""
    policy, tok = load(folder)
    return exact.spread(exact.problem_pass1(policy, tok, task, heldout))


FINALS = ("hard_train", "hard_heldout", "hard_heldout_exact", "rare_knowledge")  # the last two: exact tasks only


def _mean_of(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def strategy_change(task, problems, result, traces) -> dict | None:
    """Paper §4 (Fig. 5: learned strategies often differ from the prefix's): of the final policy's solves of
    unprefixed problems that have a trace, the share whose witness (`task.witness`: the table chosen at each
    rare step) differs from the trace's. None for tasks that cannot name a solve's path."""
    if not callable(getattr(task, "witness", None)):
        return None
    trace_of = {t.problem_id: t.response for t in traces}
    same = differ = 0
    for p, solves in zip(problems, result.solves):
        if p.id not in trace_of:
            continue
        path = task.witness(p, trace_of[p.id])
        for s in solves:
            same, differ = (same + 1, differ) if task.witness(p, s) == path else (same, differ + 1)
    return {"solves": same + differ, "differ_share": differ / (same + differ) if same + differ else None}


def _acc_at(curve: list[dict], key: str, flops: float) -> float:
    """A method's accuracy at `flops`: its last evaluation at or before it (0 before its first)."""
    past = [p[key] for p in curve if p["flops"] <= flops]
    return past[-1] if past else 0.0


def analyse(runs: dict[str, list[dict]], collections: list[dict]) -> dict:
    """Why the ranking comes out as it does: when standard RL escapes the zero-signal regime, measured
    against the cost of rejection sampling, and how PrefixRL compares if the traces were free (reused
    from earlier work, as the paper's title puts it) rather than charged."""
    out: dict = {"rs_flops": [c["flops"] for c in collections]}
    if "rl" in runs:
        out["rl_steps_with_signal_first100"] = [sum(s["zero_adv_groups"] < 1 for s in r["steps"][:100]) for r in runs["rl"]]
        out["rl_flops_to_0.1"] = [next((p["flops"] for p in r["curve"] if p["train_acc_unprefixed"] >= 0.1), None)
                                  for r in runs["rl"]]
        out["rl_first_success_flops"] = [next((s["flops"] for s in r["steps"] if (s["reward_unprefixed"] or 0) > 0), None)
                                         for r in runs["rl"]]
    if "prefixrl" in runs:
        out["prefixrl_flops_to_0.1_after_rs"] = [
            next((p["flops"] - r["charged"] for p in r["curve"] if p["train_acc_unprefixed"] >= 0.1), None)
            for r in runs["prefixrl"]]
    if "prefixrl" in runs and "rl" in runs:
        free = []
        for p, r in zip(runs["prefixrl"], runs["rl"]):
            x = p["curve"][-1]["flops"] - p["charged"]  # PrefixRL's own on-policy FLOPs
            entry = {"on_policy_flops": x, "prefixrl": p["curve"][-1]["train_acc_unprefixed"],
                     "rl_at_same_flops": _acc_at(r["curve"], "train_acc_unprefixed", x)}
            if "heldout_exact_pass@1" in p["curve"][-1]:  # noise-free, where the task lists its correct responses
                entry.update({"prefixrl_exact": p["curve"][-1]["heldout_exact_pass@1"],
                              "rl_exact_at_same_flops": _acc_at(r["curve"], "heldout_exact_pass@1", x)})
            free.append(entry)
        out["traces_free"] = free
    return out
