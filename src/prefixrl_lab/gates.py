"""The regime gates (docs/regimes.md): is a run in the paper's regime? Written down before any method
was compared, and never moved after; every demo and bench run reports them.

The paper's mechanism needs four conditions (§1, §4 of the paper; docs/regimes.md says why each):

1. **knowledge, not noise**: greedy hard pass@1 is within KNOWLEDGE_FACTOR of exact temperature-1
   pass@1. If greedy decoding solves far more than sampling, the base knows the answer and RL only
   has to sharpen it (standard RL's best case);
2. **standard RL is starved**: the correct samples standard RL needs before it escapes (its unprefixed
   accuracy first reaches ESCAPE_ACC) are more than the traces rejection sampling buys, and after
   spending what rejection sampling cost it is still below ESCAPE_ACC;
3. **transfer is within classes**: RL on half of the hard-train problems, measured on the other half
   (bench regimes only: it needs a run of its own);
4. **prefixes make the rest reachable**: rejection sampling solves a share of the problems at its cap
   (exact, `prefixrl.rl.exact`), and success after an 80 % prefix is at least PREFIX80_MIN.

The reuse setting adds two (docs/last_word.md §4, fixed before any of its runs):

5. **jump**: exact success after the 80 % prefix (past the first uses) is at least JUMP_MIN and
   JUMP_FACTOR times the exact unprefixed pass@1;
6. **reuse**: at a recurrence, the base's probability of the value its first use wrote minus that of the
   other admissible value lies in REUSE_BAND (copying works, and still leaves gradient); in the control
   its absolute value is at most CONTROL_MAX.
"""

from __future__ import annotations

from pathlib import Path

from prefixrl.io.run_state import read_log

KNOWLEDGE_FACTOR = 10.0
ESCAPE_ACC = 0.1
PREFIX80_MIN = 0.2


def knowledge(exact_hard: dict) -> dict:
    """Gate 1 from the exact regime measurement of hard-train (one deterministic forward pass)."""
    p, g = exact_hard["exact_pass@1"], exact_hard["greedy_pass@1"]
    # greedy pass@1 over P problems moves in steps of 1/P: a problem or two greedy-solved by chance is
    # not knowledge, so the comparison allows 1/P of slack
    slack = 1.0 / max(1, exact_hard["problems"])
    return {"greedy_pass@1": g, "exact_pass@1": p, "factor": KNOWLEDGE_FACTOR,
            "ratio": g / p if p > 0 else None, "ok": g <= KNOWLEDGE_FACTOR * p + slack}


def rl_starvation(run_dir: Path, rs_flops: float, traces_bought: int) -> dict:
    """Gate 2 from standard RL's own log: the correct unprefixed samples it saw before its hard-train
    accuracy first reached ESCAPE_ACC, and its accuracy once it had spent `rs_flops`."""
    records = read_log(Path(run_dir))
    steps = [r for r in records if r["kind"] == "step"]
    evals = [r for r in records if r["kind"] == "eval"]
    escaped = next((e for e in evals if e["train_acc_unprefixed"] >= ESCAPE_ACC), None)
    until = escaped["step"] if escaped else (steps[-1]["step"] if steps else 0)
    successes = sum(round((r["reward_unprefixed"] or 0.0) * r.get("samples_unprefixed", 0))
                    for r in steps if r["step"] <= until)
    at_rs = next((e for e in evals if e["flops"] >= rs_flops), evals[-1] if evals else None)
    acc = at_rs["train_acc_unprefixed"] if at_rs else None
    return {"escape_acc": ESCAPE_ACC, "escaped_at_step": escaped["step"] if escaped else None,
            "successes_before_escape": successes, "escaped": escaped is not None, "traces_bought": traces_bought,
            "rs_flops": rs_flops, "acc_at_rs_flops": acc,
            "ok": (acc is not None and acc < ESCAPE_ACC) and (escaped is None or successes > traces_bought)}


def reachability(expected_yield: float, min_yield: float, prefix80: float) -> dict:
    """Gate 4: rejection sampling buys traces, and an 80 % prefix makes the rest solvable."""
    return {"expected_yield": expected_yield, "min_yield": min_yield, "prefix80_success": prefix80,
            "prefix80_min": PREFIX80_MIN, "ok": expected_yield >= min_yield and prefix80 >= PREFIX80_MIN}


JUMP_MIN, JUMP_FACTOR = 0.2, 50.0
REUSE_BAND = (0.3, 0.9)
CONTROL_MAX = 0.05


def jump(after80: float, unprefixed: float) -> dict:
    """Gate 5 from exact success after the 80 % prefix and exact unprefixed pass@1 (hard-train means)."""
    return {"after80_exact": after80, "unprefixed_exact": unprefixed, "min": JUMP_MIN, "factor": JUMP_FACTOR,
            "ok": after80 >= JUMP_MIN and after80 >= JUMP_FACTOR * unprefixed}


def reuse(margin: float, control: bool) -> dict:
    """Gate 6 from `exact.reuse_margin` of the base."""
    ok = abs(margin) <= CONTROL_MAX if control else REUSE_BAND[0] <= margin <= REUSE_BAND[1]
    return {"margin": margin, "control": control, "band": list(REUSE_BAND), "control_max": CONTROL_MAX, "ok": ok}
