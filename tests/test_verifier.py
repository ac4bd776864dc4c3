"""The verifier pool: a hard deadline per item, workers replaced after a hang or a crash, the run goes on."""

import os
import time
from dataclasses import dataclass

import pytest

from prefixrl.tasks.base import Problem, Verdict, reward
from prefixrl.verifier import Deadlined, VerifierPool, deadlined, verify_all


@dataclass(frozen=True)
class Adversarial:
    """A verifier with the failure modes of real ones, chosen by the response text."""

    name: str = "adversarial"

    def verify(self, problem: Problem, response: str) -> Verdict:
        if response == "hang":
            while True:  # e.g. math-verify on a deeply nested power
                pass
        if response == "sleep":
            time.sleep(60)
        if response == "crash":
            os._exit(1)  # e.g. a segfault in a C extension
        if response == "raise":
            raise RecursionError("malformed LaTeX")
        return Verdict.CORRECT if response == problem.answer else Verdict.INCORRECT


P = Problem("p0", "test", "q", "42")


def test_hang_crash_and_raise_get_verdicts_within_the_deadline_and_the_pool_keeps_serving():
    items = [(P, "42"), (P, "hang"), (P, "7"), (P, "crash"), (P, "raise"), (P, "sleep"), (P, "42")]
    with VerifierPool(Adversarial(), workers=2, timeout=1.0) as pool:
        pool.verify_many([(P, "42")])  # workers up (interpreter start is not part of any deadline)
        t0 = time.monotonic()
        verdicts = pool.verify_many(items)
        elapsed = time.monotonic() - t0
        assert verdicts == [Verdict.CORRECT, Verdict.TIMEOUT, Verdict.INCORRECT, Verdict.ERROR, Verdict.ERROR,
                            Verdict.TIMEOUT, Verdict.CORRECT]
        # two hung items, each costing one deadline plus a worker restart; nothing waits on the 60 s sleep
        assert elapsed < 15
        assert pool.counts["timeout"] == 2 and pool.counts["error"] == 2 and pool.counts["restarts"] == 3
        # the replaced workers serve the next batch normally
        assert pool.verify_many([(P, "42"), (P, "1")] * 50) == [Verdict.CORRECT, Verdict.INCORRECT] * 50
    assert [reward(v) for v in verdicts] == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def test_a_hang_inside_a_chunk_loses_only_that_item():
    items = [(P, "42")] * 40 + [(P, "hang")] + [(P, "1")] * 40
    with VerifierPool(Adversarial(), workers=1, timeout=1.0) as pool:
        verdicts = pool.verify_many(items)
    assert verdicts == [Verdict.CORRECT] * 40 + [Verdict.TIMEOUT] + [Verdict.INCORRECT] * 40


def test_deadlined_task_is_the_task_with_pooled_verification(task):
    probs = task.problems("hard_train", 8, 0)
    items = [(p, task.solution(p)) for p in probs] + [(p, "0 #0") for p in probs]
    inline = verify_all(task, items)
    with deadlined(task, workers=2, timeout=5.0) as guarded:
        assert isinstance(guarded, Deadlined) and guarded.hard_steps == task.hard_steps
        assert verify_all(guarded, items) == inline
        assert guarded.verify(*items[0]) is Verdict.CORRECT
    assert inline == [Verdict.CORRECT] * 8 + [Verdict.INCORRECT] * 8


def test_pool_rejects_nonsense_settings():
    with pytest.raises(ValueError, match="workers >= 1"):
        VerifierPool(Adversarial(), workers=0)
