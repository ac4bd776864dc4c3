"""`math`: problems with a reference answer, judged by math-verify (the paper's verifier family).

The answer format is declared, never guessed (`answer_format`):
- `boxed`: the response's final balanced \\boxed{…} (MATH, OpenR1, Omni-MATH);
- `answer-line`: the response's last line that begins with `Answer:` (DAPO-Math-17k);
- `gsm8k`: the response's last line that begins with `####` (GSM8K).
Only the final marker of the declared format counts; a restatement ("the answer is 5", an `Answer:` in the
middle of a line) never does. The gold answer is read the same way when the dataset's answer field holds
the marker (a MATH solution's box, a GSM8K rationale's `#### 72`), else it is the field as it is. A prefix
is cut before the first marker of the format (`answer_start`).

Why anchored: math-verify's default
extraction also reads unanchored expressions, so "11 + 19 = space candies" scored as a correct 30, and
a response that merely restated the question was rewarded (so was a prefix cut before no \\boxed).
Here the final answer is extracted by us, linearly, and only its content is handed to
math-verify, which compares it with the reference symbolically (0.75 = \\frac{3}{4}). A response with
no marker of its format has no answer. This is the setting TRL's accuracy reward uses (boxed first, no
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
from prefixrl.io.errors import BadInput

_BOXED = re.compile(r"\\boxed\s*\{")
# a marker line: the marker at the start of a line (after indentation), the answer the rest of that line
_LINES = {"answer-line": re.compile(r"^[ \t]*Answer:(.*)$", re.M), "gsm8k": re.compile(r"^[ \t]*####(.*)$", re.M)}
ANSWER_FORMATS = ("boxed", "answer-line", "gsm8k")
# `--instruction auto` for a math task: the user turn asks for the declared format (the answer-line text is
# DAPO-Math-17k's own; a dataset whose questions already ask for it takes --instruction '{question}')
INSTRUCTIONS = {
    "boxed": "{question}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}.",
    "answer-line": "{question}\n\nSolve the problem step by step. The last line of your response should be of the "
                   "form Answer: $Answer (without quotes) where $Answer is the answer to the problem.",
    "gsm8k": "{question}\n\nSolve the problem step by step, and end your response with a line of the form "
             "#### <answer>.",
}


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


def final_answer(fmt: str, text: str) -> str | None:
    """The answer after the final marker of format `fmt` in `text`, or None when there is none."""
    if fmt == "boxed":
        boxed = _last_boxed(text)
        return None if boxed is None else boxed[1]
    last = None
    for m in _LINES[fmt].finditer(text):
        last = m
    if last is None:
        return None
    answer = last.group(1).strip()
    answer = answer[:-1].rstrip() if answer.endswith(".") else answer  # a sentence's full stop, not the answer's
    return answer.strip("$").strip() or None


def first_marker(fmt: str, text: str) -> int | None:
    """Where the first marker of format `fmt` begins, balanced or not, final or not."""
    m = (_BOXED if fmt == "boxed" else _LINES[fmt]).search(text)
    return None if m is None else m.start()


def _last_boxed(response: str) -> tuple[int, str] | None:
    """(offset, content) of the final \\boxed{…} with balanced braces, or None."""
    spans = boxed_spans(response)
    if not spans:
        return None
    start, lo, hi = spans[-1]
    return start, response[lo:hi]


@dataclass(frozen=True)
class MathTask:
    """Math problems from a dataset (a local file or folder, or a Hub id: `prefixrl.data.tasks.files`),
    verified by math-verify."""

    path: str  # the dataset: a local .jsonl/.json/.parquet/.csv file, a save_to_disk folder, or a Hub id
    question_field: str = "problem"
    answer_field: str = "answer"
    heldout_share: float = 0.1
    subset: str | None = None  # a Hub dataset's configuration
    dataset_split: str | None = None  # the dataset's own split (default: train, or a folder's only one)
    id_field: str | None = None  # default: ids from a hash of the question text
    answer_format: str = "boxed"  # boxed | answer-line | gsm8k (module docstring)

    def __post_init__(self) -> None:
        if self.answer_format not in ANSWER_FORMATS:
            raise BadInput(f"unknown answer format {self.answer_format!r}; choose from {', '.join(ANSWER_FORMATS)}")
    max_response_tokens: ClassVar[int] = 1024  # the sampling bound for open-ended reasoning
    name: str = "math"
    splits: tuple[str, ...] = SPLITS

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        rows = read_rows(self.path, self.question_field, self.answer_field, self.subset, self.dataset_split,
                         self.id_field)
        return file_problems(self.name, rows, split, n, seed, self.heldout_share)

    def solution(self, problem: Problem) -> str:
        raise NotImplementedError("math problems have no reference solver; collect or import traces")

    def extract_answer(self, response: str) -> str | None:
        return final_answer(self.answer_format, response)

    def answer_start(self, response: str) -> int | None:
        """Where the first marker of the format begins: a prefix must end before any, balanced or not, or
        the verifier could read an answer from the prefix alone when the completion writes none."""
        return first_marker(self.answer_format, response)

    def gold(self, problem: Problem) -> str:
        """The reference answer: read from the answer field by the format when the field holds its marker."""
        return final_answer(self.answer_format, problem.answer) or problem.answer

    def warm_up(self) -> None:
        """Import math-verify and sympy and run one verification: the verifier pool calls this in each
        worker before it reports ready, so the imports never count against an answer's deadline."""
        self.verify(Problem("warm-up", "hard_train", "1", "1"), {"boxed": "\\boxed{1}", "answer-line": "Answer: 1",
                                                                 "gsm8k": "#### 1"}[self.answer_format])

    def verify(self, problem: Problem, response: str) -> Verdict:
        from math_verify import parse, verify

        anchored = _anchored()
        answer = self.gold(problem)
        ref = answer if ("$" in answer or "\\boxed" in answer) else f"${answer}$"
        gold = parse(ref, parsing_timeout=None)
        if not gold:
            return Verdict.ERROR  # the reference itself is unusable
        stated = self.extract_answer(response)
        if stated is None:
            return Verdict.NO_ANSWER
        pred = parse(f"\\boxed{{{stated}}}", extraction_config=[anchored], parsing_timeout=None)
        if not pred:
            return Verdict.NO_ANSWER
        return Verdict.CORRECT if verify(gold, pred, timeout_seconds=None) else Verdict.INCORRECT
