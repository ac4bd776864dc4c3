"""The demo's outputs: report.json (an interface other tools read), report.md and the FLOPs plot."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(methods: dict[str, dict], path: Path, title: str, charged: dict[str, float] | None = None) -> None:
    """Unprefixed hard-train accuracy against cumulative FLOPs, one line per method."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name, m in methods.items():
        xs = [p["flops"] for p in m["curve"]]
        ys = [p["train_acc_unprefixed"] for p in m["curve"]]
        (line,) = ax.plot(xs, ys, marker="o", ms=3, label=name)
        off = (charged or {}).get(name, 0.0)
        if off:  # the offline cost a method is charged before its first step (paper Fig. 2's shaded band)
            ax.axvspan(0, off, color=line.get_color(), alpha=0.08)
            ax.axvline(off, color=line.get_color(), ls=":", lw=1)
    ax.set_xlabel("cumulative FLOPs (rejection sampling included)")
    ax.set_ylabel("unprefixed hard-train pass@1")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def fmt_flops(x: float) -> str:
    return f"{x / 1e12:.2f} TFLOP"


def write_report(out: Path, report: dict) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2))
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
    lines += ["", "Success conditioned on a prefix of a correct trace (hard-train, fraction of trace tokens):", "",
              "| prefix | " + " | ".join(report["prefix_success"]) + " |",
              "|---|" + "---|" * len(report["prefix_success"]),
              "| pass@1 | " + " | ".join(f"{v:.3f}" for v in report["prefix_success"].values()) + " |", ""]
    lines += ["## Rejection sampling", "",
              f"{col['solved']} of {col['problems']} hard-train problems solved with {col['samples']:,} samples "
              f"(cap {report['config']['collect_cap']}), {fmt_flops(col['flops'])}.", ""]
    lines += ["## RL at equal total FLOPs", "",
              "| method | steps | total FLOPs | hard-train pass@1 | hard-heldout pass@1 |", "|---|---|---|---|---|"]
    for name, m in ms.items():
        lines.append(f"| {name} | {m['steps']} | {fmt_flops(m['flops_total'])} | {m['final']['hard_train_pass@1']:.4f} "
                     f"| {m['final']['hard_heldout_pass@1']:.4f} |")
    lines += ["", "![accuracy vs FLOPs](curve.png)", "", "## Verdict", "", report["verdict"], ""]
    gates = report["gates"]
    lines += ["## Regime gates (docs/task.md)", "",
              f"- standard RL saw a correct sample in {gates['rl_steps_with_signal']} of its first "
              f"{gates['rl_steps_checked']} steps (target: well under half)",
              f"- rejection sampling solved {gates['collect_solved_share']:.0%} of hard-train problems (target: at least half)",
              f"- success after an 80 % prefix: {gates['prefix80_success']:.3f} (target: at least 0.20)", ""]
    (out / "report.md").write_text("\n".join(lines))
