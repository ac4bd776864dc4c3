"""`chain`: modular running sums, the built-in task (design and rationale: docs/task.md).

Question:  ``7 +4-3+1......``   a start digit, then one slot per step: an operation and a digit (mod 10);
                                every question has the same number of slots, unused ones are ``..``
Response:  ``1 8 9 #9``         the running value after each step, then the final answer

Why this shape reproduces the paper's regime with a tiny model:

* **Fixed-distance dependencies.** A question always has `slots` slots of two characters and every step
  of the response is two characters, so the operation a step needs sits exactly 2·slots tokens back and
  the previous value 2 tokens back, whatever the chain length. A tiny Llama learns this in a minute; a
  format that needs a content lookup ("find step k in the question") did not learn in 5 minutes.
* **Compounding errors.** The base model is pretrained on an imperfect teacher whose step values are
  right with probability `teacher_accuracy` (`noisy_solution`). A converged base gets each step right
  with about that probability, independently of when pretraining stops, and a chain of H steps with
  probability ≈ q^H: near zero for long "hard" chains.
* **Prefixes reveal state.** Conditioned on the first fraction f of a correct trace, only the remaining
  (1 − f)·H steps can fail, so success rises geometrically with f (the shape of the paper's Fig. 3).
* **No luck floor.** The verifier checks every step, not only the one-digit answer; a chain that lands on
  the right answer by accident (1 time in 10) is still incorrect.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from prefixrl.tasks.base import Problem, Verdict

MOD = 10
OPS = "+-*"
EMPTY = ".."
_ANSWER = re.compile(r"#(\d)\s*$")


def _apply(op: str, x: int, y: int) -> int:
    """Saturating digit arithmetic: the running value stays in 0..9 by clamping, not wrapping."""
    if op == "+":
        return min(MOD - 1, x + y)
    if op == "-":
        return max(0, x - y)
    return min(MOD - 1, x * y)


@dataclass(frozen=True)
class Chain:
    start: int
    steps: tuple[tuple[str, int], ...]  # (op, operand)

    @property
    def values(self) -> list[int]:
        out, x = [], self.start
        for op, y in self.steps:
            x = _apply(op, x, y)
            out.append(x)
        return out

    def question(self, slots: int) -> str:
        return f"{self.start} " + "".join(f"{op}{y}" for op, y in self.steps) + EMPTY * (slots - len(self.steps))

    @staticmethod
    def parse(question: str) -> Chain:
        m = re.fullmatch(r"(\d) ((?:[+\-*]\d)+)((?:\.\.)*)", question)
        if not m:
            raise ValueError(f"not a chain question: {question!r}")
        body = m.group(2)
        return Chain(int(m.group(1)), tuple((body[i], int(body[i + 1])) for i in range(0, len(body), 2)))


def render_response(values: list[int]) -> str:
    return " ".join([str(v) for v in values] + [f"#{values[-1]}"])


@dataclass(frozen=True)
class ChainTask:
    """Difficulty is the number of steps. Hard chains have exactly `hard_steps` steps, so hard problems
    are equally hard (rejection sampling then succeeds on most of them at a similar cost)."""

    easy_min_steps: int = 1
    easy_max_steps: int = 16
    hard_steps: int = 16
    ops: str = "+-"
    name: str = "chain"
    splits: tuple[str, ...] = ("easy", "hard_train", "hard_heldout")

    def __post_init__(self) -> None:
        if not 1 <= self.easy_min_steps <= self.easy_max_steps:
            raise ValueError("chain: need 1 <= easy_min_steps <= easy_max_steps")
        if self.hard_steps < 1:
            raise ValueError("chain: hard_steps must be >= 1")
        if not self.ops or set(self.ops) - set(OPS):
            raise ValueError(f"chain: ops must be a non-empty subset of {OPS!r}")

    @property
    def slots(self) -> int:
        return max(self.easy_max_steps, self.hard_steps)

    @property
    def max_response_tokens(self) -> int:
        """The sampling bound: two characters per slot, the answer marker and EOS, with slack."""
        return 2 * self.slots + 4

    def _random_chain(self, rng: random.Random, n_steps: int) -> Chain:
        return Chain(rng.randrange(MOD), tuple((rng.choice(self.ops), rng.randrange(MOD)) for _ in range(n_steps)))

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        if split not in self.splits:
            raise ValueError(f"chain: unknown split {split!r}; choose from {', '.join(self.splits)}")
        # Each split has its own stream; hard_heldout also skips every question of hard_train, so the
        # two hard splits never share a question.
        rng = random.Random(f"chain:{seed}:{split}")
        exclude = {p.question for p in self.problems("hard_train", n, seed)} if split == "hard_heldout" else set()
        out: list[Problem] = []
        while len(out) < n:
            steps = self.hard_steps if split.startswith("hard") else rng.randint(self.easy_min_steps, self.easy_max_steps)
            chain = self._random_chain(rng, steps)
            q = chain.question(self.slots)
            if q in exclude:
                continue
            exclude.add(q)
            out.append(Problem(f"{split}-{len(out):05d}", split, q, str(chain.values[-1])))
        return out

    def solution(self, problem: Problem) -> str:
        return render_response(Chain.parse(problem.question).values)

    def correct_responses(self, problem: Problem) -> list[str]:
        """Every response `verify` accepts, up to surrounding whitespace: the one right chain of values.
        This is what makes the regime exactly measurable (`prefixrl.regime`)."""
        return [self.solution(problem)]

    def steps(self, problem: Problem) -> int:
        """Reasoning steps in a problem (the per-step probability is pass@1 to the power 1/steps)."""
        return len(Chain.parse(problem.question).steps)

    def noisy_solution(self, problem: Problem, accuracy: float, rng: random.Random) -> str:
        """An imperfect teacher: each step value is right with probability `accuracy`, else a random
        wrong digit, and later steps continue from the value actually written (errors compound)."""
        chain = Chain.parse(problem.question)
        values, x = [], chain.start
        for op, y in chain.steps:
            x = _apply(op, x, y)
            if rng.random() >= accuracy:
                x = rng.choice([d for d in range(MOD) if d != x])
            values.append(x)
        return render_response(values)

    def extract_answer(self, response: str) -> str | None:
        m = _ANSWER.search(response)
        return m.group(1) if m else None

    def answer_start(self, response: str) -> int | None:
        i = response.rfind("#")
        return i if i >= 0 else None

    def verify(self, problem: Problem, response: str) -> Verdict:
        try:
            chain = Chain.parse(problem.question)
        except ValueError:
            return Verdict.ERROR
        if str(chain.values[-1]) != problem.answer:
            return Verdict.ERROR  # the stored reference disagrees with its own question
        if self.extract_answer(response) is None:
            return Verdict.NO_ANSWER
        # Every step must be present and right: no credit for a lucky final digit.
        return Verdict.CORRECT if response.strip() == self.solution(problem) else Verdict.INCORRECT
