"""`prefixrl bench regimes`: where PrefixRL pays, along the regime knob --rare-steps and the number of
problem classes that share each missing table, --classes (docs/regimes.md).

At each setting: a base pretrained and calibrated to the same hard pass@1, then
`bench paper`'s comparison (every method at equal total FLOPs, rejection sampling charged, over seeds),
the regime gates, a transfer run, and the theory lab's predicted separation for the part of the task
the base does not know. The same runs are then read again with the traces counted as free (reused, as
the paper's title puts it). Everything in docs/regimes.md below its marker comes from this command.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from prefixrl.data.evaluate import evaluate
from prefixrl.data.verifier import deadlined
from prefixrl.embedded import calibration
from prefixrl.embedded.pretrain import holds_base
from prefixrl.io.store import write_json_atomic
from prefixrl.rl import exact as regime
from prefixrl.rl.settings import RLSettings
from prefixrl.rollout.engine import Sampler, SamplingParams
from prefixrl.rollout.model import load
from prefixrl_lab import gates as regime_gate
from prefixrl_lab import pipeline
from prefixrl_lab.bench_report import median_fell, median_problem, one_problem, versus
from prefixrl_lab.curves import final_target, flops_to_reach
from prefixrl_lab.lineup import is_baseline
from prefixrl_lab.paper import run_paper
from prefixrl_lab.theory.algos import learn
from prefixrl_lab.theory.mdp import HiddenString, base_logits

MARKER = "<!-- everything below is written by `prefixrl bench regimes`; edit above this line only -->"


def map_points(cfg) -> list[tuple[int, int]]:
    """The map's settings (rare steps K, classes): each K of --knob at each count of --class-axis, except
    K = 0, which has no classes (every problem shares one skill) and runs once, at --classes."""
    return [(k, c) for k in cfg.knob for c in ((cfg.classes,) if k == 0 else cfg.class_axis)]


def point_name(k: int, classes: int) -> str:
    return f"K={k}, classes={classes}"


def run_regimes(cfg) -> dict:
    """cfg: a resolved BenchConfig; each setting runs bench paper's comparison (`prefixrl_lab.paper`)."""
    settings = {}
    for k, c in map_points(cfg):
        name = f"rare{k}-classes{c}"
        sub = replace(cfg, rare_steps=k, classes=c, work=cfg.work / name, out=cfg.out / "regimes" / name, bands=False)
        sub = replace(sub, pretrain_steps=base_steps(sub))
        with deadlined(pipeline.base_config(sub.work / "base", sub).task()) as task:
            results = run_paper(sub, task)
            settings[point_name(k, c)] = {
                "rare_steps": k, "classes": c, "pretrain_steps": sub.pretrain_steps, "results": _slim(results),
                "gates": setting_gates(sub, task, results), "traces_free": traces_free(sub, results),
                "theory": predicted_separation(k)}
    out = {"knob": list(cfg.knob), "class_axis": list(cfg.class_axis), "settings": settings,
           "seconds": sum(s["results"]["seconds"] for s in settings.values()),
           "config": json.loads(json.dumps(vars(cfg), default=str))}
    cfg.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(cfg.out / "regimes.json", out)
    write_regimes(cfg.out / "regimes.md", out)
    return out


def base_steps(cfg) -> int:
    """Pretraining steps of one setting's base: --pretrain-steps, or twice that where a base of that length
    cannot be calibrated to the target at all (pilot 4's amendment, made a rule for every setting: at one
    class a 500-step base peaks below the target). Decided by the base's calibration alone, before any
    method runs; a base already built at either length is reused without a new attempt."""
    steps = (cfg.pretrain_steps, 2 * cfg.pretrain_steps)
    configs = [pipeline.base_config(cfg.work / "base", replace(cfg, pretrain_steps=s), calibration=cfg.calibration)
               for s in steps]
    for s, pcfg in zip(steps, configs):
        if holds_base(pcfg):
            return s
    try:
        pipeline.ensure_base(configs[0], progress=cfg.progress)
        return steps[0]
    except calibration.BaseTooWeak as e:
        print(f"bench regimes: {cfg.work.name}: {e}; pretraining {steps[1]} steps instead", file=sys.stderr)
    pipeline.ensure_base(configs[1], progress=cfg.progress)  # failing again, its one-line error stands
    return steps[1]


def _slim(results: dict) -> dict:
    """What the map needs of one setting's bench results (the full ones: regimes/rareK-classesC/results.json)."""
    keep = ("table", "ratios", "seconds", "collections", "analysis", "variants", "base_exact_spread")
    return {k: results[k] for k in keep if k in results}


def setting_gates(cfg, task, results: dict) -> dict:
    """The regime gates at one setting: 1 and 4 exactly from the base, 2 from seed 0's standard RL, 3 from a
    run of its own."""
    model, tok = load(cfg.work / "base")
    train_set = task.problems("hard_train", cfg.train_problems, 0)
    exact = regime.measure(model, tok, task, train_set, cap=cfg.collect_cap)
    params = SamplingParams(max_new_tokens=task.max_response_tokens)
    traces = pipeline.read_collection(cfg.work / "seed0" / "traces.parquet", task, tok).traces
    eng = Sampler(model, tok.eos_token_id, tok.pad_token_id)
    p80 = evaluate(eng, tok, task, [t.problem for t in traces], 8, params, seed=2,
                   prefixes=[t.token_ids[: int(0.8 * len(t.token_ids))] for t in traces]).pass_at(1) if traces else 0.0
    out = {"knowledge": regime_gate.knowledge(exact),
           "reachable": regime_gate.reachability(exact["expected_yield"], 0.25, p80)}
    if (cfg.work / "seed0" / "rl" / "metrics.jsonl").is_file():
        out["rl_starved"] = regime_gate.rl_starvation(cfg.work / "seed0" / "rl", results["collections"][0]["flops"],
                                                      len(traces))
    out["transfer"] = transfer(cfg, task, tok, train_set, params)
    return out


def transfer(cfg, task, tok, train_set, params) -> dict:
    """Gate 3: standard RL on the first half of hard-train at the bench budget; accuracy of the second half
    before and after (and of the trained half, so the share that transferred can be read)."""
    half = len(train_set) // 2
    trained, other = train_set[:half], train_set[half:]
    settings = RLSettings(method="rl", max_new_tokens=params.max_new_tokens, eval_every=25, steps=100_000,
                          flops_budget=cfg.flops_budget, lr=pipeline.embedded_lr("rl", cfg.rl_lr))
    folder = cfg.work / "transfer"

    def compute():
        policy, _ = pipeline.run_method(folder, cfg.work / "base", tok, task, settings, trained, [], 0.0,
                                        eval_heldout=other, progress=cfg.progress)
        base, _ = load(cfg.work / "base")
        acc = {}
        for name, model in (("before", base), ("after", policy)):
            eng = Sampler(model, tok.eos_token_id, tok.pad_token_id)
            for split, probs in (("trained", trained), ("other", other)):
                acc[f"{split}_{name}"] = evaluate(eng, tok, task, probs, 16, params, seed=5).pass_at(1)
        return acc

    acc = pipeline.cached(folder / "bench_record.json", pipeline.record_key(settings, 0.0, transfer=half), compute)
    out = {**acc, "before": acc["other_before"], "after": acc["other_after"], "share": _transferred(acc), "ok": True}
    if regime.supports_exact(task):
        # At pass rates near 1e-3 the sampled figures above are a few successes; exact pass@1 of each half,
        # read off the base and the run's saved final policy (one teacher-forced pass each), is not.
        policy, _ = load(folder / "final")
        base, _ = load(cfg.work / "base")
        exact = {f"{split}_{name}": float(regime.problem_pass1(model, tok, task, probs).mean())
                 for name, model in (("before", base), ("after", policy))
                 for split, probs in (("trained", trained), ("other", other))}
        out["exact"] = {**exact, "share": _transferred(exact)}
    return out


def _transferred(acc: dict) -> float | None:
    """The share of the trained half's gain that the other half also made (None: the trained half did not
    gain)."""
    gain_trained, gain_other = acc["trained_after"] - acc["trained_before"], acc["other_after"] - acc["other_before"]
    return gain_other / gain_trained if gain_trained > 0 else None


def traces_free(cfg, results: dict) -> dict:
    """The same runs read with the traces counted as free: each method's curve shifted left by what it was
    charged. PrefixRL's FLOPs to reach the strongest baseline's final accuracy ÷ that baseline's own
    on-policy FLOPs, on hard-train (sampled) and, where the task has it, exact hard-heldout pass@1
    (`exact`: at this task's pass rates the sampled figure is mostly zeros)."""
    runs = results["runs"]
    if "prefixrl" not in runs:
        return {}
    free = {m: [[{**p, "flops": p["flops"] - r["charged"]} for p in r["curve"]] for r in rs] for m, rs in runs.items()}
    baselines = [m for m in runs if is_baseline(m)]
    if not baselines:
        return {}
    table = results["table"]
    grid = np.linspace(0, max(c[-1]["flops"] for cs in free.values() for c in cs), 201)

    def ratio(split: str, key: str) -> dict:
        strongest = max(baselines, key=lambda m: table[m][f"{split}_mean"])
        target = final_target(free[strongest], split, key, table[strongest][f"{split}_mean"])
        reach = flops_to_reach(free["prefixrl"], key, target, grid) if target > 0 else None
        ends = [c[-1]["flops"] for c in free[strongest]]
        return {"strongest_baseline": strongest, "flops_ratio": None if reach is None else reach / float(np.mean(ends))}

    out = {**ratio("hard_train", "train_acc_unprefixed"),
           "onpolicy_flops": {m: float(np.mean([c[-1]["flops"] for c in cs])) for m, cs in free.items()}}
    if all("hard_heldout_exact_mean" in table[m] for m in runs):
        out["exact"] = ratio("hard_heldout_exact", "heldout_exact_pass@1")
    return out


def predicted_separation(k: int, vocab: int = 5, seeds: int = 5, budget: int = 300_000) -> dict:
    """The theory lab's hidden-string MDP (docs/theory.md) for the part of the task the base does not know:
    H = k rare steps, each guessed right with probability 1/vocab = 0.2 (2 of 10 digits), from a uniform
    base. Episodes each algorithm needs to reach success 0.5, and their ratio standard ÷ PrefixRL. The
    common steps, which the base knows, are left out: the theory has nothing to say about sharpening."""
    if k == 0:
        return {"H": 0, "standard": None, "prefixrl": None, "ratio": 1.0,
                "note": "nothing unknown: the theory predicts no separation"}
    med = {}
    for algo in ("standard", "prefixrl"):
        vals = []
        for seed in range(seeds):
            env = HiddenString.make(k, vocab, seed=seed)
            run = learn(env, base_logits(env, 1.0 / vocab), algo, iters=budget // 50, n=50, eta=1.0, seed=seed,
                        band=(0.4, 0.8) if algo == "prefixrl" else (0.0, 1.0))
            vals.append(run.samples_to(0.5))
        med[algo] = float(np.median(vals)) if all(v is not None for v in vals) else None
    ratio = med["standard"] / med["prefixrl"] if med["standard"] and med["prefixrl"] else None
    return {"H": k, "V": vocab, **med, "ratio": ratio}


def _f(x, fmt="{:.2f}") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def write_regimes(path: Path, res: dict) -> None:
    """Replace everything below MARKER in docs/regimes.md (or write the file) with the map."""
    head = path.read_text().split(MARKER)[0].rstrip() + "\n\n" if path.is_file() else "# Regimes\n\n"
    cfg = res["config"]
    lines = [MARKER, "", "## The map", "",
             f"`prefixrl bench regimes{' --quick' if cfg.get('quick') is True else ''}`: {cfg['seeds']} seed(s), "
             f"{cfg['train_problems']} hard-train problems, {float(cfg['flops_budget']):.3g} FLOPs per run "
             f"(rejection sampling charged), methods {cfg['methods']}. Wall-clock {res['seconds'] / 60:.1f} min.", ""]
    lines += _map_table(res["settings"].values())
    lines += ["", "A FLOPs ratio below 1 means PrefixRL reached the strongest baseline's final accuracy with less "
              "compute; '–' means it never did. In brackets: the range over seeds of each seed's PrefixRL ÷ the "
              "same seed's standard RL. The predicted separation is the theory lab's episodes-to-0.5 "
              "ratio, standard ÷ PrefixRL, on a hidden string of K positions (the unknown part only; the theory "
              "has no classes, so it is the same at every class count).", ""]
    lines += _method_tables(res["settings"].values())
    lines += _rests_on_lines(res["settings"].values()) + _variant_lines(res["settings"].values())
    lines += ["", "## The gates at each setting", ""]
    for s in res["settings"].values():
        steps = f" (base pretrained {s['pretrain_steps']} steps)" if s["pretrain_steps"] != cfg["pretrain_steps"] else ""
        lines += [f"### K = {s['rare_steps']}, classes = {s['classes']}{steps}", ""] + _gate_lines(s["gates"]) + [""]
    lines += ["Per-setting details (curves, pass@k, health): `regimes/rareK-classesC/results.md`.", ""]
    path.write_text(head + "\n".join(lines))


def _at(s: dict) -> str:
    """A table row's first two cells: the setting."""
    return f"| {s['rare_steps']} | {s['classes']} | "


def _seeds(ratio: dict) -> str:
    """The seed spread of a final-accuracy ratio: its range over seeds (seeds where RL ended at 0 left out)."""
    xs = [x for x in ratio.get("final_acc_ratio_vs_rl_seeds") or [] if x is not None]
    return f" ({min(xs):.2f}–{max(xs):.2f})" if len(xs) > 1 else ""


def _map_table(settings) -> list[str]:
    lines = ["| rare steps K | classes | strongest baseline | PrefixRL FLOPs to reach it ÷ its FLOPs | same, traces free "
             "| final acc PrefixRL ÷ RL | PrefixRL hard-train (± std) | strongest baseline hard-train | "
             "exact heldout: strongest baseline, PrefixRL FLOPs ÷ its FLOPs, same traces free, PrefixRL ÷ RL | "
             "predicted separation (theory) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in settings:
        r, t, free, th = s["results"]["ratios"].get("hard_train", {}), s["results"]["table"], s["traces_free"], s["theory"]
        ex = s["results"]["ratios"].get("hard_heldout_exact", {})
        best = r.get("strongest_baseline")
        p = t.get("prefixrl", {})
        fex = free.get("exact", {})
        exact = (f"{ex['strongest_baseline']}, {_f(ex.get('flops_ratio'))}, {_f(fex.get('flops_ratio'))}, "
                 f"{_f(ex.get('final_acc_ratio_vs_rl'))}{_seeds(ex)}" if ex else "–")
        lines.append(f"{_at(s)}{best or '–'} | {_f(r.get('flops_ratio'))} | {_f(free.get('flops_ratio'))} | "
                     f"{_f(r.get('final_acc_ratio_vs_rl'))}{_seeds(r)} | {_f(p.get('hard_train_mean'), '{:.3f}')} ± "
                     f"{_f(p.get('hard_train_std'), '{:.3f}')} | {_f(t[best]['hard_train_mean'] if best else None, '{:.3f}')} "
                     f"| {exact} | {_f(th.get('ratio'), '{:.1f}×')} |")
    return lines


def _method_tables(settings) -> list[str]:
    settings = list(settings)
    methods = list(settings[0]["results"]["table"])
    head = ["| K | classes | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    lines = ["## Every method, every setting (hard-train / hard-heldout pass@1, mean over seeds)", ""] + head
    for s in settings:
        t = s["results"]["table"]
        lines.append(_at(s) + " | ".join(f"{t[m]['hard_train_mean']:.3f} / {t[m]['hard_heldout_mean']:.3f}"
                                         for m in methods) + " |")
    if all("hard_heldout_exact_mean" in t for s in settings for t in s["results"]["table"].values()):
        lines += ["", "Exact hard-heldout pass@1 (teacher-forced, mean over seeds) / rare-step knowledge (0.2 = a guess):",
                  ""] + head
        for s in settings:
            t = s["results"]["table"]
            lines.append(_at(s) + " | ".join(f"{t[m]['hard_heldout_exact_mean']:.2e} / "
                                             f"{_f(t[m].get('rare_knowledge_mean'), '{:.3f}')}" for m in methods) + " |")
    return lines


def _rests_on_lines(settings) -> list[str]:
    """What each exact mean rests on, at every setting (bench_report's rule): the median heldout problem and
    the problems learned (≥ 1 %), beside the base's, so a mean lifted by one problem is not read as a gain."""
    settings = [s for s in settings if s["results"].get("base_exact_spread")
                and all(t.get("exact_spread") for t in s["results"]["table"].values())]
    if not settings:
        return []
    methods = list(settings[0]["results"]["table"])
    lines = ["", "### What each exact mean rests on", "",
             "Each cell: the median hard-heldout problem's exact pass@1 (median over seeds) / the problems made "
             "likely (exact pass@1 ≥ 1 %), per seed. A mean can rise while most problems get less likely.", "",
             "| K | classes | base model | " + " | ".join(methods) + " |", "|---|---|---|" + "---|" * len(methods)]
    notes = []
    for s in settings:
        t, base = s["results"]["table"], s["results"]["base_exact_spread"]
        lines.append(_at(s) + f"{base['median']:.1e} / {base['learned']} | " + " | ".join(
            f"{median_problem(t[m]):.1e} / {', '.join(str(x['learned']) for x in t[m]['exact_spread'])}"
            for m in methods) + " |")
        lower, one = median_fell(t, base), one_problem(t)
        if lower or one:
            notes.append(f"- K = {s['rare_steps']}, classes = {s['classes']}: median problem below half the base's: "
                         f"{', '.join(lower) or 'none'}; one problem > 50 % of the mean in some seed: "
                         f"{', '.join(f'{m} ({x:.0%})' for m, x in one.items()) or 'none'}.")
    return lines + ([""] + notes if notes else [])


def _variant_lines(settings) -> list[str]:
    """Beyond the paper: each variant against PrefixRL with the paper's fixed cuts and against the setting's
    strongest baseline, in exact heldout and sampled hard-train pass@1."""
    rows = []
    for s in settings:
        for label, splits in s["results"].get("variants", {}).items():
            cells = [versus(splits.get(split, {}).get(name)) for split in ("hard_heldout_exact", "hard_train")
                     for name in ("prefixrl", "strongest")]
            rows.append(_at(s) + f"{label} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    return ["", "## Beyond the paper: adaptive cuts and harvested traces at each setting (docs/choices.md)", "",
            "Each cell: the variant's FLOPs to reach that method's final accuracy ÷ the budget ('never': not within "
            "it), then its final accuracy ÷ that method's. Read beside the table above: a ratio of means says "
            "nothing of how many problems carry it.", "",
            "| K | classes | variant | exact heldout vs PrefixRL (fixed cuts) | exact heldout vs the strongest "
            "baseline | hard-train vs PrefixRL (fixed cuts) | hard-train vs the strongest baseline |",
            "|---|---|---|---|---|---|---|", *rows]


def _gate_lines(g: dict) -> list[str]:
    from prefixrl_lab.demo_report import regime_gate_lines

    return regime_gate_lines(g)[2:-1]
