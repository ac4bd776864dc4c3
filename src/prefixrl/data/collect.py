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
from prefixrl.rollout.engine import Engine, SamplingParams
from prefixrl.rollout.flops import Ledger
from prefixrl.rollout.limits import check_text
from prefixrl.rollout.seeds import derive, problem_seed


@dataclass
class Collection:
    traces: list[Trace]  # in the order found: by round, then by the problems' order
    samples: dict[str, int]  # problem id -> samples drawn, solved or not (its attempts; the store keeps them)
    flops: dict[str, float]  # problem id -> FLOPs spent
    ledger: Ledger = field(default_factory=Ledger)

    def summary(self) -> dict:
        return {"problems": len(self.samples), "solved": len(self.traces), "samples": sum(self.samples.values()),
                "flops": sum(self.flops.values())}


def rejection_sample(
    engine: Engine, tokenizer, task: Task, problems: list[Problem], params: SamplingParams, source: str,
    cap: int = 1024, per_round: int = 32, seed: int = 0, chunk: int = 64, progress: bool = True,
    resume_from: Collection | None = None, on_chunk: Callable[[Collection, bool], None] | None = None,
) -> Collection:
    """Sample `per_round` responses per unsolved problem per round, until solved or `cap` samples.

    A round goes to the engine `chunk` problems per request, and `on_chunk(collection, finished)` runs
    after each request (the CLI saves the store there), so a kill loses at most one request's samples; a
    collection saved that way, passed back as `resume_from`, continues as if never interrupted. A
    problem's request after `a` samples draws from the stream `problem_seed(seed, id, a)`, so what a
    problem draws, and what it costs, depend on nothing else: not its batch mates, the chunk size, the
    shard it is collected in (`prefixrl merge`), or a resume.
    """
    if cap < 1 or per_round < 1 or chunk < 1:
        raise BadInput("collect: cap, per_round and chunk must be >= 1")
    fingerprint = tokenizer_fingerprint(tokenizer)
    col = resume_from or Collection([], {p.id: 0 for p in problems}, {p.id: 0.0 for p in problems})
    solved = {t.problem_id for t in col.traces}
    bar = tqdm(total=len(problems), initial=len(solved), desc="collect (solved)", disable=not progress)
    while open_ := [p for p in problems if p.id not in solved and col.samples[p.id] < cap]:
        drawn = min(col.samples[p.id] for p in open_)  # the round in progress: its problems, in order
        batch = [p for p in open_ if col.samples[p.id] == drawn][:chunk]
        n = min(per_round, cap - drawn)
        prompts = [render_prompt(tokenizer, p.question) for p in batch]
        gens = engine.generate(prompts, n, params, seed=derive(seed, drawn),
                               seeds=[problem_seed(seed, p.id, drawn) for p in batch])
        col.ledger.add("collect/prefill", gens.prefill_flops)
        col.ledger.add("collect/decode", gens.decode_flops)
        # A problem's share of the request: the engine's prefill FLOPs per prompt token times its prompt,
        # its decode FLOPs per token times its decoded tokens (both exact multiples of 2N), so the share does
        # not depend on which problems shared the request.
        decoded = [sum(len(s.tokens) for s in group) for group in gens.samples]
        per_prefill = gens.prefill_flops / max(1, sum(len(pr) for pr in prompts))
        per_decode = gens.decode_flops / max(1, sum(decoded))
        verdicts = iter(verify_all(task, [(p, decode_response(tokenizer, s.tokens))
                                          for p, group in zip(batch, gens.samples) for s in group]))
        for p, prompt, group, tokens in zip(batch, prompts, gens.samples, decoded):
            col.samples[p.id] += len(group)
            col.flops[p.id] += per_prefill * len(prompt) + per_decode * tokens
            correct = [s for s in group if next(verdicts) is Verdict.CORRECT]
            if correct:
                hit = correct[0]
                ids = hit.tokens[:-1] if hit.tokens and hit.tokens[-1] == tokenizer.eos_token_id else hit.tokens
                col.traces.append(Trace(p.id, p.question, p.answer, decode_response(tokenizer, ids), ids, fingerprint,
                                        source, params.temperature, params.top_p, col.samples[p.id], col.flops[p.id]))
                solved.add(p.id)
                bar.update(1)
        bar.set_postfix(samples=drawn + n, open=len(open_) - sum(p.id in solved for p in batch))
        if on_chunk is not None:
            on_chunk(col, not any(p.id not in solved and col.samples[p.id] < cap for p in problems))
    bar.close()
    return col


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
