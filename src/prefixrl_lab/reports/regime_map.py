"""docs/regimes.md from regimes.json (`prefixrl bench regimes`)."""

from __future__ import annotations

import math
from pathlib import Path

from prefixrl_lab.reports.demo import gate_lines
from prefixrl_lab.reports.paper import median_fell, median_problem, one_problem, versus

MARKER = "<!-- everything below is written by `prefixrl bench regimes`; edit above this line only -->"


def write(folder: Path, res: dict) -> None:
    write_regimes(folder / "regimes.md", res)


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
        lines += [f"### K = {s['rare_steps']}, classes = {s['classes']}{steps}", ""] + _setting_gate_lines(s["gates"]) + [""]
    lines += ["Per-setting details (curves, pass@k, health): `regimes/rareK-classesC/results.md`.", ""]
    path.write_text(head + "\n".join(lines))


def _f(x, fmt="{:.2f}") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


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
        exact_cell = (f"{ex['strongest_baseline']}, {_f(ex.get('flops_ratio'))}, {_f(fex.get('flops_ratio'))}, "
                      f"{_f(ex.get('final_acc_ratio_vs_rl'))}{_seeds(ex)}" if ex else "–")
        lines.append(f"{_at(s)}{best or '–'} | {_f(r.get('flops_ratio'))} | {_f(free.get('flops_ratio'))} | "
                     f"{_f(r.get('final_acc_ratio_vs_rl'))}{_seeds(r)} | {_f(p.get('hard_train_mean'), '{:.3f}')} ± "
                     f"{_f(p.get('hard_train_std'), '{:.3f}')} | {_f(t[best]['hard_train_mean'] if best else None, '{:.3f}')} "
                     f"| {exact_cell} | {_f(th.get('ratio'), '{:.1f}×')} |")
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
    """What each exact mean rests on, at every setting (`reports.paper`'s rule): the median heldout problem and
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


def _setting_gate_lines(g: dict) -> list[str]:
    return gate_lines(g)[2:-1]
