"""The task contract: problems by split, a prompt, a verifier with typed verdicts, a reward.

A task is pure: it turns ids and strings into records and verdicts. It never touches a model,
a file or a process; the verifier pool (`prefixrl.data.verifier`) wraps `verify` for tasks that can hang.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field
from typing import Protocol

from prefixrl.io.errors import BadInput


class Verdict(enum.Enum):
    """What the verifier concluded about one response. The reward is a separate mapping."""

    CORRECT = "correct"
    INCORRECT = "incorrect"
    NO_ANSWER = "no_answer"  # no final answer could be extracted (e.g. truncated response)
    TIMEOUT = "timeout"  # the verifier ran past its deadline (worker pools only)
    ERROR = "error"  # the verifier itself failed, or the reference is unusable


def reward(verdict: Verdict) -> float:
    """Binary outcome reward r(x, y) in {0, 1} (paper §2). Only CORRECT earns reward."""
    return 1.0 if verdict is Verdict.CORRECT else 0.0


@dataclass(frozen=True)
class Problem:
    """One verifiable problem. `question` is the user-turn text; `answer` the reference answer."""

    id: str
    split: str
    question: str
    answer: str
    meta: dict = field(default_factory=dict, compare=False, hash=False)


def require(module: str, task: str) -> None:
    """A task's verifier library must be importable here and in its verifier workers: one line if not,
    before any work (a worker that cannot load the task would otherwise fail later, in another process)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise BadInput(f"task {task} needs {module.replace('_', '-')}, which is not installed in this environment: "
                       "pip install 'prefixrl[real]'")


def problems_digest(problems: list[Problem]) -> str:
    """The identity of a problem set by content (ids, questions, answers, in order): what a resumable stage's
    key records, so a resume on another set (another --data-seed, an edited dataset) is refused."""
    h = hashlib.sha256()
    for p in problems:
        h.update(json.dumps([p.id, p.question, p.answer]).encode() + b"\n")
    return h.hexdigest()[:16]


def check_same_problems(rows, problems: list[Problem], source: str, what: str) -> None:
    """Refuse, in one line naming both, `rows` (traces or prefixes: problem_id, question, answer) made from
    another problem set than `problems`. An id names a problem only with its content: a chain id is a
    position (`hard_train-00000` is another problem under another --data-seed or step count), so the same
    id with another question or answer is another set, and so is a file none of whose problems is here."""
    ours = {p.id: (p.question, p.answer) for p in problems}
    shared = 0
    for r in rows:
        mine = ours.get(r.problem_id)
        if mine is None:
            continue
        if mine != (r.question, r.answer):
            field, theirs, here = (("question", r.question, mine[0]) if mine[0] != r.question
                                   else ("answer", r.answer, mine[1]))
            raise BadInput(f"{source}: problem {r.problem_id} has {field} {_short(theirs)} there and {_short(here)} in "
                           f"this run: its {what} are of another problem set (another --data-seed, dataset or task "
                           "setting); make them from this run's problems")
        shared += 1
    if rows and not shared:
        raise BadInput(f"{source}: none of its {len(rows)} {what} is of this run's {len(problems)} problems (it has "
                       f"{rows[0].problem_id}, this run {next(iter(ours), 'none')}); make them from this run's problems")


def _short(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


class Task(Protocol):
    """What the pipeline needs from a task. Implementations live in `prefixrl.data.tasks.*`."""

    name: str
    splits: tuple[str, ...]
    max_response_tokens: int  # the task's bound on a sampled response (--max-new-tokens overrides it)

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        """`n` problems of `split`, deterministic in `seed`; splits never share a question."""
        ...

    def solution(self, problem: Problem) -> str:
        """A correct step-by-step response for `problem`, from the reference solver."""
        ...

    def extract_answer(self, response: str) -> str | None:
        """The final answer stated in `response`, or None if it states none."""
        ...

    def verify(self, problem: Problem, response: str) -> Verdict:
        """Judge a whole assistant response (prefix + completion, never the prompt)."""
        ...

    def answer_start(self, response: str) -> int | None:
        """Character offset where the final answer begins in `response` (prefixes must end before it)."""
        ...

    # Optional, for tasks whose regime can be measured exactly (`prefixrl.rl.exact`; the built-in `chain`):
    #   correct_responses(problem) -> list[str]: every response `verify` accepts
    #   steps(problem) -> int: reasoning steps (the per-step probability is pass@1 ** (1 / steps))
