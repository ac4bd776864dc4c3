"""`math`: problems with a reference answer, judged by math-verify (the paper's verifier family).

The answer is anchored: only the final \\boxed{…} of the response counts. math-verify's default
extraction also reads unanchored expressions, so "11 + 19 = space candies" scored as a correct 30, and
a response that merely restated the question was rewarded (so was a prefix cut before no \\boxed).
Here the response's final \\boxed{…} is extracted by us, linearly, and only its content is handed to
math-verify, which compares it with the reference symbolically (0.75 = \\frac{3}{4}). A response with
no balanced \\boxed{…} has no answer. This is the setting TRL's accuracy reward uses (boxed first, no
unanchored extraction), made strict; docs/data.md documents it.

math-verify can hang on adversarial input (nested powers, huge factorials), and its own timeout uses
SIGALRM, which does not work off the main thread, so it is switched off here: the hard deadline is the
verifier pool's (`prefixrl.data.verifier`), which kills and replaces a hung worker.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import ClassVar

from prefixrl.data.tasks.base import Problem, Verdict
from prefixrl.data.tasks.files import SPLITS, file_problems, read_rows

_BOXED = re.compile(r"\\boxed\s*\{")


def boxed_spans(response: str) -> list[tuple[int, int, int]]:
    """(start, content start, content end) of every \\boxed{…} with balanced braces, in one linear pass.

    A brace stack remembers which open braces begin a \\boxed; one that closes yields a span. Linear in
    the response's length whatever it holds (a response of 10⁶ unclosed \\boxed{ included), so it is safe
    on model output outside the verifier pool's deadline (cutting prefixes, loading stores).
    """
    opens = {m.end() - 1: m.start() for m in _BOXED.finditer(response)}  # brace offset -> \boxed offset
    stack, spans = [], []
    for i, ch in enumerate(response):
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            j = stack.pop()
            if j in opens:
                spans.append((opens[j], j + 1, i))
    return sorted(spans)


@functools.cache
def _anchored():
    """math-verify reads only the \\boxed{…} it is given: boxed first, never an unanchored expression."""
    import logging

    from math_verify import LatexExtractionConfig

    # it warns on every call that its own timeout is off; the pool's deadline is the one that holds
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    return LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=False)


def _last_boxed(response: str) -> tuple[int, str] | None:
    """(offset, content) of the final \\boxed{…} with balanced braces, or None."""
    spans = boxed_spans(response)
    if not spans:
        return None
    start, lo, hi = spans[-1]
    return start, response[lo:hi]


@dataclass(frozen=True)
class MathTask:
    """Math problems from a local file (JSONL, Parquet or a datasets folder), verified by math-verify."""

    path: str
    question_field: str = "problem"
    answer_field: str = "answer"
    heldout_share: float = 0.1
    max_response_tokens: ClassVar[int] = 1024  # the sampling bound for open-ended reasoning
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
        """Where the first \\boxed begins: a prefix must end before any \\boxed, balanced or not, or the
        verifier could read an answer from the prefix alone when the completion writes none."""
        m = _BOXED.search(response)
        return None if m is None else m.start()

    def warm_up(self) -> None:
        """Import math-verify and sympy and run one verification: the verifier pool calls this in each
        worker before it reports ready, so the imports never count against an answer's deadline."""
        self.verify(Problem("warm-up", "hard_train", "1", "1"), "\\boxed{1}")

    def verify(self, problem: Problem, response: str) -> Verdict:
        from math_verify import parse, verify

        anchored = _anchored()
        ref = problem.answer if ("$" in problem.answer or "\\boxed" in problem.answer) else f"${problem.answer}$"
        gold = parse(ref, parsing_timeout=None)
        if not gold:
            return Verdict.ERROR  # the reference itself is unusable
        boxed = _last_boxed(response)
        if boxed is None:
            return Verdict.NO_ANSWER
        pred = parse(f"\\boxed{{{boxed[1]}}}", extraction_config=[anchored], parsing_timeout=None)
        if not pred:
            return Verdict.NO_ANSWER
        return Verdict.CORRECT if verify(gold, pred, timeout_seconds=None) else Verdict.INCORRECT
