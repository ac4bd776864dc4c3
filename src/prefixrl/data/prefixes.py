"""Prefixes of correct traces (paper §3.3–3.4) and the prefixed prompts built from them.

Default rule (the paper's): per trace, k = 3 cut fractions drawn uniformly from [0.4, 0.8] of the
trace's tokens, fixed once from (seed, problem id) and stored. A cut is a token index into the trace's
own ids; a prefixed prompt is exactly `render_prompt(question) + prefix_ids`, never re-tokenised, and
the prefix is the start of the assistant's response, not a hint in the question. A prefix never holds
the final answer: a cut that would reach it is moved back to just before it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from prefixrl.data.prompt import check_rendering, decode_response, render_prompt, rendering_record, tokenizer_fingerprint
from prefixrl.data.tasks import check_same_task, task_identity
from prefixrl.data.tasks.base import Problem, Task
from prefixrl.data.traces import Trace
from prefixrl.io.errors import BadInput
from prefixrl.io.store import read_store, rows_of, write_records

PREFIX_SCHEMA = pa.schema([
    ("problem_id", pa.string()),
    ("question", pa.string()),
    ("answer", pa.string()),
    ("prefix_ids", pa.list_(pa.int32())),
    ("fraction", pa.float64()),
    ("cut", pa.int64()),
    ("trace_len", pa.int64()),
])


@dataclass(frozen=True)
class Prefix:
    problem_id: str
    question: str
    answer: str
    prefix_ids: list[int]  # trace.token_ids[:cut]
    fraction: float  # the drawn fraction (before any move away from the answer)
    cut: int  # tokens kept
    trace_len: int  # tokens in the trace

    @property
    def problem(self) -> Problem:
        return Problem(self.problem_id, "", self.question, self.answer)


def answer_safe_cut(task: Task, tokenizer, ids: list[int], cut: int) -> int:
    """The largest cut' <= cut whose decoded prefix ends before the final answer starts."""
    start = task.answer_start(decode_response(tokenizer, ids))
    if start is None:
        return cut
    lo, hi = 0, cut  # decoded length grows with the cut, so binary-search the last safe cut
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(decode_response(tokenizer, ids[:mid])) <= start:
            lo = mid
        else:
            hi = mid - 1
    return lo


def whitespace_safe_cut(tokenizer, ids: list[int], cut: int) -> int:
    """The largest cut' <= cut that ends right after whitespace and that the tokenizer reproduces:
    encode(decode(ids[:cut'])) == ids[:cut']. Used for traces that came through text from another
    tokenizer, where only such boundaries are the same in both id spaces."""
    while cut > 0:
        text = decode_response(tokenizer, ids[:cut])
        if text[-1:].isspace() and tokenizer.encode(text, add_special_tokens=False) == ids[:cut]:
            return cut
        cut -= 1
    return 0


def check_cut_rule(k: int, low: float, high: float) -> None:
    if not 0.0 <= low <= high <= 1.0:
        raise BadInput(f"prefix fractions need 0 <= low <= high <= 1, got [{low}, {high}]")
    if k < 1:
        raise BadInput("need at least one prefix per trace (k >= 1)")


def cut_prefixes(
    traces: list[Trace], task: Task, tokenizer, k: int = 3, low: float = 0.4, high: float = 0.8, seed: int = 0,
    boundary: str = "token",
) -> list[Prefix]:
    """k prefixes per trace. boundary="token" (same-model traces): any token index; "whitespace"
    (traces from another tokenizer, via text): moved back to the last whitespace boundary."""
    if boundary not in ("token", "whitespace"):
        raise BadInput(f"prefix boundary must be token or whitespace, got {boundary!r}")
    check_cut_rule(k, low, high)
    out = []
    for t in traces:
        rng = random.Random(f"prefix:{seed}:{t.problem_id}")  # independent of trace order
        for _ in range(k):
            f = rng.uniform(low, high)
            cut = answer_safe_cut(task, tokenizer, t.token_ids, int(f * len(t.token_ids)))
            if boundary == "whitespace":
                cut = whitespace_safe_cut(tokenizer, t.token_ids, cut)
            out.append(Prefix(t.problem_id, t.question, t.answer, t.token_ids[:cut], f, cut, len(t.token_ids)))
    return out


@dataclass(frozen=True)
class PrefixedPrompt:
    """A problem as the policy sees it: the rendered question, then the prefix ids as the start of the
    assistant's own response (paper §3.4; empty for an unprefixed problem). Built once, token-exact,
    never re-tokenised. The verifier scores the whole response, prefix + completion (§3.6)."""

    problem: Problem
    ids: list[int]  # render_prompt(question) + prefix_ids: what the engine is given
    prefix_ids: list[int]
    fraction: float | None = None  # drawn from the prefix side of the pool: the share of its trace given (0: none)

    @staticmethod
    def of(tokenizer, problem: Problem, prefix_ids=(), fraction: float | None = None) -> PrefixedPrompt:
        prefix = list(prefix_ids)
        return PrefixedPrompt(problem, render_prompt(tokenizer, problem.question) + prefix, prefix, fraction)

    @property
    def prefixed(self) -> bool:
        return bool(self.prefix_ids)

    def response(self, tokenizer, completion: list[int]) -> str:
        """The text the verifier scores: prefix + completion, decoded together."""
        return decode_response(tokenizer, self.prefix_ids + list(completion))


def save_prefixes(path: str | Path, prefixes: list[Prefix], tokenizer, task=None) -> None:
    """Atomically, with the fingerprint of the tokenizer the ids belong to, how their prompts are rendered and
    (with `task`) the task they are of (all checked by `load_prefixes`)."""
    meta = {"tokenizer": tokenizer_fingerprint(tokenizer), "rendering": rendering_record(tokenizer)}
    if task is not None and task_identity(task) is not None:
        meta["task"] = task_identity(task)
    write_records(path, rows_of(prefixes), PREFIX_SCHEMA, meta)


def load_prefixes(path: str | Path, task: Task, tokenizer, allow_rerender: bool = False) -> list[Prefix]:
    """Every row checked (file, row, field), after the store's tokenizer is checked against the policy's:
    ids from another tokenizer would load as valid ids and decode to garbage."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    rows, meta = read_store(path, PREFIX_SCHEMA)
    check_same_task(meta.get("task"), task, str(path))
    stored, ours = meta.get("tokenizer"), tokenizer_fingerprint(tokenizer)
    if stored != ours:
        raise BadInput(f"{path}: prefix ids are from tokenizer {stored or '(none recorded)'}, the policy's is {ours}; "
                       "cut them again with `prefixrl prefixes` from traces of this policy's tokenizer")
    check_rendering(meta.get("rendering"), tokenizer, str(path), allow_rerender)
    out = []
    for i, row in enumerate(rows):
        ids = row["prefix_ids"]
        if not isinstance(ids, list) or not all(isinstance(t, int) and 0 <= t < len(tokenizer) for t in ids):
            raise BadInput(f"{path}: row {i}: field prefix_ids: expected token ids of the policy's tokenizer")
        for name in ("cut", "trace_len"):
            if not isinstance(row[name], int) or row[name] < 0:
                raise BadInput(f"{path}: row {i}: field {name}: expected a non-negative integer")
        if row["cut"] != len(ids):
            raise BadInput(f"{path}: row {i}: field cut: {row['cut']} but prefix_ids has {len(ids)} tokens")
        if row["cut"] > row["trace_len"]:
            raise BadInput(f"{path}: row {i}: field cut: prefix ({row['cut']}) longer than its trace ({row['trace_len']})")
        p = Prefix(**row)
        text = decode_response(tokenizer, ids)
        if task.extract_answer(text) is not None:
            raise BadInput(f"{path}: row {i}: field prefix_ids: the prefix already contains the final answer")
        out.append(p)
    return out
