"""The demo's report.md from its report.json (an interface other tools read)."""

from __future__ import annotations

from pathlib import Path

from prefixrl_lab.curves import fmt_flops
from prefixrl_lab.stopwatch import stage_table

LABELS = {"prefixrl": "PrefixRL", "rl": "standard RL", "sft-rl": "SFT→RL"}


def write(out: Path, report: dict) -> None:
    b, col, ms = report["base"], report["collection"], report["methods"]
    lines = [
        "# PrefixRL demo report", "",
        f"Seed {report['seed']}; task `{report['config']['task']}`; model {report['model']['n_params']:,} parameters. "
        f"Wall-clock {report['seconds']:.0f} s.", "",
        "## Base model (pass@k on unprefixed problems)", "",
        "| split | " + " | ".join(f"pass@{k}" for k in b["pass@k"]) + " |",
        "|---|" + "---|" * len(b["pass@k"]),
    ]
    for split in ("easy", "hard_train", "hard_heldout"):
        vals = [b["pass@k"][k].get(split) for k in b["pass@k"]]
        lines.append(f"| {split} | " + " | ".join("–" if v is None else f"{v:.4f}" for v in vals) + " |")
    lines += _exact_regime(b, report["gates"]["regime"])
    lines += ["", "Success conditioned on a prefix of a correct trace (hard-train, fraction of trace tokens):", "",
              "| prefix | " + " | ".join(report["prefix_success"]) + " |",
              "|---|" + "---|" * len(report["prefix_success"]),
              "| pass@1 | " + " | ".join(f"{v:.3f}" for v in report["prefix_success"].values()) + " |", ""]
    lines += ["## Rejection sampling", "",
              f"{col['solved']} of {col['problems']} hard-train problems solved with {col['samples']:,} samples "
              f"(cap {report['config']['collect_cap']}), {fmt_flops(col['flops'])}.", ""]
    lines += ["## RL at equal total FLOPs", "",
              "| method | steps | total FLOPs | hard-train pass@1 | hard-heldout pass@1 | hard-heldout exact pass@1 "
              "| rare-step knowledge | groups with signal | correct samples per TFLOP |", "|---|---|---|---|---|---|---|---|---|"]
    for name, m in ms.items():
        f, mech = m["final"], m.get("mechanism") or {}
        exact, rare = f.get("hard_heldout_exact_pass@1"), f.get("rare_knowledge")
        share, per = mech.get("signal_share"), mech.get("correct_per_tflop")
        lines.append(f"| {LABELS.get(name, name)} | {m['steps']} | {fmt_flops(m['flops_total'])} | {f['hard_train_pass@1']:.4f} "
                     f"| {f['hard_heldout_pass@1']:.4f} | {'–' if exact is None else f'{exact:.2e}'} "
                     f"| {'–' if rare is None else f'{rare:.3f}'} | {'–' if share is None else f'{share:.2f}'} "
                     f"| {'–' if per is None else f'{per:.0f}'} |")
    base = report["base"]["exact"]["hard_heldout"]
    lines += ["", f"Exact pass@1 is teacher-forced over every correct response (no sampling noise); the base's is "
              f"{base['exact_pass@1']:.2e}. Rare-step knowledge is the probability put on an admissible value at a "
              "rare step (0.2 is a guess, 1 is knowing the tables; docs/regimes.md). Groups with signal: the share of "
              "a run's groups whose rewards differ (the others train nothing); correct samples per TFLOP: correct "
              "on-policy samples seen per TFLOP of the run's own compute (the charged traces left out). SFT→RL is "
              "charged the rejection sampling, as PrefixRL is: its SFT trains on the traces."]
    eff = report.get("compute_efficiency", {})
    fr, ar = eff.get("flops_ratio_vs_rl"), eff.get("final_acc_ratio_vs_rl")
    lines += ["", f"PrefixRL's FLOPs to reach standard RL's final hard-train accuracy ÷ standard RL's FLOPs: "
              f"**{'not reached' if fr is None else f'{fr:.2f}'}**; final accuracy ratio PrefixRL ÷ standard RL: "
              f"**{'n/a' if ar is None else f'{ar:.2f}'}** (the paper reports 0.5 and 3).", ""]
    lines += ["", "![accuracy vs FLOPs](curve.png)", "", "## Verdict", "", report["verdict"], ""]
    gates = report["gates"]
    lines += ["## Regime checks after the runs (docs/task.md)", "",
              f"- standard RL saw a correct sample in {gates['rl_steps_with_signal']} of its first "
              f"{gates['rl_steps_checked']} steps (target: well under half)",
              f"- rejection sampling solved {gates['collect_solved_share']:.0%} of hard-train problems (target: at least half)",
              f"- success after an 80 % prefix: {gates['prefix80_success']:.3f} (target: at least 0.20)", ""]
    lines += gate_lines(gates)
    lines += ["", "## Where the wall-clock went", "", *stage_table(report["stage_seconds"], report["seconds"]), ""]
    (out / "report.md").write_text("\n".join(lines))


def _ok(g: dict) -> str:
    return "**pass**" if g["ok"] else "**FAIL**"


def gate_lines(gates: dict) -> list[str]:
    """The paper's-regime gates (`experiments.gates`, docs/regimes.md), one line each."""
    if "knowledge" not in gates:
        return []
    k, r = gates["knowledge"], gates["reachable"]
    lines = ["## The paper's regime, gated (docs/regimes.md)", "",
             f"- knowledge, not noise: greedy hard-train pass@1 {k['greedy_pass@1']:.4f} ≤ {k['factor']:g} × exact "
             f"{k['exact_pass@1']:.2e} (+1/problems): {_ok(k)}"]
    if "rl_starved" in gates:
        s = gates["rl_starved"]
        escape = (f"escaped (hard-train accuracy ≥ {s['escape_acc']}) at step {s['escaped_at_step']} after "
                  f"{s['successes_before_escape']} correct samples" if s["escaped"] else
                  f"never reached hard-train accuracy {s['escape_acc']} ({s['successes_before_escape']} correct "
                  "samples in all)")
        acc = "n/a" if s["acc_at_rs_flops"] is None else f"{s['acc_at_rs_flops']:.3f}"
        lines.append(f"- standard RL starved: it {escape}, against {s['traces_bought']} traces bought by rejection "
                     f"sampling; accuracy after spending the rejection-sampling FLOPs ({fmt_flops(s['rs_flops'])}): "
                     f"{acc} < {s['escape_acc']}: {_ok(s)}")
    lines.append(f"- reachable: expected yield {r['expected_yield']:.1%} ≥ {r['min_yield']:.0%} and 80 % prefix "
                 f"success {r['prefix80_success']:.3f} ≥ {r['prefix80_min']}: {_ok(r)}")
    if "transfer" in gates:
        t = gates["transfer"]
        share = lambda x: "n/a (the trained half did not improve)" if x is None else f"{x:.2f}"
        lines.append(f"- transfer: standard RL on half the hard-train problems took that half from "
                     f"{t['trained_before']:.3f} to {t['trained_after']:.3f} and the other half from {t['before']:.3f} "
                     f"to {t['after']:.3f} (share transferred: {share(t['share'])}; reported, no threshold)")
        if "exact" in t:  # tasks that list their correct responses: the same, without sampling noise
            e = t["exact"]
            lines[-1] += (f"; in exact pass@1, that half from {e['trained_before']:.2e} to {e['trained_after']:.2e} "
                          f"and the other from {e['other_before']:.2e} to {e['other_after']:.2e} "
                          f"(share {share(e['share'])})")
    return lines + [""]


def _exact_regime(base: dict, g: dict) -> list[str]:
    """The base's regime measured exactly (teacher forcing), its calibration, and the gates checked
    before any sampling. These figures match across machines within the calibration window; sampled
    ones do not (docs/model.md)."""
    cal = base["calibration"]
    lines = ["", "Measured exactly by teacher forcing (`prefixrl.rl.exact`; deterministic, no sampling):", "",
             "| split | exact pass@1 | greedy pass@1 | per-step probability |", "|---|---|---|---|"]
    for split, m in base["exact"].items():
        lines.append(f"| {split} | {m['exact_pass@1']:.2e} | {m['greedy_pass@1']:.3f} | {m['step_prob']:.3f} |")
    if cal.get("method") == "logit-scale":
        lines += ["", f"Calibration: logit scale {cal['scale']:.4f} (the final norm's weight × s), which moved exact "
                  f"hard-train pass@1 over {cal['problems']} problems from {cal['exact_pass@1_before']:.2e} to "
                  f"{cal['exact_pass@1_after']:.2e} (target {cal['target_pass1']:.2e})."]
    else:
        lines += ["", "Calibration: none (the base as trained)."]
    lo, hi = g.get("window", (None, None))
    window = "" if lo is None else f"exact hard-train pass@1 {g['exact_pass@1']:.2e} in [{lo:.2e}, {hi:.2e}]: " \
        f"**{'pass' if g['window_ok'] else 'FAIL'}**; "
    lines += ["", f"Gates before rejection sampling: {window}expected yield at cap {g['cap']} "
              f"{g['expected_yield']:.1%} ≥ {g['min_yield']:.0%}: **{'pass' if g['yield_ok'] else 'FAIL'}**."]
    return lines
