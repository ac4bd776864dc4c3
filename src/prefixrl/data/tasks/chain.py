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

The regime knob, `rare_steps` (docs/regimes.md). With 0, every step uses the same two operations, so
hardness is sampling noise in a skill the base has and every success teaches every problem (the shared
skill end). With K > 0, K consecutive steps in the middle of each hard chain use a **rare operation**:
a lookup ``v ∈ {A_c[y], B_c[y]}`` from two fixed tables of the problem's class c, one class per problem,
`classes` in all. The teacher never knew them (it writes a uniformly random digit there), so the base
does not know them at any temperature, only within-class successes can teach them, and each rare step
admits two values, so a problem has 2^K correct responses and a trace is one witness among them.

The reuse switch, `recurrences` R (docs/last_word.md §4). In the paper the prefix reveals something the
model's own completion then uses again; with R = 0 nothing revealed before the cut is needed after it.
With R > 0 the last R steps of a hard chain look up the class's rare operation again, each at a fixed
distance after a first use (`recur_distance`): with `recur_operands="same"` on that first use's operand
(the K first uses are distinct), and a recurrence must agree with the table its first use chose, so a
prefix past the first uses makes it copyable; with "fresh" (the control) on an operand no first use has,
which nothing before it determines. The teacher copies its own first-use value at a recurring lookup with
probability `copy_rate` (`noisy_solution`), and half of the easy chains it teaches on hold a planted pair
at that distance, so a base can learn to reuse what its context says.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass
from typing import ClassVar

from prefixrl.data.tasks.base import Problem, Verdict

MOD = 10
OPS = "+-*"
RARE = "abcdefgh"  # one rare operation per problem class
EMPTY = ".."
ADMISSIBLE = 2  # values a rare step accepts: a uniform guess is right with probability ADMISSIBLE / MOD
_ANSWER = re.compile(r"#(\d)\s*$")
DESIGN_PASS1_STEP = 0.65  # the design pass rate of a hard chain is 0.65 ** hard_steps at every knob setting


def rare_tables(symbol: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The two lookup tables (A, B) of a rare operation: fixed facts of the task, not of a run's seed.
    B[y] != A[y] for every operand y, so a rare step always admits exactly two values."""
    rng = random.Random(f"chain:rare:{symbol}")
    a = list(range(MOD))
    rng.shuffle(a)
    shift = rng.randrange(1, MOD)
    return tuple(a), tuple(a[(y + shift) % MOD] for y in range(MOD))


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
        """The reference witness: table A at every rare step."""
        return self.path((0,) * sum(op in RARE for op, _ in self.steps))

    def choices(self, agree: bool = False) -> int:
        """Rare steps that choose a table: all of them, or with `agree` only each lookup's first use."""
        rare = [(op, y) for op, y in self.steps if op in RARE]
        return len(set(rare)) if agree else len(rare)

    def path(self, choices: tuple[int, ...], agree: bool = False) -> list[int]:
        """The running values when the k-th choosing rare step uses table choices[k] (0 = A, 1 = B); with
        `agree`, a repeated lookup writes what its first use wrote."""
        out, x, k, first = [], self.start, 0, {}
        for op, y in self.steps:
            if op in RARE and agree and (op, y) in first:
                x = first[(op, y)]
            elif op in RARE:
                x, k = rare_tables(op)[choices[k]][y], k + 1
                first[(op, y)] = x
            else:
                x = _apply(op, x, y)
            out.append(x)
        return out

    def consistent(self, values: list[int], agree: bool = False) -> bool:
        """True iff `values` are the running values of some correct response (any table at any rare step;
        with `agree`, a repeated lookup must write what its first use wrote)."""
        if len(values) != len(self.steps):
            return False
        x, first = self.start, {}
        for (op, y), v in zip(self.steps, values):
            if op in RARE and agree and (op, y) in first:
                allowed = (first[(op, y)],)
            elif op in RARE:
                allowed = (rare_tables(op)[0][y], rare_tables(op)[1][y])
                first[(op, y)] = v
            else:
                allowed = (_apply(op, x, y),)
            if v not in allowed:
                return False
            x = v
        return True

    def question(self, slots: int) -> str:
        return f"{self.start} " + "".join(f"{op}{y}" for op, y in self.steps) + EMPTY * (slots - len(self.steps))

    @staticmethod
    def parse(question: str) -> Chain:
        m = re.fullmatch(r"(\d) ((?:[+\-*a-h]\d)+)((?:\.\.)*)", question)
        if not m:
            raise ValueError(f"not a chain question: {question!r}")
        body = m.group(2)
        return Chain(int(m.group(1)), tuple((body[i], int(body[i + 1])) for i in range(0, len(body), 2)))


def render_response(values: list[int]) -> str:
    return " ".join([str(v) for v in values] + [f"#{values[-1]}"])


@dataclass(frozen=True)
class ChainTask:
    """Difficulty is the number of steps. Hard chains have exactly `hard_steps` steps, so hard problems
    are equally hard (rejection sampling then succeeds on most of them at a similar cost). `rare_steps`
    of them are rare-operation lookups of the problem's class (the regime knob; module docstring)."""

    easy_min_steps: int = 1
    easy_max_steps: int = 16
    hard_steps: int = 16
    ops: str = "+-"
    rare_steps: int = 0
    classes: int = 4
    recurrences: int = 0
    recur_operands: str = "same"
    name: str = "chain"
    splits: tuple[str, ...] = ("easy", "hard_train", "hard_heldout")
    # settings left out of the task's spec at these values, so tasks made before they existed keep theirs
    inert: ClassVar[dict] = {"recurrences": 0, "recur_operands": "same"}

    def __post_init__(self) -> None:
        if not 1 <= self.easy_min_steps <= self.easy_max_steps:
            raise ValueError("chain: need 1 <= easy_min_steps <= easy_max_steps")
        if self.hard_steps < 1:
            raise ValueError("chain: hard_steps must be >= 1")
        if not self.ops or set(self.ops) - set(OPS):
            raise ValueError(f"chain: ops must be a non-empty subset of {OPS!r}")
        if not 0 <= self.rare_steps < self.hard_steps:
            raise ValueError("chain: rare_steps must be in [0, hard_steps)")
        if not 1 <= self.classes <= len(RARE):
            raise ValueError(f"chain: classes must be in [1, {len(RARE)}]")
        if self.recur_operands not in ("same", "fresh"):
            raise ValueError(f"chain: recur_operands must be same or fresh, got {self.recur_operands!r}")
        if self.recurrences:
            room = self.rare_steps if self.recur_operands == "same" else MOD - self.rare_steps
            if not (self.rare_steps >= 1 and 1 <= self.recurrences <= room
                    and self.rare_steps + self.recurrences < self.hard_steps):
                raise ValueError(f"chain: {self.recurrences} recurrence(s) need rare_steps >= 1, at most "
                                 f"{room} recurrences with {self.recur_operands} operands, and rare_steps + "
                                 "recurrences < hard_steps")

    @property
    def slots(self) -> int:
        return max(self.easy_max_steps, self.hard_steps)

    @property
    def max_response_tokens(self) -> int:
        """The sampling bound: two characters per slot, the answer marker and EOS, with slack."""
        return 2 * self.slots + 4

    @property
    def rare_block(self) -> range:
        """Steps of a hard chain that are rare (the first uses, with recurrences). The block is centred on
        60 % of the chain, the middle of the paper's cut band [40 %, 80 %] (§3.3), so a cut in the band can
        reveal part of the hard part; it ends before the recurrences, the chain's last steps."""
        last = self.hard_steps - self.rare_steps - self.recurrences
        start = min(last, max(0, round(0.6 * self.hard_steps - self.rare_steps / 2)))
        return range(start, start + self.rare_steps)

    @property
    def recur_block(self) -> range:
        """Steps of a hard chain that look a rare operation up again: its last `recurrences` steps."""
        return range(self.hard_steps - self.recurrences, self.hard_steps)

    @property
    def recur_distance(self) -> int:
        """Steps from a first use to its recurrence: the last R first uses recur, in order, in the last R
        steps, all at this one distance. A fixed distance, like every other dependency of the task (module
        docstring): a recurrence found by matching its operand anywhere earlier was not learned by the
        embedded base (docs/last_word.md §4)."""
        return self.hard_steps - self.rare_block.stop

    @property
    def agree(self) -> bool:
        """Whether a repeated lookup must write what its first use wrote (the reuse switch)."""
        return self.recurrences > 0 and self.recur_operands == "same"

    @property
    def lookups(self) -> int:
        """Rare lookups of a hard chain the design counts as guesses (a recurrence counted as one, so that
        the switch and its control share one teacher and one design pass rate)."""
        return self.rare_steps + self.recurrences

    def teacher_pass1(self, accuracy: float) -> float:
        """Hard pass@1 of a base that learned its teacher exactly: common steps right with probability
        `accuracy`, rare steps guessed uniformly (ADMISSIBLE of MOD digits are right)."""
        return accuracy ** (self.hard_steps - self.lookups) * (ADMISSIBLE / MOD) ** self.lookups

    def design_accuracy(self) -> float:
        """The teacher accuracy on common steps that puts hard pass@1 at the design value
        DESIGN_PASS1_STEP ** hard_steps at this knob setting (0.65 with no rare steps)."""
        target = DESIGN_PASS1_STEP ** self.hard_steps
        acc = (target / (ADMISSIBLE / MOD) ** self.lookups) ** (1.0 / (self.hard_steps - self.lookups))
        if acc > 1:
            raise ValueError(f"chain: {self.lookups} rare lookups alone are rarer than the design pass rate "
                             f"{target:.1e}; use fewer rare steps")
        return acc

    def _random_chain(self, rng: random.Random, n_steps: int, hard: bool) -> tuple[Chain, int | None]:
        chain = Chain(rng.randrange(MOD), tuple((rng.choice(self.ops), rng.randrange(MOD)) for _ in range(n_steps)))
        if not self.rare_steps:  # the shared-skill end draws exactly what the task always drew
            return chain, None
        cls = rng.randrange(self.classes)
        if self.recurrences:
            return self._recurring(rng, chain, cls, hard), cls
        # Hard chains: the rare block. Easy (pretraining) chains: each step rare with the block's share,
        # so the base sees every rare operation, at every position, with a teacher that does not know it.
        rare = set(self.rare_block) if hard else {i for i in range(n_steps)
                                                  if rng.random() < self.rare_steps / self.hard_steps}
        steps = tuple((RARE[cls], y) if i in rare else (op, y) for i, (op, y) in enumerate(chain.steps))
        return Chain(chain.start, steps), cls

    def _recurring(self, rng: random.Random, chain: Chain, cls: int, hard: bool) -> Chain:
        """The reuse switch's chains. Hard: the first uses on distinct operands, then the recurrences, each
        `recur_distance` after one of the last first uses, on its operand ("same") or on one no first use has
        ("fresh"). Easy (pretraining, the same for switch and control): each step rare with the lookups'
        share, and in half the chains a planted pair, a lookup and its recurrence `recur_distance` later, so
        the base sees lookups recur at that distance (and, elsewhere, rare steps there that do not)."""
        steps, d = list(chain.steps), self.recur_distance
        if hard:
            first = rng.sample(range(MOD), self.rare_steps)
            fresh = rng.sample([y for y in range(MOD) if y not in first], self.recurrences)
            again = first[-self.recurrences:] if self.recur_operands == "same" else fresh
            for i, y in zip(list(self.rare_block) + list(self.recur_block), first + again):
                steps[i] = (RARE[cls], y)
            return Chain(chain.start, tuple(steps))
        for i, (_, y) in enumerate(steps):
            if rng.random() < self.lookups / self.hard_steps:
                steps[i] = (RARE[cls], y)
        if len(steps) > d and rng.random() < 0.5:  # a planted pair: a lookup, and its recurrence d steps on
            i = rng.randrange(d, len(steps))
            steps[i - d] = (RARE[cls], steps[i - d][1])
            steps[i] = steps[i - d]
        return Chain(chain.start, tuple(steps))

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        if split not in self.splits:
            raise ValueError(f"chain: unknown split {split!r}; choose from {', '.join(self.splits)}")
        # Each split has its own stream; hard_heldout also skips every question of hard_train, so the
        # two hard splits never share a question (they share classes: a class is knowledge, not a question).
        rng = random.Random(f"chain:{seed}:{split}")
        exclude = {p.question for p in self.problems("hard_train", n, seed)} if split == "hard_heldout" else set()
        out: list[Problem] = []
        while len(out) < n:
            hard = split.startswith("hard")
            steps = self.hard_steps if hard else rng.randint(self.easy_min_steps, self.easy_max_steps)
            chain, cls = self._random_chain(rng, steps, hard)
            q = chain.question(self.slots)
            if q in exclude:
                continue
            exclude.add(q)
            meta = {} if cls is None else {"class": cls}
            out.append(Problem(f"{split}-{len(out):05d}", split, q, str(chain.values[-1]), meta))
        return out

    def solution(self, problem: Problem) -> str:
        return render_response(Chain.parse(problem.question).values)

    def correct_responses(self, problem: Problem) -> list[str]:
        """Every response `verify` accepts, up to surrounding whitespace: one per choice of table at each
        rare step (2^K; exactly one with no rare steps). This is what makes the regime exactly measurable
        (`prefixrl.rl.exact`)."""
        chain = Chain.parse(problem.question)
        return sorted({render_response(chain.path(c, self.agree))
                       for c in itertools.product((0, 1), repeat=chain.choices(self.agree))})

    def steps(self, problem: Problem) -> int:
        """Reasoning steps in a problem (the per-step probability is pass@1 to the power 1/steps)."""
        return len(Chain.parse(problem.question).steps)

    def rare_targets(self, problem: Problem) -> list[tuple[int, tuple[int, int]]]:
        """Per rare step of the reference response (`solution`): the character offset of its value and
        the two values it admits. What `regime.rare_knowledge` scores: the missing knowledge itself."""
        chain = Chain.parse(problem.question)
        later = set(self.recur_block) if self.recurrences else set()  # recurrences: `recurrence_targets`
        return [(2 * i, (rare_tables(op)[0][y], rare_tables(op)[1][y]))
                for i, (op, y) in enumerate(chain.steps) if op in RARE and i not in later]

    def recurrence_targets(self, problem: Problem) -> list[tuple[int, int, int]]:
        """Per recurrence of the reference response (`solution`, table A at every first use): the character
        offset of its value, the value the reference writes there and the other admissible one. In the
        switch the first is a copy of the first use; in the control nothing before it names either."""
        chain = Chain.parse(problem.question)
        return [(2 * i, rare_tables(op)[0][y], rare_tables(op)[1][y])
                for i, (op, y) in enumerate(chain.steps) if op in RARE and i in set(self.recur_block)]

    def witness(self, problem: Problem, response: str) -> tuple[int, ...] | None:
        """The table chosen at each rare step of a correct `response` (0 = A, 1 = B), or None: what a
        "strategy" is here, so that a solve can be compared with the trace it was conditioned on."""
        chain = Chain.parse(problem.question)
        values = _values(response)
        if values is None or not chain.consistent(values, self.agree):
            return None
        chosen, seen = [], set()
        for (op, y), v in zip(chain.steps, values):
            if op in RARE and not (self.agree and (op, y) in seen):
                chosen.append(int(v != rare_tables(op)[0][y]))
                seen.add((op, y))
        return tuple(chosen)

    def noisy_solution(self, problem: Problem, accuracy: float, rng: random.Random, copy_rate: float = 0.0) -> str:
        """An imperfect teacher: each common step value is right with probability `accuracy`, else a
        random wrong digit; a rare step is a uniformly random digit (the teacher does not know the rare
        operations), except that at a lookup it made before in the same chain it writes what it wrote
        there with probability `copy_rate` (consistent within a document: the reuse switch's teacher).
        Later steps continue from the value actually written (errors compound)."""
        chain = Chain.parse(problem.question)
        values, x, first = [], chain.start, {}
        for op, y in chain.steps:
            if op in RARE:
                # copy_rate 0 draws nothing extra: the teacher of every earlier base is unchanged
                x = first[(op, y)] if (op, y) in first and copy_rate and rng.random() < copy_rate else rng.randrange(MOD)
                first.setdefault((op, y), x)
            else:
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
        # Every step must be present and consistent: no credit for a lucky final digit.
        values = _values(response)
        return Verdict.CORRECT if values is not None and chain.consistent(values, self.agree) else Verdict.INCORRECT


def _values(response: str) -> list[int] | None:
    """The step values of a response in the canonical form ``v v … v #v`` (answer = last value), or None."""
    m = re.fullmatch(r"((?:\d )+)#(\d)", response.strip())
    if not m:
        return None
    values = [int(v) for v in m.group(1).split()]
    return values if values[-1] == int(m.group(2)) else None
