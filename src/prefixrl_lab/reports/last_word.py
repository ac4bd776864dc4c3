"""last_word_results.md from last_word.json (`prefixrl bench last-word`; its rules: docs/last_word.md)."""

from __future__ import annotations

import math
from pathlib import Path

from prefixrl_lab.reports.demo import gate_lines

NAMES = {"prefixrl": "PrefixRL", "rl": "standard RL", "sft-rl": "SFT→RL (early-stopped)", "regft-rl": "ReGFT→RL"}


def write(folder: Path, res: dict) -> None:
    (folder / "last_word_results.md").write_text("\n".join(page(res)) + "\n")


def _f(x, fmt="{:.3g}") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def _candidates(s: dict) -> str:
    """How many candidates each method's search had (the rules: 5 for every one)."""
    counts = sorted({len(t["candidates"]) for name, t in s["tuning"].items() if name != "sft-rl depth"})
    return " or ".join(map(str, counts))


def _name(label: str) -> str:
    depth = label.split("-")[-1].replace("ep", "")
    return NAMES.get(label, f"SFT→RL ({depth} epoch{'s' * (depth != '1')})")


def page(res: dict) -> list[str]:
    cfg = res["config"]
    lines = ["# The miniature's last word: results", "",
             f"Written by `prefixrl bench last-word{' --quick' if cfg.get('quick') is True else ''}` under the rules "
             "committed before its runs (docs/last_word.md). Per run: "
             f"{float(cfg['flops_budget']):.3g} FLOPs with rejection sampling (and every other sampling before RL) "
             f"charged, {cfg['train_problems']} hard-train problems, exact pass@1 on {cfg['heldout_problems']} "
             f"hard-heldout problems, {cfg['seeds']} reported seeds; {res.get('torch_threads', '?')} torch thread(s).",
             ""]
    for s in res["settings"].values():
        lines += setting(s, f"## K = {s['rare_steps']}, classes = {s['classes']}")
    if "reuse" in res:
        lines += reuse(res["reuse"])
    return lines


def setting(s: dict, title: str) -> list[str]:
    lines = [title, "", f"Base pretrained {s['pretrain_steps']} steps. Wall-clock of this setting, every invocation "
             f"summed: {s['seconds'] / 60:.0f} min.", "", "### The verdict (§6)", ""]
    for name, v in s["verdict"].items():
        ratios = ", ".join(_f(r, "{:.2f}") for r in v["ratios"])
        lines.append(f"- Against {name}: PrefixRL ÷ it per seed {ratios}; geometric mean {_f(v['geo_mean'], '{:.2f}')}: "
                     f"**{v['words']}**.")
    if "tuning" in s:
        lines += tuning(s)
    return lines + runs(s)


def tuning(s: dict) -> list[str]:
    runs_tuned = sum(len(t["candidates"]) for t in s["tuning"].values())
    lines = ["", "### Equal tuning (§1)", "",
              f"Every method: {_candidates(s)} candidates (SFT→RL's depths, §2, besides), each a full-budget run at seed 100, chosen by exact pass@1 on "
              f"{s['validation_problems']} validation problems (hard-heldout problems of data seed 1, none of them "
              f"a reported or training problem); ties to the smaller value. The {runs_tuned} candidate runs are "
              "charged to no method, for all alike.", "",
              "| method | tuned | fixed | candidates: validation exact pass@1 | chosen |", "|---|---|---|---|---|"]
    chosen = {**{m: v for m, v in s["chosen"]["lr"].items()}, **s["chosen"]["sft_lr"]}
    for label, t in s["tuning"].items():
        cands = "; ".join(f"{c['value']:g}: {_f(c['validation_exact'])}" for c in t["candidates"])
        fixed = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in t["fixed"].items()) or "–"
        pick = s["chosen"]["sft_depth"] if label == "sft-rl depth" else _f(chosen.get(label), "{:g}")
        lines.append(f"| {label} | {t['field']} | {fixed} | {cands} | {pick} |")
    return lines


def runs(s: dict) -> list[str]:
    seeds = [r["seed"] for r in next(iter(s["runs"].values()))]
    lines = ["", f"### Reported runs (seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))})", "",
              "| method | exact heldout pass@1 (± std) | per seed | rare-step knowledge | groups with signal | "
              "correct samples per TFLOP | steps |", "|---|---|---|---|---|---|---|"]
    for label, t in s["table"].items():
        seeds = ", ".join(_f(x) for x in t["exact_seeds"])
        lines.append(f"| {_name(label)} | {_f(t['exact_mean'])} (± {_f(t['exact_std'], '{:.2g}')}) | {seeds} | "
                     f"{_f(t['rare_knowledge'], '{:.3f}')} | {_f(t['signal_share'], '{:.2f}')} | "
                     f"{_f(t['correct_per_tflop'], '{:.0f}')} | {', '.join(map(str, t['steps']))} |")
    lines += ["", "### SFT depth (§2) and ReGFT (§3)", "",
              "Entropy: mean per-token entropy of the policy after SFT on held-out traces (the reference solutions of "
              "the hard-heldout problems). Before RL: hard-train exact pass@1 after SFT. Means over seeds.", "",
              "| method | SFT lr | epochs | entropy after SFT | hard-train exact before RL | final exact heldout | "
              "rare-step knowledge |", "|---|---|---|---|---|---|---|"]
    for label, rs in s["runs"].items():
        probes = [r["probe"] for r in rs if r.get("probe")]
        if not probes:
            continue
        mean = lambda k: sum(p[k] for p in probes) / len(probes)  # noqa: E731
        lrs = sorted({p["lr"] for p in probes if p["lr"] is not None})
        lines.append(f"| {_name(label)} | {', '.join(f'{x:g}' for x in lrs) or '–'} | "
                     f"{', '.join(str(p['epochs']) for p in probes)} | {mean('heldout_trace_entropy'):.3f} | "
                     f"{mean('hard_train_exact_before_rl'):.3g} | {_f(s['table'][label]['exact_mean'])} | "
                     f"{_f(s['table'][label]['rare_knowledge'], '{:.3f}')} |")
    kept = [(r.get("sft") or {}).get("completions") for r in s["runs"].get("regft-rl", [])]
    if any(kept):
        lines += ["", "ReGFT's completions per seed (kept of sampled): " + "; ".join(
            f"{k['kept']} of {k['sampled']} ({k['problems']} problems)" for k in kept if k) + "."]
    where = "" if "tuning" in s else ", chosen at one class: §4 reuses §1's and §2's choices"
    lines += ["", f"The SFT→RL depth compared against PrefixRL: **{s['chosen']['sft_depth']}** (validation exact "
              f"pass@1{where}: " + ", ".join(f"{d} {_f(v)}" for d, v in s["chosen"]["depth_scores"].items()) + ").", ""]
    follow = [(label, r["seed"], r["strategy"]) for label, rs in s["runs"].items() for r in rs if r.get("strategy")]
    if follow:
        lines += ["Solves off their trace's path (hard-train, 16 samples per problem, final policies; the share of "
                  "solves whose rare-step choices differ from the trace's): " + "; ".join(
                      f"{_name(label)} seed {seed}: {_f(st['differ_share'], '{:.2f}')} of {st['solves']}"
                      for label, seed, st in follow) + ".", ""]
    lines += ["### Gates at this setting (docs/regimes.md)", ""]
    lines += gate_lines(s["gates"])[2:] + reuse_gate_lines(s["gates"]) + [""]  # gate_lines' heading dropped
    return lines


def reuse_gate_lines(g: dict) -> list[str]:
    out = []
    if "jump" in g:
        j = g["jump"]
        out.append(f"- jump: exact success after the 80 % prefix {j['after80_exact']:.3f} ≥ {j['min']} and ≥ "
                   f"{j['factor']:g} × unprefixed {j['unprefixed_exact']:.2e}: {'**pass**' if j['ok'] else '**FAIL**'}")
    if "reuse" in g:
        r = g["reuse"]
        want = (f"|margin| ≤ {r['control_max']}" if r["control"] else f"margin in [{r['band'][0]}, {r['band'][1]}]")
        out.append(f"- reuse: P(the first use's value) − P(the other admissible value) at the recurrence "
                   f"{r['margin']:.3f}, {want}: {'**pass**' if r['ok'] else '**FAIL**'}")
        if r["control"]:
            out.append("- at the control, the jump and the 80 % prefix's success are reported, not required "
                       "(docs/last_word.md §4): its recurrence is a lookup after the cut that nothing before it "
                       "determines, guessed at about 0.2, so both stay below 0.2 by construction")
    return out


def reuse(r: dict) -> list[str]:
    lines = ["## The reuse setting (§4)", "",
             "3 first uses and 1 recurrence at one class (docs/last_word.md §4). The teacher's copy rate, the first "
             "whose calibrated switch base meets the reuse gate:", "",
             "| copy rate | base steps | reuse margin | gate |", "|---|---|---|---|"]
    for t in r["copy_rate"]["tried"]:
        margin = _f(t.get("margin"), "{:.3f}") if "margin" in t else t.get("error", "–")
        lines.append(f"| {t['copy_rate']:g} | {t.get('pretrain_steps', '–')} | {margin} | "
                     f"{'pass' if t['ok'] else 'fail'} |")
    lines += ["", f"Chosen: {_f(r['copy_rate']['copy_rate'], '{:g}')}.", ""]
    for name, g in (r.get("gates") or {}).items():
        if name not in r["settings"]:
            lines += [f"### {name}: gates, measured before any method (no method ran on the switch or its "
                      "control: neither means anything without the other)", ""]
            if "calibration" in g:
                lines += [f"- its base could not be calibrated: {g['calibration']['error']}"]
            lines += gate_lines(g)[2:] + reuse_gate_lines(g) + [""]
    for name, s in r["settings"].items():
        lines += setting(s, f"### The {name}" + (" (recurrence on a fresh operand)" if name == "control" else ""))
    return lines
