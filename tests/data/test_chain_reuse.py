"""The chain task's reuse switch (docs/last_word.md §4): recurrences of the class's lookups at the end of a
hard chain, which must agree with their operand's first use (switch) or fall on operands no first use has
(control); a teacher consistent within a document; and the task as it was when the switch is off."""

import random

import pytest

from prefixrl.data.tasks import task_identity, task_spec
from prefixrl.data.tasks.base import Verdict
from prefixrl.data.tasks.chain import RARE, Chain, ChainTask, _values, rare_tables, render_response


def switch(operands="same"):
    return ChainTask(hard_steps=16, rare_steps=3, classes=1, recurrences=1, recur_operands=operands)


def test_the_recurrence_is_the_last_step_on_a_first_use_operand_or_on_a_fresh_one():
    for operands in ("same", "fresh"):
        task = switch(operands)
        assert list(task.rare_block) == [8, 9, 10] and list(task.recur_block) == [15]
        for p in task.problems("hard_train", 64, 0):
            steps = Chain.parse(p.question).steps
            rare = [i for i, (op, _) in enumerate(steps) if op in RARE]
            assert rare == [8, 9, 10, 15]
            first = [steps[i][1] for i in (8, 9, 10)]
            assert len(set(first)) == 3  # distinct first uses: a recurrence names one of them unambiguously
            assert (steps[15][1] in first) == (operands == "same")
            assert (steps[15] == steps[15 - task.recur_distance]) == (operands == "same")  # at a fixed distance
    # switch and control draw the same chains but for the recurrence's operand
    pairs = zip(switch("same").problems("hard_train", 32, 0), switch("fresh").problems("hard_train", 32, 0))
    assert all(a.question[:-1] == b.question[:-1] and a.question[-1] != b.question[-1] for a, b in pairs)


def test_a_recurrence_must_agree_with_its_first_use_in_the_switch_only():
    same, fresh = switch("same"), switch("fresh")
    p = same.problems("hard_train", 1, 0)[0]
    chain = Chain.parse(p.question)
    responses = same.correct_responses(p)
    assert len(responses) == 2 ** 3  # the recurrence chooses nothing: it copies
    for r in responses:
        values = _values(r)
        y = chain.steps[15][1]
        first = next(v for (op, yy), v in zip(chain.steps[8:11], values[8:11]) if yy == y)
        assert values[15] == first and same.verify(p, r) is Verdict.CORRECT
    # the same response with the other admissible value at the recurrence disagrees with its first use
    ref = chain.values
    a, b = rare_tables(chain.steps[15][0])[0][chain.steps[15][1]], rare_tables(chain.steps[15][0])[1][chain.steps[15][1]]
    other = ref[:15] + [b if ref[15] == a else a]
    assert same.verify(p, render_response(other)) is Verdict.INCORRECT
    q = fresh.problems("hard_train", 1, 0)[0]
    assert len(fresh.correct_responses(q)) == 2 ** 4  # a fresh recurrence is one more two-valued lookup
    assert fresh.witness(q, fresh.solution(q)) == (0, 0, 0, 0) and same.witness(p, same.solution(p)) == (0, 0, 0)


def test_the_teacher_copies_its_first_use_at_the_copy_rate_and_is_unchanged_without_it():
    task = switch()
    easy = task.problems("easy", 400, 0)
    repeats = [p for p in easy if len([y for op, y in Chain.parse(p.question).steps if op in RARE])
               > len({y for op, y in Chain.parse(p.question).steps if op in RARE})]
    assert len(repeats) > 50  # pretraining chains repeat lookups often enough to learn from
    for p in repeats[:50]:
        chain = Chain.parse(p.question)
        values = _values(task.noisy_solution(p, 1.0, random.Random(0), copy_rate=1.0))
        first = {}
        for (op, y), v in zip(chain.steps, values):  # copy rate 1: every repeat writes what its first use wrote
            if op in RARE:
                assert first.setdefault(y, v) == v
    # copy rate 0 draws exactly what the teacher drew before the switch existed
    plain = ChainTask(hard_steps=16, rare_steps=4, classes=4)
    for p in plain.problems("easy", 20, 1):
        assert plain.noisy_solution(p, 0.9, random.Random(3)) == plain.noisy_solution(p, 0.9, random.Random(3), 0.0)


def test_the_switch_off_is_the_task_it_was():
    """Every earlier base, store and run names its task by its spec: the new settings are left out of it
    at their defaults, so nothing made before the switch is refused or rebuilt."""
    task = ChainTask(hard_steps=16, rare_steps=4, classes=4)
    assert "recurrences" not in task_spec(task) and "recur_operands" not in task_identity(task)
    assert task_spec(switch())["recurrences"] == 1 and task_identity(switch("fresh"))["recur_operands"] == "fresh"
    from prefixrl.data.tasks import get_task

    assert get_task(**task_spec(switch("fresh"))) == switch("fresh")
    assert list(task.rare_block) == [8, 9, 10, 11]  # the map's layout


def test_the_design_counts_a_recurrence_as_a_lookup_in_both():
    assert switch().design_accuracy() == pytest.approx(ChainTask(hard_steps=16, rare_steps=4).design_accuracy())
    assert switch("fresh").teacher_pass1(0.9) == switch().teacher_pass1(0.9)
    with pytest.raises(ValueError, match="recurrence"):
        ChainTask(hard_steps=16, rare_steps=2, recurrences=3)  # more recurrences than first uses to recur on
    with pytest.raises(ValueError, match="rarer than the design"):
        ChainTask(hard_steps=16, rare_steps=4, recurrences=1).design_accuracy()  # 0.2^5 < 0.65^16


def test_rare_targets_are_the_first_uses_and_recurrence_targets_the_last_step():
    task = switch()
    p = task.problems("hard_heldout", 1, 0)[0]
    assert [o for o, _ in task.rare_targets(p)] == [16, 18, 20]
    [(offset, copied, other)] = task.recurrence_targets(p)
    values = Chain.parse(p.question).values
    assert offset == 30 and copied == values[15] and other != copied


def test_a_base_pretrained_on_the_switch_names_it_to_every_later_stage(tmp_path):
    """prefixrl.json's task is what eval, collect and train read: a switch base must carry the switch (it
    did not, at first: the task was written field by field), and a base without it stays as it was."""
    from conftest import pretrain_tiny

    from prefixrl.cli.policy import load_policy

    pretrain_tiny(tmp_path / "switch", 2, 6, "--rare-steps", "2", "--recurrences", "1", "--classes", "1",
                  "--recur-operands", "fresh", "--copy-rate", "0.9", "--teacher-accuracy", "0.9")
    _, _, task = load_policy(tmp_path / "switch", None)
    assert (task.recurrences, task.recur_operands) == (1, "fresh")
    pretrain_tiny(tmp_path / "plain", 2, 6)
    meta = __import__("json").loads((tmp_path / "plain" / "prefixrl.json").read_text())
    assert "recurrences" not in meta["task"] and "copy_rate" not in meta["pretrain"]
