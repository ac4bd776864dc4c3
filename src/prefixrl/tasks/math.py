"""`math`: problems with a reference answer, judged by math-verify (the paper's verifier family).

math-verify parses the response (the last \\boxed{…} first, then other answer forms) and the reference,
and compares them symbolically. It can hang on adversarial input (nested powers, huge factorials), and
its own timeout uses SIGALRM, which does not work off the main thread, so it is switched off here: the
hard deadline is the verifier pool's (`prefixrl.verifier`), which kills and replaces a hung worker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from prefixrl.tasks.base import Problem, Verdict
from prefixrl.tasks.files import SPLITS, file_problems, read_rows

_BOXED = re.compile(r"\\boxed\s*\{")


def _last_boxed(response: str) -> tuple[int, str] | None:
    """(offset, content) of the last \\boxed{…} with balanced braces, or None."""
    starts = [m for m in _BOXED.finditer(response)]
    for m in reversed(starts):
        depth, i = 1, m.end()
        while i < len(response) and depth:
            depth += {"{": 1, "}": -1}.get(response[i], 0)
            i += 1
        if depth == 0:
            return m.start(), response[m.end() : i - 1]
    return None


@dataclass(frozen=True)
class MathTask:
    """Math problems from a local file (JSONL, Parquet or a datasets folder), verified by math-verify."""

    path: str
    question_field: str = "problem"
    answer_field: str = "answer"
    heldout_share: float = 0.1
    name: str = "math"
    splits: tuple[str, ...] = SPLITS

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        return file_problems(self.name, read_rows(self.path, self.question_field, self.answer_field), split, n, seed,
                             self.heldout_share)

    def solution(self, problem: Problem) -> str:
        raise NotImplementedError("math problems have no reference solver; collect or import traces")

    def extract_answer(self, response: str) -> str | None:
        boxed = _last_boxed(response)
        return None if boxed is None else boxed[1]

    def answer_start(self, response: str) -> int | None:
        boxed = _last_boxed(response)
        return None if boxed is None else boxed[0]

    def verify(self, problem: Problem, response: str) -> Verdict:
        from math_verify import parse, verify

        ref = problem.answer if ("$" in problem.answer or "\\boxed" in problem.answer) else f"${problem.answer}$"
        gold = parse(ref, parsing_timeout=None)
        if not gold:
            return Verdict.ERROR  # the reference itself is unusable
        pred = parse(response, parsing_timeout=None)
        if not pred:
            return Verdict.NO_ANSWER
        return Verdict.CORRECT if verify(gold, pred, timeout_seconds=None) else Verdict.INCORRECT
