"""`prefixrl bench in-context`: the paper's in-context experiment (§4.3, App. E.2) in miniature, by the
rules docs/last_word.md §5 fixes before its runs.

The paper runs RL on a problem P2 with a related P3 and P3's full solution in context, as the prefix, and
then finds P3 solved without context (60 %, against 18 % for standard RL on P2). Here, in the reuse
switch's task (`prefixrl_lab.reuse`: its copy rate and base): P2 is a hard problem and P3 is P2's chain
through its last first use, a problem of its own, so P3's question starts P2's and P3's worked steps start
P2's response. P2's last step looks up again an operand P3 looked up: P2's completion uses what P3's
solution reveals. PrefixRL trains on P2 with that prefix on every prompt; standard RL on P2 alone, at the
same FLOPs. Measured, exactly, before and after: P2 alone, P3 alone (never trained), the class's
hard-heldout problems and rare-step knowledge at their first uses.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import torch

from prefixrl.data.prefixes import Prefix
from prefixrl.data.prompt import encode_response
from prefixrl.data.tasks.base import Problem
from prefixrl.data.tasks.chain import Chain
from prefixrl.data.verifier import deadlined
from prefixrl.rl import exact
from prefixrl.rl.settings import RLSettings
from prefixrl.rollout.model import load
from prefixrl_lab import pipeline
from prefixrl_lab.last_word import one_class_choice
from prefixrl_lab.paper import bench_key
from prefixrl_lab.reports import save
from prefixrl_lab.reuse import copy_rate, setting_config
from prefixrl_lab.stopwatch import WallClock

SCAN = 256  # hard-train problems searched, in order, for the first pair that meets the gates
STEPS = 100  # PrefixRL's steps on P2 (the paper's 100); standard RL then spends the same FLOPs
# the gates: P2 and P3 alone "about 0" (1e-2: a nested P3 is easier than a calibrated P2 by its recurrence's
# factor, so 1e-3 could never pass; docs/last_word.md §5), and P2 after P3's worked steps
P_ALONE_MAX, WITH_PREFIX_MIN = 1e-2, 0.2


def pair_of(task, p2: Problem) -> tuple[Problem, str]:
    """P3 (P2's chain through its last first use, as a problem of its own) and P3's worked steps: its running
    values, each followed by a space, the start of P2's reference response (P3's answer marker is left out:
    the answer is P2's to write)."""
    chain = Chain.parse(p2.question)
    p3 = Chain(chain.start, chain.steps[: task.rare_block.stop])
    return (Problem(f"{p2.id}-p3", p2.split, p3.question(task.slots), str(p3.values[-1]), dict(p2.meta)),
            "".join(f"{v} " for v in p3.values))


def measure(model, tok, task, p2: Problem, p3: Problem, steps: str, heldout: list[Problem]) -> dict:
    """Exact pass@1 of P2 alone, P3 alone, P2 after P3's worked steps, the class's hard-heldout problems,
    and rare-step knowledge at their first uses."""
    alone = exact.problem_pass1(model, tok, task, [p2, p3]).tolist()
    after = exact.teacher_force(model, tok, task, [p2], prefixes=[steps]).pass1().item()
    return {"p2": alone[0], "p3": alone[1], "p2_after_p3": after,
            "heldout": float(exact.problem_pass1(model, tok, task, heldout).mean()),
            "first_use_knowledge": exact.rare_knowledge(model, tok, task, heldout)}


def find_pair(model, tok, task, candidates: list[Problem]) -> dict | None:
    """The first candidate whose P2 and P3 alone are at most P_ALONE_MAX and whose P2 after P3's worked steps
    is at least WITH_PREFIX_MIN (exact, on the base), with its figures; None if no candidate is."""
    pairs = [pair_of(task, p2) for p2 in candidates]
    p2s = exact.problem_pass1(model, tok, task, candidates).tolist()
    p3s = exact.problem_pass1(model, tok, task, [p3 for p3, _ in pairs]).tolist()
    after = exact.teacher_force(model, tok, task, candidates, prefixes=[s for _, s in pairs]).pass1().tolist()
    for i, (p2, (p3, steps)) in enumerate(zip(candidates, pairs)):
        if p2s[i] <= P_ALONE_MAX and p3s[i] <= P_ALONE_MAX and after[i] >= WITH_PREFIX_MIN:
            return {"index": i, "p2": p2, "p3": p3, "steps": steps,
                    "gates": {"p2": p2s[i], "p3": p3s[i], "p2_after_p3": after[i], "scanned": i + 1}}
    return None


def run_in_context(cfg) -> dict:
    """cfg: a resolved BenchConfig (which = in-context); shares --work with `bench last-word`."""
    clock = WallClock(cfg.work, "in_context")
    copy = copy_rate(cfg)
    out = {"kind": "in-context", "copy_rate": copy, "config": json.loads(json.dumps(asdict(cfg), default=str)),
           "rules": {"scan": SCAN, "steps": STEPS, "alone_max": P_ALONE_MAX, "with_prefix_min": WITH_PREFIX_MIN},
           "torch_threads": torch.get_num_threads()}
    if copy["copy_rate"] is not None:
        sub = setting_config(cfg, "same", copy["copy_rate"])
        with deadlined(pipeline.base_config(sub.work / "base", sub).task()) as task:
            out.update(_run(cfg, sub, task, clock))
    out["seconds"] = clock.total()
    cfg.out.mkdir(parents=True, exist_ok=True)
    save(cfg.out / "in_context.json", out)
    clock.save()
    return out


def _run(cfg, sub, task, clock) -> dict:
    base, tok = load(sub.work / "base")
    pair = find_pair(base, tok, task, task.problems("hard_train", SCAN, 0))
    if pair is None:
        return {"pair": None}
    p2, p3, steps = pair["p2"], pair["p3"], pair["steps"]
    heldout = task.problems("hard_heldout", cfg.heldout_problems, 0)
    ids = encode_response(tok, steps, eos=False)
    trace_len = len(encode_response(tok, task.solution(p2), eos=False))
    prefix = Prefix(p2.id, p2.question, p2.answer, ids, len(ids) / trace_len, len(ids), trace_len)
    lr = one_class_choice(cfg)["lr"]
    runs = {"prefixrl": [], "rl": []}
    for seed in range(cfg.seeds):
        rl = RLSettings(max_new_tokens=task.max_response_tokens, eval_every=25, eval_problems=1, seed=seed)
        pre = replace(rl, method="prefixrl-only", steps=STEPS, lr=lr["prefixrl"])
        runs["prefixrl"].append(_one(cfg, sub, task, tok, pre, p2, p3, steps, prefix, heldout, seed, "prefixrl"))
        plain = replace(rl, method="rl", steps=100 * STEPS, flops_budget=runs["prefixrl"][-1]["flops"], lr=lr["rl"])
        runs["rl"].append(_one(cfg, sub, task, tok, plain, p2, p3, steps, prefix, heldout, seed, "rl"))
        clock.save()
    return {"pair": {"p2": asdict(p2), "p3": asdict(p3), "steps": steps, "gates": pair["gates"]},
            "base": measure(base, tok, task, p2, p3, steps, heldout), "lr": lr, "runs": runs,
            "pretrain_steps": sub.pretrain_steps}


def _one(cfg, sub, task, tok, settings: RLSettings, p2, p3, steps, prefix, heldout, seed: int, label: str) -> dict:
    folder = cfg.work / "in-context" / f"seed{seed}" / label

    def compute():
        policy, r = pipeline.run_method(folder, sub.work / "base", tok, task, settings, [p2], [prefix], 0.0,
                                        progress=cfg.progress)
        return {"seed": seed, "steps": r["steps"], "flops": r["curve"][-1]["flops"],
                **measure(policy, tok, task, p2, p3, steps, heldout)}

    key = pipeline.record_key(settings, 0.0, bench=bench_key(sub), base=pipeline.weights_digest(sub.work / "base"),
                              pair=[p2.question, steps],
                              heldout=[p.question for p in heldout])
    return pipeline.cached(folder / "bench_record.json", key, compute)
