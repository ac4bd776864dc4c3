import random

import pytest

from prefixrl.tasks import Verdict, get_task, reward
from prefixrl.tasks.base import Problem
from prefixrl.tasks.chain import Chain, ChainTask


def test_reference_solution_is_correct(task):
    for p in task.problems("hard_train", 20, seed=1):
        assert task.verify(p, task.solution(p)) is Verdict.CORRECT


def test_worked_example():
    task = ChainTask(easy_max_steps=4, hard_steps=4)
    p = Problem("x", "hard_train", "7 +4-3+1-9", "0")
    # saturating: 7+4 -> 9, 9-3 -> 6, 6+1 -> 7, 7-9 -> 0
    assert task.solution(p) == "9 6 7 0 #0"
    assert task.verify(p, "9 6 7 0 #0") is Verdict.CORRECT
    assert task.verify(p, "9 6 7 0 #0\n") is Verdict.CORRECT
    assert task.verify(p, "9 6 8 0 #0") is Verdict.INCORRECT  # right answer, wrong step: no credit
    assert task.verify(p, "9 6 7 1 #1") is Verdict.INCORRECT
    assert task.verify(p, "9 6 7 0") is Verdict.NO_ANSWER  # truncated before the answer
    assert task.verify(p, "") is Verdict.NO_ANSWER
    assert task.extract_answer("9 6 7 0 #0") == "0"
    assert task.answer_start("9 6 7 0 #0") == 8


def test_bad_reference_is_error_never_correct():
    task = ChainTask()
    assert task.verify(Problem("x", "s", "not a chain", "1"), "#1") is Verdict.ERROR
    p = Problem("x", "s", "7 +4-3+1-9", "5")  # wrong stored answer
    assert task.verify(p, task.solution(Problem("y", "s", "7 +4-3+1-9", "0"))) is Verdict.ERROR


def test_reward_is_one_only_for_correct():
    assert reward(Verdict.CORRECT) == 1.0
    for v in (Verdict.INCORRECT, Verdict.NO_ANSWER, Verdict.TIMEOUT, Verdict.ERROR):
        assert reward(v) == 0.0


def test_splits_are_deterministic_and_disjoint(task):
    a = task.problems("hard_train", 50, seed=3)
    assert a == task.problems("hard_train", 50, seed=3)
    held = task.problems("hard_heldout", 50, seed=3)
    assert not {p.question for p in a} & {p.question for p in held}
    assert all(len(Chain.parse(p.question).steps) == task.hard_steps for p in a)
    easy = task.problems("easy", 50, seed=3)
    assert all(task.easy_min_steps <= len(Chain.parse(p.question).steps) <= task.easy_max_steps for p in easy)


def test_questions_have_fixed_width(task):
    widths = {len(p.question) for s in task.splits for p in task.problems(s, 30, seed=0)}
    assert widths == {2 + 2 * task.slots}


def test_noisy_teacher_accuracy():
    task = ChainTask()
    rng = random.Random(0)
    probs = task.problems("easy", 300, seed=0)
    assert all(task.noisy_solution(p, 1.0, rng) == task.solution(p) for p in probs)
    right = total = 0
    for p in probs:
        chain = Chain.parse(p.question)
        values = [int(v) for v in task.noisy_solution(p, 0.7, rng).split(" ")[:-1]]
        prev = chain.start
        for (op, y), v in zip(chain.steps, values):
            right += v == Chain(prev, ((op, y),)).values[0]
            total += 1
            prev = v
    assert abs(right / total - 0.7) < 0.04


def test_unknown_names_are_rejected(task):
    with pytest.raises(ValueError, match="unknown task"):
        get_task("nope")
    with pytest.raises(ValueError, match="unknown split"):
        task.problems("medium", 1, seed=0)
