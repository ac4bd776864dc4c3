"""The answer formats of `math` problems, declared, never guessed:
- `boxed`: the final balanced \\boxed{…} (MATH, OpenR1, Omni-MATH);
- `answer-line`: the last line that begins with `Answer:` (DAPO-Math-17k);
- `gsm8k`: the last line that begins with `####` (GSM8K).
Only the final marker of the declared format counts; a restatement ("the answer is 5", an `Answer:` in the
middle of a line) never does. A dataset's reference answer is read the same way (`gold_answer`), and a
prefix is cut before the format's first marker (`first_marker`). Everything here is linear in the text's
length and imports nothing heavy: it runs on model output and on whole datasets outside any deadline.
"""

from __future__ import annotations

import re

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


def gold_answer(fmt: str, text: str) -> str:
    """The reference answer in a dataset's answer field: after the field's final marker of `fmt` when it holds
    one (a MATH solution's box, a GSM8K rationale's `#### 72`), else the field as it is, which must then be
    an answer, not a text: one line. ValueError says why not. (Whether math-verify can parse it is known
    only by parsing, which can hang; a reference it cannot parse is an ERROR verdict, counted apart.)"""
    if first_marker(fmt, text) is not None:
        answer = final_answer(fmt, text)
        if answer is None:
            raise ValueError(f"holds a {fmt} marker but no answer can be read after the last one")
        return answer
    if "\n" in text.strip():
        raise ValueError(f"has no {fmt} marker, and a text of several lines is not an answer "
                         "(is --answer-format or --answer-field right?)")
    return text.strip()
