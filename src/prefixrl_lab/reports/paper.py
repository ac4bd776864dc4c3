"""docs/results.md from results.json (`prefixrl bench paper`), and the analyses of per-problem exact pass@1
that the regime map's page shares."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _variant_lines(res: dict) -> list[str]:
    """Beyond the paper: each variant against PrefixRL with fixed cuts and against the strongest baseline."""
    rows = []
    for label, splits in res.get("variants", {}).items():
        t = res["table"][label]
        for split, entry in splits.items():
            cells = [versus(entry.get(name)) for name in ("prefixrl", "strongest")]
            harvested = ", ".join(str(h) for h in t.get("harvested") or []) or "–"
            recollected = ", ".join(str(h) for h in t.get("recollected") or []) or "–"
            rows.append(f"| {label} | {split} | {cells[0]} | {cells[1]} | {harvested} | {recollected} |")
    if not rows:
        return []
    return ["## Beyond the paper: adaptive cuts, harvested and re-collected traces (docs/choices.md)", "",
            "Each cell: the variant's FLOPs to reach that method's final accuracy ÷ the budget ('never': not within "
            "it), then its final accuracy ÷ that method's.", "",
            "| variant | split | vs PrefixRL (fixed cuts) | vs the strongest baseline | traces harvested per seed "
            "| traces re-collected per seed |",
            "|---|---|---|---|---|---|", *rows, "", "![cuts](results/prefix_cuts.png)", ""]


def _exact_lines(res: dict) -> list[str]:
    """The exact hard-heldout table (tasks that list their correct responses), with what each mean rests on."""
    table = res["table"]
    if not all("hard_heldout_exact_mean" in t for t in table.values()):
        return []
    lines = ["", "Measured exactly (teacher forcing over every correct response, no sampling noise; "
             "`prefixrl.rl.exact`), on the same hard-heldout problems:", "",
             "| method | exact hard-heldout pass@1 (mean ± std) | rare-step knowledge (0.2 = a guess) | "
             "median problem, per seed | problems learned (≥ 1 %), per seed | largest problem's share of the "
             "mean, per seed |", "|---|---|---|---|---|---|"]
    if res.get("base_exact_spread"):
        b = res["base_exact_spread"]
        lines.append(f"| base model (no RL) | {b['mean']:.2e} | – | {b['median']:.1e} | {b['learned']} | "
                     f"{_share(b['top_share'])} |")
    for m, t in table.items():
        rare = t.get("rare_knowledge_mean")
        sp = t.get("exact_spread") or []
        cells = (", ".join(f"{x['median']:.1e}" for x in sp) or "–", ", ".join(str(x["learned"]) for x in sp) or "–",
                 ", ".join(_share(x["top_share"]) for x in sp) or "–")
        lines.append(f"| {m} | {t['hard_heldout_exact_mean']:.2e} ± {t['hard_heldout_exact_std']:.1e} | "
                     f"{'–' if rare is None else f'{rare:.3f}'} | {' | '.join(cells)} |")
    return lines + _spread_lines(res)


def _share(x: float | None) -> str:
    return "–" if x is None else f"{x:.0%}"


def _spread_lines(res: dict) -> list[str]:
    """What the exact means rest on (regime.spread): a mean over problems can rise while most problems get
    less likely, so the ranking by mean is read beside the median problem and the problems learned."""
    base, table = res.get("base_exact_spread"), res["table"]
    if not base or not all(t.get("exact_spread") for t in table.values()):
        return []
    lower, one = median_fell(table, base), one_problem(table)
    out = ["", f"The mean over {res['config']['heldout_problems']} problems can hide how a policy got there. The "
           f"base puts {base['median']:.1e} on its median problem and has {base['learned']} problems at ≥ 1 %."]
    if lower:
        out[-1] += (" The median problem (median over seeds) fell below half the base's under " + ", ".join(
            f"{m} ({x:.1e})" for m, x in lower.items()) + ": those policies made a few problems likely and most less "
            "likely.")
    if one:
        out[-1] += (" In at least one seed a single problem carries more than half of the mean for " + ", ".join(
            f"{m} ({x:.0%})" for m, x in one.items()) + ", so their mean rests on that problem.")
    return out


def median_problem(t: dict) -> float:
    """A method's median heldout problem's exact pass@1, median over its seeds."""
    return float(np.median([x["median"] for x in t["exact_spread"]]))


def median_fell(table: dict, base: dict) -> dict[str, float]:
    """The methods whose median problem fell below half the base's (a factor 2, so that rounding never
    decides), with that median."""
    medians = {m: median_problem(t) for m, t in table.items()}
    return {m: x for m, x in medians.items() if x < base["median"] / 2}


def one_problem(table: dict) -> dict[str, float]:
    """The methods where, in at least one seed, one problem carries more than half of the exact mean, with
    the largest such share."""
    carried = {m: max(x["top_share"] or 0 for x in t["exact_spread"]) for m, t in table.items()}
    return {m: x for m, x in carried.items() if x > 0.5}


def versus(e: dict | None) -> str:
    """A variant against one method: its FLOPs to reach that method's final accuracy ÷ the budget, then its
    final accuracy ÷ that method's."""
    if e is None:
        return "–"
    reach = "never" if e["flops_ratio"] is None else f"{e['flops_ratio']:.2f}"
    final = "–" if e["final_ratio"] is None else f"{e['final_ratio']:.2f}"
    return f"{e['method']}: {reach}, {final}"


def _setting(cfg: dict) -> str:
    """The regime knob's setting a bench ran at, as its flags."""
    k = cfg.get("rare_steps", 0)
    return f"`--rare-steps {k}`" + (f" `--classes {cfg['classes']}`" if k else ", the shared-skill end")


def _headline(table: dict) -> tuple[str, str]:
    """The final figure methods are ranked by in the prose: exact hard-heldout pass@1 where every run has it
    (noise-free; at this task's pass rates a sampled figure is a handful of samples), else sampled hard-train."""
    if all("hard_heldout_exact_mean" in t for t in table.values()):
        return "hard_heldout_exact_mean", "exact hard-heldout pass@1"
    return "hard_train_mean", "hard-train pass@1"


def _span(xs: list, fmt=str) -> str:
    """A range over seeds, or the one value when they agree."""
    lo, hi = fmt(min(xs)), fmt(max(xs))
    return lo if lo == hi else f"{lo}–{hi}"


def _num(x: float) -> str:
    return f"{x:.3g}" if x >= 0.01 or x == 0 else f"{x:.2e}"


def write(folder: Path, res: dict) -> None:
    write_results(folder / "results.md", res)


def write_results(path: Path, res: dict) -> None:
    cfg, table, ratios = res["config"], res["table"], res["ratios"]
    quick = " --quick" if cfg["quick"] else ""
    lines = [
        "# Results: the paper's comparisons on the embedded task", "",
        f"Generated by `prefixrl bench paper{quick}` in {res['seconds'] / 60:.0f} minutes of wall-clock on this machine "
        f"({res['torch_threads']} torch thread{'s' if res['torch_threads'] != 1 else ''}); every number below comes from that command "
        "(raw numbers: results.json).", "",
        f"Setup: the chain task at {_setting(cfg)} (docs/regimes.md); "
        f"{cfg['seeds']} seeds; {cfg['train_problems']} hard-train and {cfg['heldout_problems']} hard-heldout "
        f"problems; one base model ({res['n_params']:,} parameters); every run stops at "
        f"{cfg['flops_budget'] / 1e12:.1f} TFLOP, rejection sampling included for the methods that use traces.", "",
        "Rejection sampling per seed: " + "; ".join(
            f"{c['solved']}/{c['problems']} solved, {c['samples']:,} samples, {c['flops'] / 1e12:.2f} TFLOP"
            for c in res["collections"]) + ".", "",
        *(["**This is the `--quick` variant**: a budget this small (rejection sampling alone takes half of it) "
            "leaves every method near zero, so its ranking is mostly noise; it checks the machinery. The comparison "
            "is the full `prefixrl bench paper`.", ""] if cfg["quick"] else []),
        "## Final unprefixed pass@1 at equal FLOPs", "",
        "| method | hard-train (mean ± std) | hard-heldout (mean ± std) | steps per seed | zero-adv groups | "
        "grad-norm mean ± std | last entropy | solves off the trace's path |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m, t in table.items():
        differ = t.get("strategy_differ_share")
        differ = "–" if differ is None else f"{differ:.0%} of {t.get('strategy_solves', '?')}"
        lines.append(f"| {m} | {t['hard_train_mean']:.3f} ± {t['hard_train_std']:.3f} | {t['hard_heldout_mean']:.3f} ± "
                     f"{t['hard_heldout_std']:.3f} | {', '.join(map(str, t['steps']))} | {t['zero_adv_share']:.2f} | "
                     f"{t['grad_norm_mean']:.3f} ± {t['grad_norm_std']:.3f} | {t['entropy_last']:.3f} | "
                     f"{differ} |")
    lines += _exact_lines(res)
    lines += ["", "Last entropy: the policy's per-token entropy on its own samples at its last step (Monte-Carlo). "
              "Solves off the trace's path: of the final policy's correct unprefixed hard-train samples on problems "
              "with a trace (all seeds), the share whose rare-step choices differ from the trace's (paper §4, Fig. 5; "
              "0 when a problem has one correct response)."]
    for m, t in table.items():
        if t.get("sft"):
            lines += ["", f"SFT before RL ({m}; epochs and lr chosen by the least validation NLL on held-out traces, "
                      "`prefixrl.rl.sft.fit`), per seed: " + "; ".join(
                          f"lr {c['lr']:.2g}, {c['epochs']} epochs, entropy on the traces {c['entropy_before']:.3f} → "
                          f"{c['entropy_after']:.3f}" for c in t["sft"]) + "."]
    lines += ["", "![train](results/acc_vs_flops_hard-train.png)", "", "![heldout](results/acc_vs_flops_hard-heldout.png)",
              "", "## Headline ratios (the paper: 2× less compute than SFT→RL, 3× standard RL's final reward)", ""]
    for split, r in ratios.items():
        fr = r.get("flops_ratio")
        reach = "not reached" if fr is None else f"{fr:.2f}"
        acc = r.get("final_acc_ratio_vs_rl")
        lines.append(f"- **{split}**: strongest baseline `{r.get('strongest_baseline')}` ends at {r.get('target', 0):.3g}; "
                     f"PrefixRL's FLOPs to reach it ÷ its FLOPs = **{reach}**; PrefixRL final ÷ standard RL final = "
                     f"**{'n/a (RL at 0)' if acc is None else f'{acc:.2f}'}**.")
    lines += ["", *_variant_lines(res)]
    ks = list(next(iter(table.values()))["passk_heldout"])
    lines += ["", "## Hard-heldout pass@k", "", "| method | " + " | ".join(f"k={k}" for k in ks) + " |",
              "|---|" + "---|" * len(ks)]
    for m, t in table.items():
        lines.append(f"| {m} | " + " | ".join(f"{t['passk_heldout'][k]:.3f}" for k in ks) + " |")
    lines += ["", "![pass@k](results/passk_heldout.png)", "", "## Training health per step", "",
              "![health](results/health.png)", ""]
    if res["bands"]:
        exact = all("heldout_exact_pass@1" in c[-1] for c in res["bands"].values())
        lines += ["## Back-generalization by prefix band (prefixrl-only, first seed)", "",
                  "| band | final unprefixed hard-train | final unprefixed hard-heldout |"
                  + (" final exact hard-heldout pass@1 (the curve's 64 problems) |" if exact else ""),
                  "|---|---|---|" + ("---|" if exact else "")]
        for b, curve in res["bands"].items():
            lines.append(f"| {b} | {curve[-1]['train_acc_unprefixed']:.3f} | "
                         f"{curve[-1].get('heldout_acc_unprefixed', float('nan')):.3f} |"
                         + (f" {curve[-1]['heldout_exact_pass@1']:.2e} |" if exact else ""))
        lines += ["", "![bands](results/backgen_bands.png)", ""]
    lines += _paper_comparison(res)
    lines += _why(res)
    path.write_text("\n".join(lines) + "\n")


def _paper_comparison(res: dict) -> list[str]:
    """Plain statements, from the measured numbers, of where the miniature agrees with the paper."""
    table, ratios, cfg = res["table"], res["ratios"], res["config"]
    out = ["## Against the paper's claims", ""]

    def order(split):
        return sorted(table, key=lambda m: -table[m][f"{split}_mean"])

    for split in (s for s in ("hard_train", "hard_heldout", "hard_heldout_exact") if s in ratios):
        r = ratios[split]
        fr, acc = r.get("flops_ratio"), r.get("final_acc_ratio_vs_rl")
        agree_fr = fr is not None and fr <= 0.5
        agree_acc = acc is not None and acc >= 3.0
        out.append(
            f"- {split}: ranking by final pass@1 is {' > '.join(order(split))}. The paper's 2× compute claim "
            f"(ratio ≤ 0.5 against the strongest baseline) {'holds' if agree_fr else 'does not hold'} here "
            f"(measured: {'not reached' if fr is None else f'{fr:.2f}'}); its 3× final-reward claim against "
            f"standard RL {'holds' if agree_acc else 'does not hold'} (measured: {'n/a' if acc is None else f'{acc:.2f}'}).")
    if "prefixrl-only" in table and "rl" in table:
        key, name = _headline(table)
        po, rl = table["prefixrl-only"][key], table["rl"][key]
        out.append(f"- Back-generalization: training only on prefixed problems ends at {name} {_num(po)} on "
                   f"unprefixed problems (standard RL, same FLOPs: {_num(rl)}).")
    differ = {m: t["strategy_differ_share"] for m, t in table.items() if t.get("strategy_differ_share") is not None}
    k = cfg.get("rare_steps", 0)
    if k and differ:
        strat = ("- **Strategy change** (paper §4, Fig. 5): of each final policy's correct unprefixed hard-train "
                 "samples on problems with a trace, the share whose rare-step choices differ from the trace's: "
                 + ", ".join(f"{m} {v:.0%} of {table[m]['strategy_solves']}" for m, v in differ.items())
                 + f" (solves, all seeds). A problem here has 2^{k} = {2 ** k} correct responses and its trace is one "
                 f"of them, so a solve that picked each rare step's table at random would differ with probability "
                 f"{1 - 2 ** -k:.0%}; methods missing from the list solved no traced problem in their final samples.")
    elif k:
        strat = ("- **Strategy change** (paper §4, Fig. 5) is measured on this task, but no final policy solved a "
                 "traced problem in its final samples, so there is no solve to compare with its trace.")
    else:
        strat = ("- **Strategy change** is not measurable at `--rare-steps 0`: the verifier checks every intermediate "
                 "value, so a problem has exactly one correct response and there is no other strategy to switch to "
                 "(at `--rare-steps K` a problem has 2^K).")
    out += ["", strat,
            "- **Cross-family traces**: `prefixrl bench cross-family` writes [cross_family.md](cross_family.md).", ""]
    return out


def _fmt_t(x) -> str:
    return "never" if x is None else f"{x / 1e12:.2f} T"


def _why(res: dict) -> list[str]:
    """The measured reasons behind the ranking (bench.analyse), in words."""
    a, cfg = res.get("analysis"), res["config"]
    if not a or "rl_flops_to_0.1" not in a:
        return []
    lr = res.get("rl_lr", 3e-5)
    if isinstance(lr, dict) and len(set(lr.values())) == 1:
        lr = next(iter(lr.values()))
    lr = ", ".join(f"{m} {v:g}" for m, v in lr.items()) if isinstance(lr, dict) else f"{lr:g} for every method"
    out = ["## Why the ranking comes out this way", "",
           f"Every method shares the task, base model, problem set, sampler, optimizer (AdamW; RL lr: {lr}), batch "
           "(8 prompts × 8 samples, except rl-n64) and FLOPs ledger; only each method's own part differs "
           "(docs/baselines.md). The learning rates were fixed before any comparison (docs/regimes.md).", "",
           "| seed | rejection sampling | standard RL: steps with signal in its first 100 | standard RL: first correct sample | "
           "standard RL reaches 0.1 train acc | PrefixRL reaches 0.1 (RL FLOPs after RS) |", "|---|---|---|---|---|---|"]
    pre = a.get("prefixrl_flops_to_0.1_after_rs", [None] * len(a["rs_flops"]))
    for i, rs in enumerate(a["rs_flops"]):
        out.append(f"| {i} | {_fmt_t(rs)} | {a['rl_steps_with_signal_first100'][i]} | {_fmt_t(a['rl_first_success_flops'][i])} | "
                   f"{_fmt_t(a['rl_flops_to_0.1'][i])} | {_fmt_t(pre[i])} |")
    out.append("")
    cols, k = res.get("collections", []), cfg.get("rare_steps", 0)
    if cols:
        solved = [c["solved"] for c in cols]
        signal = a["rl_steps_with_signal_first100"]
        out.append(f"- The hard problems are hard, not unsolvable: rejection sampling with the base model solves "
                   f"{_span(solved)} of {cols[0]['problems']} within {cfg['collect_cap']} samples each, "
                   f"and {_span(signal)} of standard RL's first 100 steps had a group with both a correct "
                   "and a wrong sample (a learning signal).")
    esc = [x for x in a["rl_flops_to_0.1"] if x is not None]
    if esc:
        cheaper = sum(e < rs for e, rs in zip(a["rl_flops_to_0.1"], a["rs_flops"]) if e is not None)
        reached = (f"it reaches 0.1 unprefixed hard-train accuracy after {_span(esc, lambda x: f'{x / 1e12:.2f}')} "
                   f"TFLOP in {len(esc)} of {len(a['rs_flops'])} seeds")
        if cheaper:
            why = ("this task's skill is shared by all problems, so a handful of lucky successes are enough for "
                   "standard RL to escape." if not k else "here it escaped in spite of the missing knowledge.")
            out.append(f"- Standard RL is not stuck at zero here: {reached}; in {cheaper} of them that is less than "
                       "rejection sampling alone costs PrefixRL. The paper's regime is one where standard RL gets "
                       f"(almost) no signal for a long time; {why}")
        else:
            out.append(f"- Standard RL escapes, but late: {reached}, in every one later than rejection sampling "
                       "alone costs PrefixRL, so for that long it is as starved as the paper's regime asks.")
    else:
        first = [x for x in a["rl_first_success_flops"] if x is not None]
        seen = (f"its first correct sample came after {_span(first, lambda x: f'{x / 1e12:.2f}')} TFLOP"
                if first else "it never sampled a correct response")
        out.append(f"- Standard RL is starved, as in the paper's regime: in no seed did it reach 0.1 unprefixed "
                   f"hard-train accuracy within the budget, and {seen}.")
    out += _against_paying(res["table"], k)
    if "traces_free" in a:
        out.append(_traces_free_line(a["traces_free"]))
    out.append("")
    return out


def _against_paying(t: dict, k: int) -> list[str]:
    """PrefixRL against the baselines that also pay for rejection sampling, with our reading of the order."""
    out = []
    key, name = _headline(t)
    paying = [m for m in ("sft-rl", "offpolicy", "luffy") if m in t]
    if "prefixrl" in t and paying:
        above = [m for m in paying if t[m][key] > t["prefixrl"][key]]
        rare = {m: t[m].get("rare_knowledge_mean") for m in [*paying, "prefixrl"]}
        knows = ("" if any(v is None for v in rare.values()) else " Rare-step knowledge (0.2 = a guess): " +
                 ", ".join(f"{m} {v:.3f}" for m, v in rare.items()) + ".")
        if above:
            reading = ("the traces are the base model's own samples, so SFT on them is close to on-policy "
                       "(rejection-sampling fine-tuning), and the damage the paper attributes to SFT on very "
                       "off-policy traces has little to act on; and each problem has a single correct response."
                       if not k else
                       "the traces state the missing facts (the value of each rare step), and SFT and the off-policy "
                       "losses train on the trace's tokens directly, while PrefixRL's prefix is context that gets no "
                       "gradient (paper §3.6): it must rediscover a rare step on-policy, and only where its cut leaves "
                       "that step to the policy (docs/regimes.md, pilots 3–5).")
            out.append("- Among the methods that also pay for rejection sampling, " + " and ".join(
                f"{m} ({_num(t[m][key])})" for m in above) + f" end{'s' if len(above) == 1 else ''} above PrefixRL "
                f"({_num(t['prefixrl'][key])}) in {name}.{knows} Our reading, not a measurement: {reading}")
        else:
            out.append(f"- PrefixRL ({_num(t['prefixrl'][key])}) ends above every method that also pays for rejection "
                       "sampling in " + name + ": " + ", ".join(f"{m} {_num(t[m][key])}" for m in paying) + f".{knows}")
    return out


def _traces_free_line(f: list[dict]) -> str:
    """The comparison at equal on-policy FLOPs, as if the traces had been free (reused, not collected)."""
    x_m = float(np.mean([x["on_policy_flops"] for x in f]))
    p_m = float(np.mean([x["prefixrl"] for x in f]))
    r_m = float(np.mean([x["rl_at_same_flops"] for x in f]))
    exact = ""
    if all("prefixrl_exact" in x for x in f):
        pe = float(np.mean([x["prefixrl_exact"] for x in f]))
        re_ = float(np.mean([x["rl_exact_at_same_flops"] for x in f]))
        exact = f"; in exact hard-heldout pass@1 (the curves' 64 problems) PrefixRL {_num(pe)}, standard RL {_num(re_)}"
    return (f"- If the traces were free (reused from earlier runs instead of collected for this run), the "
            f"comparison is at equal on-policy FLOPs: after {x_m / 1e12:.2f} TFLOP of RL (mean over seeds) PrefixRL "
            f"is at {p_m:.3f} unprefixed hard-train accuracy and standard RL at {r_m:.3f} (curve evaluations, "
            f"64 problems × 4 samples){exact}.")


