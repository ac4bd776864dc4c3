"""`prefixrl plot RUN…`: the curves of one or more training runs in one PNG, read from each run's
metrics.jsonl: unprefixed pass@1 against total FLOPs (hard-train, and hard-heldout where evaluated), and
the per-step reward on prefixed and on unprefixed prompts. Compute, not steps, is the x-axis of the
accuracy panel, because methods are compared at equal FLOPs (the paper's axis)."""

from __future__ import annotations

from pathlib import Path

from prefixrl.io.errors import BadInput
from prefixrl.io.run_state import read_log
from prefixrl.io.store import atomic_write

PANELS = (("train_acc_unprefixed", "hard-train"), ("heldout_acc_unprefixed", "hard-heldout"))


def read_metrics(run: Path) -> tuple[list[dict], list[dict]]:
    """(eval points, steps) of a run folder, checked: the file and the row in every error."""
    records = read_log(run)
    if not records:
        raise BadInput(f"{Path(run) / 'metrics.jsonl'}: no records")
    return [r for r in records if r["kind"] == "eval"], [r for r in records if r["kind"] == "step"]


def plot_fractions(rows: list[dict], out: Path) -> None:
    """pass@1 against the share of the trace given, one thin line per problem and their mean (`eval --fractions`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fractions = sorted({r["fraction"] for r in rows})
    by_problem: dict[str, dict[float, float]] = {}
    for r in rows:
        by_problem.setdefault(r["problem_id"], {})[r["fraction"]] = r["pass@1"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=110)
    for curve in by_problem.values():
        ax.plot(fractions, [curve[f] for f in fractions], color="gray", lw=0.6, alpha=0.5)
    mean = [sum(c[f] for c in by_problem.values()) / len(by_problem) for f in fractions]
    ax.plot(fractions, mean, color="C0", lw=2, marker="o", label=f"mean over {len(by_problem)} problems")
    ax.set(xlabel="share of the correct trace given as prefix", ylabel="pass@1 of the completion",
           title="Success against prefix length, per problem", ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(out, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)


def plot_runs(runs: list[Path], out: Path) -> None:
    """One PNG: accuracy against FLOPs per split, and the per-step rewards, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = {str(r): read_metrics(r) for r in runs}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2), dpi=110)
    for name, (evals, steps) in data.items():
        for ax, (key, split) in zip(axes[:2], PANELS):
            pts = [(e["flops"], e[key]) for e in evals if e.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=name)
            ax.set(xlabel="total FLOPs (offline cost charged)", ylabel=f"unprefixed {split} pass@1", title=split)
        for key, style in (("reward_prefixed", "-"), ("reward_unprefixed", "--")):
            pts = [(s["step"], s[key]) for s in steps if s.get(key) is not None]
            if pts:
                axes[2].plot(*zip(*pts), ls=style, lw=0.8, label=f"{name} ({key.split('_')[1]})")
        axes[2].set(xlabel="RL step", ylabel="mean reward of the step's samples", title="training reward")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(out, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
