"""`reasoning-gym`: procedurally generated problems with their own scorers (any reasoning-gym dataset).

Problems are generated locally (no download) by `reasoning_gym.create_dataset(name, size, seed)`. The
answer is read from `<answer>…</answer>` (reasoning-gym's own convention and extractor), and judged by the
dataset's `score_answer`. Correct means a score of exactly 1.0: partial credit is not a success here,
because PrefixRL's traces must be correct ones.

reasoning-gym's questions say nothing about that tag: the library asks for it in a system prompt
(`reasoning_gym.utils.SYSTEM_PROMPTS`). Without it a real model never writes one (16 of 16 samples of
SmolLM2-135M-Instruct had no answer), so the chosen instruction opens the user turn. The user turn, not a
system turn, because not every chat template has a system role; splits still hash the bare question.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import ClassVar

from prefixrl.data.tasks.base import Problem, Verdict
from prefixrl.data.tasks.files import SPLITS, file_problems
from prefixrl.io.errors import BadInput


@functools.lru_cache(maxsize=4)
def _dataset(name: str, size: int, seed: int):
    try:
        import reasoning_gym
    except ImportError:
        raise BadInput("task reasoning-gym needs the reasoning-gym package (pip install reasoning-gym)") from None
    try:
        return reasoning_gym.create_dataset(name, size=size, seed=seed)
    except (KeyError, ValueError) as e:
        raise BadInput(f"reasoning-gym has no dataset {name!r} ({e})") from None


@dataclass(frozen=True)
class ReasoningGymTask:
    """Any reasoning-gym dataset; `size` problems generated from `data_seed`, split by question hash."""

    dataset: str = "basic_arithmetic"
    size: int = 1000
    data_seed: int = 0
    heldout_share: float = 0.1
    instruction: str = "default"
    """A key of reasoning-gym's SYSTEM_PROMPTS (default, simple, direct, DeepSeekZero, chain_of_draft), or none."""
    max_response_tokens: ClassVar[int] = 1024  # the sampling bound for open-ended reasoning
    name: str = "reasoning-gym"
    splits: tuple[str, ...] = SPLITS

    def _entries(self):
        return _dataset(self.dataset, self.size, self.data_seed)

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        ds = self._entries()
        # the entry's index is its id: `verify` scores an answer against the generated entry it names
        rows = [(str(i), ds[i]["question"], str(ds[i]["answer"])) for i in range(len(ds))]
        problems = file_problems(f"{self.name}:{self.dataset}", rows, split, n, seed, self.heldout_share)
        head = self._instruction()
        return [replace(p, question=f"{head}\n\n{p.question}") for p in problems] if head else problems

    def _instruction(self) -> str:
        if self.instruction == "none":
            return ""
        from reasoning_gym.utils import SYSTEM_PROMPTS

        if self.instruction not in SYSTEM_PROMPTS:
            raise BadInput(f"reasoning-gym has no instruction {self.instruction!r}; choose from: "
                           f"{', '.join([*SYSTEM_PROMPTS, 'none'])}")
        return SYSTEM_PROMPTS[self.instruction].strip()

    def solution(self, problem: Problem) -> str:
        return f"<answer>{problem.answer}</answer>"

    def extract_answer(self, response: str) -> str | None:
        from reasoning_gym.utils import extract_answer

        return extract_answer(response)

    def answer_start(self, response: str) -> int | None:
        i = response.rfind("<answer>")
        return None if i < 0 else i

    def warm_up(self) -> None:
        """Build the dataset and import the answer parser before the verifier pool's first deadline."""
        self._entries()
        self.extract_answer("<answer>0</answer>")

    def verify(self, problem: Problem, response: str) -> Verdict:
        answer = self.extract_answer(response)
        if answer is None:
            return Verdict.NO_ANSWER
        ds = self._entries()
        entry = ds[int(problem.id.rsplit(":", 1)[1])]
        return Verdict.CORRECT if ds.score_answer(answer, entry) == 1.0 else Verdict.INCORRECT
