"""The training pool (paper Eq. 3.1) and how it changes during a run: which prefix a drawn problem gets,
and which traces the run adds to it.

Which prefix (`--prefix-schedule`):
- **fixed**, the paper's rule (§3.3): each prefixed prompt is one of the stored prefixes (3 cuts per
  trace, drawn once from [0.4, 0.8] of its tokens), chosen uniformly; nothing adapts.
- **adaptive**, beyond the paper (docs/choices.md): each problem with a trace has a *ladder* of cuts of
  that trace, from no prefix up to 7/8 of it, and stands on one rung. It starts on the longest. After
  each group sampled on its rung, the rung's running success is updated; above target + band the
  problem steps one rung shorter, below target − band one longer. Success rises with the prefix's
  length, so the cut whose success is nearest the target always lies in the direction of the step: this
  is the local form of "the cut nearest the target". The target defaults to 0.5, where p(1 − p), a
  group's chance of carrying any signal, peaks. As the policy improves, a problem walks down to no prefix.

Harvest (`--harvest`, beyond the paper): every verified-correct on-policy sample of a plain (unprefixed)
problem that has no trace yet becomes its trace. It is free: its sampling FLOPs are already in the
ledger. Its prefixes, cut by the schedule's own rule, join the pool from the next step on. The paper
calls rejection sampling with the base model a self-improvement loop but collects once; this reuses the
successes that on-policy RL finds anyway.

Re-collect (`--recollect-every N`, beyond the paper): every N steps, rejection sampling with the
*current* policy, at most `--recollect-cap` samples each, on the plain problems still without a trace.
Unlike harvesting it costs FLOPs, all charged to the run's ledger (recollect/). A trace it finds joins
the pool exactly like a harvested one. Both kinds are kept in order with their provenance (the method
and step that produced them: `harvest:prefixrl@step12`, `recollect:prefixrl@step40`).

Both are part of the checkpoint (`state` / `restore`), so a resumed run is bit-identical. Draws stay a
function of (seed, step) given that state.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from prefixrl.data.prefixes import Prefix, PrefixedPrompt, answer_safe_cut, cut_prefixes
from prefixrl.data.prompt import decode_response, tokenizer_fingerprint
from prefixrl.data.tasks.base import Problem, Task, Verdict
from prefixrl.data.traces import Trace
from prefixrl.rl.settings import SCHEDULES

# cut fractions logged per step (adaptive): none, short, the paper's band, long
BANDS = ((0.0, 0.0), (0.0, 0.4), (0.4, 0.8), (0.8, 1.0))
EMA = 0.5  # weight of the newest group in a rung's running success


@dataclass
class Ladder:
    """One problem's cuts under the adaptive schedule, and where it stands."""

    problem: Problem
    cuts: list[int]  # increasing token counts of the trace kept; cuts[0] == 0 (no prefix)
    token_ids: list[int]  # the trace
    at: int  # the rung it stands on
    success: float | None = None  # running success on that rung since it got there

    @property
    def fraction(self) -> float:
        return self.cuts[self.at] / len(self.token_ids)

    def observe(self, rate: float, target: float, band: float) -> None:
        """One group's success rate on the current rung; step one rung toward the target if it is out of band.
        A new rung starts without an estimate: success measured on it earlier is stale by now."""
        self.success = rate if self.success is None else (1 - EMA) * self.success + EMA * rate
        if self.success > target + band and self.at > 0:
            self.at, self.success = self.at - 1, None
        elif self.success < target - band and self.at < len(self.cuts) - 1:
            self.at, self.success = self.at + 1, None


def ladder_of(trace: Trace, task: Task, tokenizer, rungs: int) -> Ladder:
    """No prefix, then cuts at 1/rungs … (rungs−1)/rungs of the trace's tokens, each moved back before the
    final answer (`answer_safe_cut`); equal cuts of a short trace are kept once."""
    ids = list(trace.token_ids)
    cuts = sorted({0} | {answer_safe_cut(task, tokenizer, ids, int(j * len(ids) / rungs)) for j in range(1, rungs)})
    return Ladder(trace.problem, cuts, ids, at=len(cuts) - 1)


class Pool:
    """The plain problems, the prefixes cut from correct traces, and (with the options above) the
    adaptive ladders and the traces the run found itself (`harvested`: harvested and re-collected ones,
    in order). `draw` and `observe` are the step's two calls; the loop adds re-collected traces with `add`."""

    def __init__(self, unprefixed: list[Problem], prefixed: list[Prefix], traces: list[Trace] = (),
                 schedule: str = "fixed", harvest: bool = False, task: Task | None = None, tokenizer=None,
                 target: float = 0.5, band: float = 0.25, rungs: int = 8, seed: int = 0, recollect: bool = False):
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown prefix schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
        self.unprefixed, self.prefixed = list(unprefixed), list(prefixed)
        self.schedule, self.harvest, self.task, self.tokenizer = schedule, harvest, task, tokenizer
        self.recollects = recollect
        self.target, self.band, self.rungs, self.seed = target, band, rungs, seed
        self.ladders: dict[str, Ladder] = {}
        self.harvested: list[Trace] = []
        self.tries: dict[str, int] = {}  # harvest: on-policy samples drawn per untraced problem so far
        if schedule == "adaptive":
            for t in traces:
                self.ladders.setdefault(t.problem_id, ladder_of(t, task, tokenizer, rungs))
        self.traced = {p.problem_id for p in self.prefixed} | {t.problem_id for t in traces}

    def draw(self, tokenizer, share: float, size: int, seed: int, step: int) -> list[PrefixedPrompt]:
        """The step's prompts: round(share·size) from the prefix side, the rest plain problems, each side
        sampled without replacement by a generator seeded with (seed, step). Fixed: stored prefixes;
        adaptive: problems with a ladder, each on its current rung."""
        rng = random.Random(f"batch:{seed}:{step}")
        side = self.prefixed if self.schedule == "fixed" else list(self.ladders.values())
        n_pre = round(share * size) if side else 0
        chosen = rng.sample(side, min(n_pre, len(side)))
        if self.schedule == "fixed":
            items = [PrefixedPrompt.of(tokenizer, p.problem, p.prefix_ids, p.cut / p.trace_len) for p in chosen]
        else:
            items = [PrefixedPrompt.of(tokenizer, lad.problem, lad.token_ids[: lad.cuts[lad.at]], lad.fraction)
                     for lad in chosen]
        items += [PrefixedPrompt.of(tokenizer, p) for p in rng.sample(self.unprefixed, min(size - len(items),
                                                                                          len(self.unprefixed)))]
        return items

    def observe(self, step: int, prompts: list[PrefixedPrompt], completions: list[list[list[int]]],
                verdicts: list[list[Verdict]], eos_id: int, temperature: float, top_p: float, source: str) -> None:
        """What the step's on-policy groups say: the ladders' success on their rungs, and harvested traces.
        completions / verdicts: per prompt, its on-policy samples only (never an off-policy trace)."""
        for prompt, ids, vs in zip(prompts, completions, verdicts):
            pid = prompt.problem.id
            if prompt.fraction is not None and pid in self.ladders:
                self.ladders[pid].observe(sum(v is Verdict.CORRECT for v in vs) / len(vs), self.target, self.band)
            if self.harvest and not prompt.prefixed and pid not in self.traced:
                before = self.tries.get(pid, 0)
                self.tries[pid] = before + len(vs)
                first = next((i for i, v in enumerate(vs) if v is Verdict.CORRECT), None)
                if first is not None:  # samples drawn for it up to and including the success
                    self.add(self._trace(prompt.problem, ids[first], before + first + 1, eos_id, temperature, top_p,
                                         f"{source}@step{step}"))

    def _trace(self, problem: Problem, completion: list[int], samples: int, eos_id: int, temperature: float,
               top_p: float, source: str) -> Trace:
        ids = list(completion[:-1] if completion and completion[-1] == eos_id else completion)
        return Trace(problem.id, problem.question, problem.answer, decode_response(self.tokenizer, ids), ids,
                     tokenizer_fingerprint(self.tokenizer), source, temperature, top_p, samples,
                     flops=0.0)  # its sampling FLOPs are in the run's ledger already

    def untraced(self) -> list[Problem]:
        """The plain problems still without a trace (re-collection samples these: `prefixrl.rl.train.recollect`)."""
        return [p for p in self.unprefixed if p.id not in self.traced]

    def add(self, trace: Trace) -> None:
        """A harvested or re-collected trace joins the pool: its prefixes by the schedule's rule (the paper's
        cuts, seeded by the run's seed, or a ladder)."""
        self.harvested.append(trace)
        self.traced.add(trace.problem_id)
        if self.schedule == "fixed":
            self.prefixed += cut_prefixes([trace], self.task, self.tokenizer, seed=self.seed)
        else:
            self.ladders[trace.problem_id] = ladder_of(trace, self.task, self.tokenizer, self.rungs)

    def log(self) -> dict:
        """Per step: how many problems have a trace, how many were harvested (and re-collected); adaptive: how
        many problems stand at a cut in each band (none, (0, 0.4), [0.4, 0.8), [0.8, 1))."""
        recollected = sum(t.source.startswith("recollect:") for t in self.harvested)
        out = {"traced": len(self.traced), "harvested": len(self.harvested) - recollected}
        if self.recollects:
            out["recollected"] = recollected
        if self.schedule == "adaptive":
            fr = [lad.fraction for lad in self.ladders.values()]
            out["cut_bands"] = [sum(f == 0 for f in fr)] + [sum(lo <= f < hi and f > 0 for f in fr)
                                                            for lo, hi in BANDS[1:]]
            out["cut_mean"] = sum(fr) / len(fr) if fr else None
        return out

    def state(self) -> dict:
        """What a checkpoint keeps: the harvested traces in order, the tries, each ladder's rung and estimate."""
        return {"harvested": [asdict(t) for t in self.harvested], "tries": dict(self.tries),
                "ladders": {pid: [lad.at, lad.success] for pid, lad in self.ladders.items()}}

    def restore(self, state: dict) -> None:
        """Back to a checkpoint's state (the pool was built from the same data by the same rule)."""
        for row in state.get("harvested", []):
            self.add(Trace(**row))
        self.tries = dict(state.get("tries", {}))
        for pid, (at, success) in state.get("ladders", {}).items():
            self.ladders[pid].at, self.ladders[pid].success = at, success
