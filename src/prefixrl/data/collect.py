"""`prefixrl collect`: rejection sampling with the base model (paper §3.2), and trace import.

Per hard problem, sample in rounds until the first verified-correct response or the cap; keep that one
trace, token-exact, with what it cost. Every sample counts in the FLOPs ledger, including those spent on
problems that were never solved: that compute is the price PrefixRL is charged in comparisons.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from prefixrl.data.prompt import (
    decode_response,
    encode_response,
    render_prompt,
    tokenizer_fingerprint,
)
from prefixrl.data.tasks.base import Problem, Task, Verdict
from prefixrl.data.traces import Trace
from prefixrl.data.verifier import verify_all
from prefixrl.io.errors import BadInput
from prefixrl.io.store import read_jsonl
from prefixrl.rollout.limits import check_text
from prefixrl.rollout.engine import Engine, SamplingParams
from prefixrl.rollout.flops import Ledger
from prefixrl.rollout.seeds import derive


@dataclass
class Collection:
    traces: list[Trace]
    samples: dict[str, int]  # problem id -> samples drawn (solved or not)
    flops: dict[str, float]  # problem id -> FLOPs spent
    ledger: Ledger = field(default_factory=Ledger)
    rounds: int = 0  # rounds completed; round r samples with seed (seed, r), so a resumed run continues exactly

    def summary(self) -> dict:
        return {"problems": len(self.samples), "solved": len(self.traces), "samples": sum(self.samples.values()),
                "flops": sum(self.flops.values())}


def rejection_sample(
    engine: Engine, tokenizer, task: Task, problems: list[Problem], params: SamplingParams, source: str,
    cap: int = 1024, per_round: int = 32, seed: int = 0, progress: bool = True,
    resume_from: Collection | None = None, on_round: Callable[[Collection, bool], None] | None = None,
) -> Collection:
    """Sample `per_round` responses per unsolved problem per round, until solved or `cap` samples.

    `on_round(collection, finished)` runs after every round (the CLI saves the store there); a
    collection saved that way, passed back as `resume_from`, continues as if never interrupted.
    """
    if cap < 1 or per_round < 1:
        raise BadInput("collect: cap and per_round must be >= 1")
    fingerprint = tokenizer_fingerprint(tokenizer)
    col = resume_from or Collection([], {p.id: 0 for p in problems}, {p.id: 0.0 for p in problems})
    solved = {t.problem_id for t in col.traces}
    open_ = [p for p in problems if p.id not in solved and col.samples[p.id] < cap]
    bar = tqdm(total=len(problems), initial=len(solved), desc="collect (solved)", disable=not progress)
    while open_:
        n = min(per_round, cap - col.samples[open_[0].id])  # all open problems have drawn the same count
        prompts = [render_prompt(tokenizer, p.question) for p in open_]
        gens = engine.generate(prompts, n, params, seed=derive(seed, col.rounds))
        col.ledger.add("collect/prefill", gens.prefill_flops)
        col.ledger.add("collect/decode", gens.decode_flops)
        per_prompt = [len(pr) for pr in prompts]
        round_tokens = _round_tokens(per_prompt, gens)
        verdicts = iter(verify_all(task, [(p, decode_response(tokenizer, s.tokens))
                                          for p, group in zip(open_, gens.samples) for s in group]))
        still_open = []
        for p, plen, group in zip(open_, per_prompt, gens.samples):
            # This problem's share of the round's FLOPs, in proportion to its prompt and decoded tokens.
            tokens = plen * len(group) + sum(len(s.tokens) for s in group)
            col.samples[p.id] += len(group)
            col.flops[p.id] += gens.flops * tokens / max(1, round_tokens)
            correct = [s for s in group if next(verdicts) is Verdict.CORRECT]
            if correct:
                hit = correct[0]
                ids = hit.tokens[:-1] if hit.tokens and hit.tokens[-1] == tokenizer.eos_token_id else hit.tokens
                col.traces.append(Trace(p.id, p.question, p.answer, decode_response(tokenizer, ids), ids, fingerprint,
                                        source, params.temperature, params.top_p, col.samples[p.id], col.flops[p.id]))
                bar.update(1)
            elif col.samples[p.id] < cap:
                still_open.append(p)
        open_ = still_open
        col.rounds += 1
        bar.set_postfix(round=col.rounds, open=len(open_))
        if on_round is not None:
            on_round(col, not open_)
    bar.close()
    return col


def _round_tokens(per_prompt: list[int], gens) -> int:
    return sum(plen * len(g) + sum(len(s.tokens) for s in g) for plen, g in zip(per_prompt, gens.samples))


def import_traces(path: str | Path, task: Task, tokenizer, problems: list[Problem]) -> tuple[list[Trace], list[str]]:
    """Traces made elsewhere: a JSONL of {"problem_id", "trace"} (text). Tokenised with the policy's
    tokenizer and re-verified; rows that fail verification are reported and skipped. A file usually
    covers a whole dataset, so rows for problems outside `problems` are skipped and reported too; a file
    with no row for any of them is an error (wrong file, or ids of another task)."""
    path = Path(path)
    by_id = {p.id: p for p in problems}
    fingerprint = tokenizer_fingerprint(tokenizer)
    traces, rejected, outside, first = [], [], [], {}
    for where, row in read_jsonl(path):
        for name in ("problem_id", "trace"):
            if not isinstance(row, dict) or not isinstance(row.get(name), str) or not row[name]:
                raise BadInput(f"{path}: {where}: field {name}: expected a non-empty string")
            check_text(row[name], f"{path}: {where}: field {name}")
        if row["problem_id"] in first:  # a store holds one trace per problem (paper §3.2: the first success)
            raise BadInput(f"{path}: {where}: field problem_id: {row['problem_id']!r} is named again (first at "
                           f"{first[row['problem_id']]}); give one trace per problem")
        first[row["problem_id"]] = where
        if row["problem_id"] not in by_id:
            outside.append((where, row["problem_id"]))
            continue
        p = by_id[row["problem_id"]]
        ids = encode_response(tokenizer, row["trace"], eos=False)
        text = decode_response(tokenizer, ids)
        if text != row["trace"]:  # the tokenizer dropped or changed characters: training on it would lie
            at = next((j for j, (a, b) in enumerate(zip(text, row["trace"])) if a != b), min(len(text), len(row["trace"])))
            raise BadInput(f"{path}: {where}: field trace: the policy's tokenizer cannot represent it exactly "
                           f"(first difference at character {at}: {row['trace'][at:at + 10]!r})")
        if task.verify(p, text) is not Verdict.CORRECT:
            rejected.append(f"{path}: {where}: trace for {p.id} fails verification")
            continue
        traces.append(Trace(p.id, p.question, p.answer, text, ids, fingerprint, f"import:{path.name}", 0.0, 0.0, 1, 0.0))
    if outside and not traces and not rejected:
        where, pid = outside[0]
        raise BadInput(f"{path}: {where}: field problem_id: no row is for one of the {len(problems)} selected "
                       f"problems (this one is {pid!r}; ids look like {problems[0].id!r})")
    if outside:
        rejected.append(f"{path}: {len(outside)} row(s) for problems outside the {len(problems)} selected "
                        f"(--problems, --data-seed) skipped, the first at {outside[0][0]} ({outside[0][1]!r})")
    return traces, rejected
