"""Correct off-policy traces (𝒟_off, paper §2): records, the Parquet trace store, re-verification.

A trace is kept token-exact (the ids the sampler produced, EOS excluded) with its provenance, so that
prefixes are cut from the very tokens that were sampled and the cost of finding it is never lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from prefixrl.data.prompt import check_rendering, decode_response, rendering_record, tokenizer_fingerprint
from prefixrl.data.tasks import check_same_task, task_identity
from prefixrl.data.tasks.base import Problem, Task, Verdict
from prefixrl.io.errors import BadInput
from prefixrl.io.store import read_meta, read_records, read_store, rows_of, write_records
from prefixrl.rollout.flops import Ledger

TRACE_SCHEMA = pa.schema([
    ("problem_id", pa.string()),
    ("question", pa.string()),
    ("answer", pa.string()),
    ("response", pa.string()),
    ("token_ids", pa.list_(pa.int32())),
    ("tokenizer", pa.string()),
    ("source", pa.string()),
    ("temperature", pa.float64()),
    ("top_p", pa.float64()),
    ("samples", pa.int64()),
    ("flops", pa.float64()),
])


@dataclass(frozen=True)
class Trace:
    problem_id: str
    question: str
    answer: str
    response: str  # decoded text of token_ids
    token_ids: list[int]  # the trace as sampled, EOS excluded
    tokenizer: str  # tokenizer fingerprint the ids belong to
    source: str  # model path, "import:<file>", or what found it in a run: "harvest:M@stepN", "recollect:M@stepN"
    temperature: float
    top_p: float
    samples: int  # samples drawn for this problem up to and including the success
    flops: float  # FLOPs of those samples

    @property
    def problem(self) -> Problem:
        return Problem(self.problem_id, "", self.question, self.answer)


def save_traces(path: str | Path, traces: list[Trace], meta: dict | None = None, tokenizer=None, task=None) -> None:
    """Atomically write the store; `meta` (JSON) travels in the file, e.g. the state of a collection, and
    with `tokenizer`, how its prompts were rendered (`prefixrl.data.prompt.rendering_record`), with `task`,
    the task its traces are of (`prefixrl.data.tasks.task_identity`): both are checked by `load_traces`."""
    if tokenizer is not None:
        meta = {**(meta or {}), "rendering": rendering_record(tokenizer)}
    if task is not None and task_identity(task) is not None:
        meta = {**(meta or {}), "task": task_identity(task)}
    write_records(path, rows_of(traces), TRACE_SCHEMA, meta)


def _check_row(path: Path, i: int, row: dict) -> None:
    for name in ("problem_id", "question", "answer", "response", "tokenizer", "source"):
        if not isinstance(row[name], str) or (name != "response" and not row[name]):
            raise BadInput(f"{path}: row {i}: field {name}: expected a non-empty string")
    ids = row["token_ids"]
    if not isinstance(ids, list) or not ids or not all(isinstance(t, int) and t >= 0 for t in ids):
        raise BadInput(f"{path}: row {i}: field token_ids: expected a non-empty list of token ids")
    for name in ("temperature", "top_p", "flops"):
        if not isinstance(row[name], float) or not math.isfinite(row[name]) or row[name] < 0:
            raise BadInput(f"{path}: row {i}: field {name}: expected a finite non-negative number")
    if not isinstance(row["samples"], int) or row["samples"] < 1:
        raise BadInput(f"{path}: row {i}: field samples: expected a positive integer")


def load_traces(path: str | Path, task: Task, tokenizer, allow_rerender: bool = False) -> tuple[list[Trace], list[str]]:
    """Load and re-verify every trace. Returns (valid traces, rejection messages).

    Malformed rows and ids from another tokenizer are errors (BadInput: file, row, field), and so is a store
    whose prompts were rendered otherwise than `tokenizer` renders them (unless `allow_rerender`); traces
    that are well-formed but fail re-verification are reported and excluded, never trained on.
    """
    path = Path(path)
    rows, meta = read_store(path, TRACE_SCHEMA)
    check_same_task(meta.get("task"), task, str(path))
    check_rendering(meta.get("rendering"), tokenizer, str(path), allow_rerender)
    fingerprint = tokenizer_fingerprint(tokenizer)
    vocab_size = len(tokenizer)
    seen: set[str] = set()
    traces, rejected = [], []
    for i, row in enumerate(rows):
        _check_row(path, i, row)
        if row["tokenizer"] != fingerprint:
            raise BadInput(
                f"{path}: row {i}: field tokenizer: trace ids are from tokenizer {row['tokenizer']}, the policy's "
                f"is {fingerprint}; re-import the traces as text (`prefixrl collect --import`)"
            )
        if max(row["token_ids"]) >= vocab_size:
            raise BadInput(f"{path}: row {i}: field token_ids: id beyond the tokenizer's vocabulary")
        if row["problem_id"] in seen:
            raise BadInput(f"{path}: row {i}: field problem_id: duplicate trace for {row['problem_id']}")
        seen.add(row["problem_id"])
        trace = Trace(**row)
        text = decode_response(tokenizer, trace.token_ids)
        if text != trace.response:
            rejected.append(f"{path}: row {i}: response text does not match its token ids")
            continue
        verdict = task.verify(trace.problem, text)
        if verdict is not Verdict.CORRECT:
            rejected.append(f"{path}: row {i}: trace for {trace.problem_id} fails re-verification ({verdict.value})")
            continue
        traces.append(trace)
    return traces, rejected


def transfer_traces(path: str | Path, task: Task, policy_tokenizer, source_tokenizer) -> tuple[list[Trace], list[str]]:
    """Traces sampled by another model family, moved into the policy's id space through text.

    Each trace is decoded with the tokenizer that produced it, re-encoded with the policy's and
    re-verified; its provenance and cost are kept. Cut prefixes of such traces at whitespace
    (`cut_prefixes(..., boundary="whitespace")`): a token-exact cut has no meaning across tokenizers.
    """
    path = Path(path)
    source_fp, policy_fp = tokenizer_fingerprint(source_tokenizer), tokenizer_fingerprint(policy_tokenizer)
    out, rejected = [], []
    for i, row in enumerate(read_records(path, TRACE_SCHEMA)):
        _check_row(path, i, row)
        if row["tokenizer"] != source_fp:
            raise BadInput(f"{path}: row {i}: field tokenizer: not the source tokenizer's ids ({row['tokenizer']})")
        text = decode_response(source_tokenizer, row["token_ids"])
        ids = policy_tokenizer.encode(text, add_special_tokens=False)
        if decode_response(policy_tokenizer, ids) != text:
            rejected.append(f"{path}: row {i}: the policy's tokenizer cannot represent the trace text")
            continue
        trace = Trace(**{**row, "response": text, "token_ids": ids, "tokenizer": policy_fp,
                         "source": f"{row['source']} (via text)"})
        if task.verify(trace.problem, text) is not Verdict.CORRECT:
            rejected.append(f"{path}: row {i}: trace for {trace.problem_id} fails re-verification")
            continue
        out.append(trace)
    return out, rejected


def charged_flops(store: Path) -> float:
    """The FLOPs a trace store cost to make: its collection's ledger (0 for imported traces)."""
    return Ledger.from_dict((read_meta(store).get("collection") or {}).get("ledger", {})).total()
