import random

import pytest

from prefixrl.data.tasks import Verdict, get_task, reward
from prefixrl.data.tasks.base import Problem
from prefixrl.data.tasks.chain import RARE, Chain, ChainTask, rare_tables


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


def test_rare_steps_admit_two_values_each_and_every_witness_verifies():
    task = ChainTask(rare_steps=4, classes=3)
    for p in task.problems("hard_train", 10, seed=2):
        chain = Chain.parse(p.question)
        ops = [op for op, _ in chain.steps]
        assert [i for i, op in enumerate(ops) if op in RARE] == list(task.rare_block)
        assert len({op for op in ops if op in RARE}) == 1 and RARE.index(ops[task.rare_block[0]]) == p.meta["class"]
        responses = task.correct_responses(p)
        assert len(responses) == 16 and len({task.witness(p, r) for r in responses}) == 16
        assert all(task.verify(p, r) is Verdict.CORRECT for r in responses)
        # a rare step outside its two table values is wrong, and so is every step after a wrong one
        values = [int(v) for v in responses[0].split()[:-1]]
        k = task.rare_block[0]
        bad = next(d for d in range(10) if d not in (rare_tables(ops[k])[0][chain.steps[k][1]],
                                                      rare_tables(ops[k])[1][chain.steps[k][1]]))
        values[k] = bad
        assert task.verify(p, " ".join(map(str, values)) + f" #{values[-1]}") is Verdict.INCORRECT
        assert task.witness(p, "garbage") is None


def test_the_rare_block_sits_in_the_papers_cut_band_and_the_design_rate_holds_at_every_knob():
    for k in range(0, 5):
        task = ChainTask(rare_steps=k)
        assert task.teacher_pass1(task.design_accuracy()) == pytest.approx(0.65 ** 16, rel=1e-9)
        if k:
            # response characters: two per step; the block's middle lies in the band [40 %, 80 %]
            mid = (task.rare_block[0] + task.rare_block[-1] + 1) / 2 / task.hard_steps
            assert 0.4 <= mid <= 0.8
    with pytest.raises(ValueError, match="rarer than the design pass rate"):
        ChainTask(rare_steps=5).design_accuracy()


def test_the_teacher_guesses_rare_steps_and_easy_chains_carry_them():
    task = ChainTask(rare_steps=4)
    rng = random.Random(0)
    easy = task.problems("easy", 400, seed=0)
    steps = [s for p in easy for s in Chain.parse(p.question).steps]
    assert abs(sum(op in RARE for op, _ in steps) / len(steps) - 4 / 16) < 0.03
    hits = total = 0
    for p in easy:
        chain = Chain.parse(p.question)
        values = [int(v) for v in task.noisy_solution(p, 1.0, rng).split(" ")[:-1]]
        for (op, y), v in zip(chain.steps, values):
            if op in RARE:
                hits += v in (rare_tables(op)[0][y], rare_tables(op)[1][y])
                total += 1
    assert total > 300 and abs(hits / total - 0.2) < 0.05  # a uniform guess: 2 of 10 digits
    assert all(not set(p.question) & set(RARE) for p in ChainTask().problems("hard_train", 20, seed=0))
