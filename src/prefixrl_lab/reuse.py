"""The reuse setting of `prefixrl bench last-word --reuse` (docs/last_word.md §4): a chain task whose last
step looks up again an operand of the rare block, so that what a prefix past the first uses reveals is
needed again by the model's own completion (the mechanism the paper relies on), and its control, whose
last step looks up an operand nothing before it names.

1. The teacher's copy rate: the first of COPY_RATES whose calibrated base meets the reuse gate (the base's
   probability of copying the first use minus that of the other admissible value in [0.3, 0.9]), chosen
   before any method runs and never by a comparison.
2. The control's base: the same pretraining corpus and copy rate, calibrated on the control's problems.
3. The gates of both (the map's knowledge and reachability, jump, reuse), measured exactly before any
   method runs; the methods run only if every required one passes (at the control, the jump and the
   80 % prefix's success are reported, not required: `meets`).
4. PrefixRL, standard RL, SFT→RL at its chosen depth and ReGFT→RL at the values §1 chose at one class, 3
   seeds each, with rare-step knowledge at the first uses (what back-generalization would move) and
   whether solves follow their trace's choices.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace

from prefixrl.data.verifier import deadlined
from prefixrl.embedded import calibration
from prefixrl.rl import exact
from prefixrl_lab import gates, pipeline
from prefixrl_lab.comparison import Setting
from prefixrl_lab.paper import bench_key
from prefixrl_lab.regime_map import base_steps

# pinned in docs/last_word.md §4 before any method ran; 2,000 pretraining steps because a base learns to
# copy only with long enough pretraining (reuse margin 0.006 after 500 steps, 0.45 after 1,500, copy rate 0.9)
SHAPE = {"rare_steps": 3, "recurrences": 1, "classes": 1, "pretrain_steps": 2000}
COPY_RATES = (0.5, 0.7, 0.9)


def setting_config(cfg, operands: str, copy_rate: float):
    """The bench config of the switch ("same") or its control ("fresh") at one copy rate, in its own folder."""
    sub = replace(cfg, **SHAPE, recur_operands=operands, copy_rate=copy_rate,
                  work=cfg.work / f"reuse-{operands}-copy{copy_rate:g}")
    return replace(sub, pretrain_steps=base_steps(sub))


def reuse_margin(sub, task) -> float:
    model, tok = pipeline.ensure_base(pipeline.base_config(sub.work / "base", sub, calibration=sub.calibration),
                                      progress=sub.progress)
    return exact.reuse_margin(model, tok, task, task.problems("hard_heldout", sub.heldout_problems, 0))


def choose_copy_rate(cfg) -> dict:
    """Step 1: each copy rate's switch base, in order, until one meets the reuse gate."""
    tried = []
    for c in COPY_RATES:
        try:
            sub = setting_config(cfg, "same", c)
        except calibration.BaseTooWeak as e:  # a base that cannot reach the regime's pass rate: the rate fails
            tried.append({"copy_rate": c, "error": str(e), "ok": False})
            continue
        with deadlined(pipeline.base_config(sub.work / "base", sub).task()) as task:
            gate = gates.reuse(reuse_margin(sub, task), control=False)
        tried.append({"copy_rate": c, "pretrain_steps": sub.pretrain_steps, **gate})
        if gate["ok"]:
            return {"tried": tried, "copy_rate": c}
    return {"tried": tried, "copy_rate": None}


def copy_rate(cfg) -> dict:
    """Step 1, decided once in the work folder and read back by every later bench (§4 and §5 alike), so that
    the bases of the rates that failed need not be kept and a base pretrained again on another CPU cannot
    move the choice."""
    key = {"bench": bench_key(cfg), "shape": SHAPE, "rates": COPY_RATES, "band": gates.REUSE_BAND}
    return pipeline.cached(cfg.work / "reuse_copy_rate.json", key, lambda: choose_copy_rate(cfg))


def setting_gates(setting: Setting, control: bool) -> dict:
    """Step 3 at one setting: the map's gates from the base, jump and reuse, all before any method runs."""
    base, tok, task = setting.base, setting.tok, setting.task
    unprefixed = float(exact.problem_pass1(base, tok, task, setting.train_set).mean())
    after80 = float(exact.after_prefix(base, tok, task, setting.train_set, 0.8).mean())
    margin = exact.reuse_margin(base, tok, task, setting.heldout)
    return {**setting.base_gates(), "jump": gates.jump(after80, unprefixed), "reuse": gates.reuse(margin, control)}


def meets(measured: dict, control: bool) -> bool:
    """Whether a setting's gates let the methods run: every gate, but at the control the jump and, of
    reachability, the 80 % prefix's success are reported, not required (its expected yield still is).

    Why (docs/last_word.md §4, changed after the gates were measured, before any method ran): the control's
    recurrence is a lookup after the cut that nothing before it determines, guessed at about the rare steps'
    rate (0.2, §4's sizing), so its success after a prefix past the first uses is about 0.2 times that of
    the steps around it, below those two gates' 0.2 by construction."""
    for name, g in measured.items():
        if control and name == "jump":
            continue
        if control and name == "reachable":
            if g["expected_yield"] < g["min_yield"]:
                return False
            continue
        if not g["ok"]:
            return False
    return True


def run_reuse(cfg, chosen: dict) -> dict:
    """cfg: a resolved BenchConfig; chosen: §1's values at one class (`comparison.Setting.tune_all`)."""
    copy = copy_rate(cfg)
    out = {"copy_rate": copy, "chosen": chosen, "settings": {}}
    if copy["copy_rate"] is None:
        return out
    with ExitStack() as pools:  # both settings' verifier pools open until both have run
        settings = {}
        for name, operands in (("switch", "same"), ("control", "fresh")):
            try:
                sub = setting_config(cfg, operands, copy["copy_rate"])
            except calibration.BaseTooWeak as e:  # the control's base outside the regime: nothing runs
                out["gates"] = {name: {"calibration": {"ok": False, "error": str(e)}}}
                return out
            settings[name] = Setting(sub, pools.enter_context(deadlined(pipeline.base_config(sub.work / "base",
                                                                                              sub).task())))
        measured = {name: setting_gates(s, control=name == "control") for name, s in settings.items()}
        out["gates"] = measured
        if not all(meets(m, control=name == "control") for name, m in measured.items()):
            return out  # a setting outside its gates is reported, and no method runs on it
        for name, s in settings.items():
            out["settings"][name] = s.report(chosen, strategy=True, gates=measured[name])
    return out
