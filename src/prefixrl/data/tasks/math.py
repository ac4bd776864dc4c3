"""`math`: problems with a reference answer, judged by math-verify (the paper's verifier family).

The answer format is declared, never guessed (`answer_format`: boxed, answer-line or gsm8k; the formats,
their anchoring and the gold answer's reading are `prefixrl.data.tasks.answers`). A prefix is cut before
the format's first marker (`answer_start`).

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
from dataclasses import dataclass
from typing import ClassVar

from prefixrl.data.tasks.answers import ANSWER_FORMATS, final_answer, first_marker, gold_answer
from prefixrl.data.tasks.base import Problem, Verdict, require
from prefixrl.data.tasks.files import SPLITS, dataset_system, file_problems, read_rows
from prefixrl.io.errors import BadInput


@functools.cache
def _anchored():
    """math-verify reads only the \\boxed{…} it is given: boxed first, never an unanchored expression."""
    import logging

    from math_verify import LatexExtractionConfig

    # it warns on every call that its own timeout is off; the pool's deadline is the one that holds
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    return LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=False)


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
        require("math_verify", "math")
        if self.answer_format not in ANSWER_FORMATS:
            raise BadInput(f"unknown answer format {self.answer_format!r}; choose from {', '.join(ANSWER_FORMATS)}")
    max_response_tokens: ClassVar[int] = 1024  # the sampling bound for open-ended reasoning
    name: str = "math"
    splits: tuple[str, ...] = SPLITS

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        rows = read_rows(self.path, self.question_field, self.answer_field, self.subset, self.dataset_split,
                         self.id_field, self.answer_format)
        return file_problems(self.name, rows, split, n, seed, self.heldout_share)

    def system_prompt(self) -> str | None:
        """The system turn the dataset's message lists carry (one for all rows), or None."""
        return dataset_system(self.path, self.question_field, self.subset, self.dataset_split)

    def solution(self, problem: Problem) -> str:
        raise NotImplementedError("math problems have no reference solver; collect or import traces")

    def extract_answer(self, response: str) -> str | None:
        return final_answer(self.answer_format, response)

    def answer_start(self, response: str) -> int | None:
        """Where the first marker of the format begins: a prefix must end before any, balanced or not, or
        the verifier could read an answer from the prefix alone when the completion writes none."""
        return first_marker(self.answer_format, response)

    def gold(self, problem: Problem) -> str:
        """The reference answer: read from the answer field by the format when the field holds its marker
        (`answers.gold_answer`; the rows were checked when read, so a bad one never reaches here)."""
        return gold_answer(self.answer_format, problem.answer)

    def warm_up(self) -> None:
        """Import math-verify and sympy and run one verification: the verifier pool calls this in each
        worker before it reports ready, so the imports never count against an answer's deadline."""
        self.verify(Problem("warm-up", "hard_train", "1", "1"), {"boxed": "\\boxed{1}", "answer-line": "Answer: 1",
                                                                 "gsm8k": "#### 1"}[self.answer_format])

    def verify(self, problem: Problem, response: str) -> Verdict:
        from math_verify import parse, verify

        anchored = _anchored()
        try:
            answer = self.gold(problem)
        except ValueError:
            return Verdict.ERROR  # the reference itself is unusable
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
