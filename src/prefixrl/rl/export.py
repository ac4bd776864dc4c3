"""`prefixrl export`: the PrefixRL training pool as rows for TRL or verl (docs/trl.md, docs/verl.md).

PrefixRL's data is a pool of prefixed problems (a problem and the first tokens of a correct trace,
which the policy must continue inside its own assistant turn) mixed with unprefixed ones (paper §3,
3 prefixed : 1 unprefixed). Neither framework can start generation mid-turn by itself, so every row
carries the prefix *as token ids* (`prefix_ids`, empty for an unprefixed row) for the rollout hook to
append after the rendered prompt, plus its decoded text for reward functions, which score prefix +
completion. Token ids, not text: re-tokenising a cut can change it (docs/choices.md).

Every row also says where its cut lies: `cut` (prefix tokens) and `trace_tokens` (tokens in the trace it
was cut from; 0 for a problem without one). That is what a loop outside this trainer needs to adapt cuts
per problem. `ladder_pool` (`--ladder-rungs R`) writes every rung of each trace's ladder instead of the
paper's 3 cuts, for a curriculum sampler that moves each problem along its ladder the way `--prefix-schedule
adaptive` does (`prefixrl.rl.pool.Ladder` is that rule; docs/choices.md).

Formats:
* trl  — Parquet: prompt (chat messages), answer, problem_id, kind, prefix_ids, prefix_text, cut, trace_tokens.
* verl — Parquet in verl's RL schema: data_source, prompt, ability, reward_model {style, ground_truth},
  extra_info {index, problem_id, kind, prefix_ids, prefix_text, question, task, cut, trace_tokens}, and
  agent_name per row (`task` is the task's JSON spec, for `prefixrl.integrations.verl_reward.compute_score`).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from prefixrl.data.prefixes import Prefix
from prefixrl.data.prompt import Rendering, decode_response
from prefixrl.data.tasks.base import Problem, Task
from prefixrl.data.traces import Trace
from prefixrl.io.errors import BadInput
from prefixrl.io.store import atomic_write
from prefixrl.rl.pool import ladder_of

MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
TRL_SCHEMA = pa.schema([("prompt", MESSAGES), ("answer", pa.string()), ("problem_id", pa.string()), ("kind", pa.string()),
                        ("prefix_ids", pa.list_(pa.int32())), ("prefix_text", pa.string()), ("cut", pa.int32()),
                        ("trace_tokens", pa.int32()), ("prefixed_samples", pa.int32())])
VERL_SCHEMA = pa.schema([
    ("data_source", pa.string()), ("prompt", MESSAGES), ("ability", pa.string()),
    ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
    ("extra_info", pa.struct([("index", pa.int64()), ("problem_id", pa.string()), ("kind", pa.string()),
                              ("prefix_ids", pa.list_(pa.int32())), ("prefix_text", pa.string()),
                              ("question", pa.string()), ("task", pa.string()), ("cut", pa.int32()),
                              ("trace_tokens", pa.int32())])),
    ("agent_name", pa.string()),
])
PREFIXED_AGENT = "prefixrl_agent"  # verl agent loop that appends extra_info.prefix_ids (docs/verl.md)
PLAIN_AGENT = "single_turn_agent"  # verl's built-in single-turn loop


@dataclass(frozen=True)
class Row:
    problem_id: str
    question: str
    answer: str
    prefix_ids: list[int]
    prefix_text: str
    trace_tokens: int = 0  # tokens in the trace the prefix was cut from (0: no trace)

    @property
    def cut(self) -> int:
        return len(self.prefix_ids)

    @property
    def kind(self) -> str:
        return "prefixed" if self.prefix_ids else "unprefixed"


def training_pool(prefixes: list[Prefix], problems: list[Problem], tokenizer, mix: float, seed: int) -> list[Row]:
    """Every prefix once, plus unprefixed problems drawn (seeded, cycling through the set) so that the
    prefixed share of the pool is `mix`; shuffled. mix = 1 gives prefixrl-only, mix = 0 standard RL."""
    if not 0.0 <= mix <= 1.0:
        raise BadInput(f"mix must be in [0, 1], got {mix}")
    rng = random.Random(f"export:{seed}")
    rows = [Row(p.problem_id, p.question, p.answer, list(p.prefix_ids), decode_response(tokenizer, list(p.prefix_ids)),
                p.trace_len) for p in prefixes] if mix > 0 else []
    n_plain = len(problems) if mix == 0 else round(len(rows) * (1 - mix) / mix)
    if n_plain and not problems:
        raise BadInput("export: unprefixed rows need problems")
    order = []
    while len(order) < n_plain:
        order += rng.sample(problems, len(problems))
    rows += [Row(p.id, p.question, p.answer, [], "") for p in order[:n_plain]]
    rng.shuffle(rows)
    return rows


def ladder_pool(traces: list[Trace], problems: list[Problem], task: Task, tokenizer, rungs: int) -> list[Row]:
    """Every rung of each trace's ladder (`prefixrl.rl.pool.ladder_of`: no prefix, then answer-safe cuts at
    1/R … (R − 1)/R of its tokens), in order, then one unprefixed row per problem without a trace. The
    sampler that reads them decides what to draw, so no mix applies."""
    traced, rows = {t.problem_id for t in traces}, []
    for t in traces:
        lad = ladder_of(t, task, tokenizer, rungs)
        rows += [Row(t.problem_id, t.question, t.answer, lad.token_ids[:c],
                     decode_response(tokenizer, lad.token_ids[:c]), len(lad.token_ids)) for c in lad.cuts]
    return rows + [Row(p.id, p.question, p.answer, [], "") for p in problems if p.id not in traced]


def trl_records(rows: list[Row], rendering: Rendering = Rendering(), prefixed_samples: int | None = None) -> list[dict]:
    """TRL's rows. `prefixed_samples` M: of a prefixed row's group, M samples carry the prefix and the rest are
    drawn from the plain problem (`integrations.trl.PrefixGRPOTrainer`); None (null): all of them, the paper's."""
    return [{"prompt": rendering.messages(r.question), "answer": r.answer, "problem_id": r.problem_id,
             "kind": r.kind, "prefix_ids": r.prefix_ids, "prefix_text": r.prefix_text, "cut": r.cut,
             "trace_tokens": r.trace_tokens, "prefixed_samples": prefixed_samples if r.prefix_ids else None}
            for r in rows]


def verl_records(rows: list[Row], data_source: str, ability: str, task_spec: dict,
                 rendering: Rendering = Rendering()) -> list[dict]:
    spec = json.dumps(task_spec, sort_keys=True)
    return [{
        "data_source": data_source,
        "prompt": rendering.messages(r.question),
        "ability": ability,
        "reward_model": {"style": "rule", "ground_truth": r.answer},
        "extra_info": {"index": i, "problem_id": r.problem_id, "kind": r.kind, "prefix_ids": r.prefix_ids,
                       "prefix_text": r.prefix_text, "question": r.question, "task": spec, "cut": r.cut,
                       "trace_tokens": r.trace_tokens},
        "agent_name": PREFIXED_AGENT if r.prefix_ids else PLAIN_AGENT,
    } for i, r in enumerate(rows)]


ROWS_METADATA = b"prefixrl"  # Parquet key-value metadata: {"task": spec, "rendering": record}: a trainer scores
# with the right task, and the rows say how their prompts (system turn and instruction in the messages) were rendered


def write_rows(path: Path, records: list[dict], schema: pa.Schema, task: dict, rendering: dict | None = None) -> None:
    import pyarrow.parquet as pq

    meta = {"task": task, **({"rendering": rendering} if rendering is not None else {})}
    table = pa.Table.from_pylist(records, schema=schema.with_metadata({ROWS_METADATA: json.dumps(meta)}))
    atomic_write(path, lambda f: pq.write_table(table, f))
