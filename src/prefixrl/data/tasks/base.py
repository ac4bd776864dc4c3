"""The task contract: problems by split, a prompt, a verifier with typed verdicts, a reward.

A task is pure: it turns ids and strings into records and verdicts. It never touches a model,
a file or a process; the verifier pool (`prefixrl.data.verifier`) wraps `verify` for tasks that can hang.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


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
