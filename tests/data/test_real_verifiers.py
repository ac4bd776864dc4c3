"""The real verifiers, for real: math-verify (through the deadline pool, adversarial input included) and
reasoning-gym's own scorers. Problems come from local files made here; nothing is downloaded."""

import json
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefixrl.data.tasks import get_task
from prefixrl.data.tasks.base import Verdict
from prefixrl.data.verifier import VerifierPool
from prefixrl.io.errors import BadInput

ROWS = [{"problem": f"What is {a} + {b}? Give a fraction if needed.", "answer": ans}
        for a, b, ans in [(1, 1, "2"), ("1/2", "1/4", "\\frac{3}{4}"), (2, 3, "5"), ("0.5", "0.5", "1")] * 5]


@pytest.fixture
def math_task(tmp_path):
    rows = [{**r, "problem": f"{r['problem']} (#{i})"} for i, r in enumerate(ROWS)]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return get_task("math", path=str(tmp_path / "p.jsonl"), heldout_share=0.25)


def test_math_problems_load_and_split_from_jsonl_parquet_and_datasets_folders(math_task, tmp_path):
    train = math_task.problems("hard_train", 100, 0)
    held = math_task.problems("hard_heldout", 100, 0)
    assert len(train) + len(held) == 20 and not {p.question for p in train} & {p.question for p in held}
    assert math_task.problems("hard_train", 3, 1) == math_task.problems("hard_train", 3, 1)
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    as_parquet = get_task("math", path=str(tmp_path / "p.parquet"), heldout_share=0.25)
    assert as_parquet.problems("hard_train", 100, 0) == train
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    as_folder = get_task("math", path=str(tmp_path / "ds"), heldout_share=0.25)
    assert as_folder.problems("hard_train", 100, 0) == train


def test_math_problem_file_errors_name_file_row_field(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"problem": "x", "answer": "1"}\n{"problem": "y"}\n')
    with pytest.raises(BadInput, match=r"bad.jsonl: line 2: field answer"):
        get_task("math", path=str(tmp_path / "bad.jsonl")).problems("hard_train", 1, 0)
    with pytest.raises(BadInput, match="no such file"):
        get_task("math", path=str(tmp_path / "missing.jsonl")).problems("hard_train", 1, 0)


def test_math_verify_verdicts(math_task):
    p = next(p for p in math_task.problems("hard_train", 100, 0) if p.answer == "\\frac{3}{4}")
    assert math_task.verify(p, "1/2 + 1/4, so the answer is \\boxed{\\frac{3}{4}}") is Verdict.CORRECT
    assert math_task.verify(p, "so \\boxed{0.75}") is Verdict.CORRECT  # symbolic, not string, equality
    assert math_task.verify(p, "so \\boxed{\\frac{2}{3}}") is Verdict.INCORRECT
    assert math_task.verify(p, "I am not sure.") in (Verdict.NO_ANSWER, Verdict.INCORRECT)
    r = "First 1/2 = 2/4. Then \\boxed{\\frac{3}{4}}"
    assert math_task.extract_answer(r) == "\\frac{3}{4}" and r[math_task.answer_start(r):].startswith("\\boxed")


ADVERSARIAL = [
    "\\boxed{" + "9^{" * 60 + "9" + "}" * 60 + "}",  # a tower of powers
    "\\boxed{(10^{10^{10}})!}",  # a huge factorial
    "\\boxed{\\frac{1}{" + "\\sqrt{" * 200 + "2" + "}" * 150 + "}",  # malformed: unbalanced
    "\\boxed{\\begin{matrix} 1 & \\end{pmatrix}}",  # malformed environment
    "$" * 500,
]


def test_adversarial_math_answers_come_back_within_the_deadline_and_the_pool_keeps_serving(math_task):
    p = next(p for p in math_task.problems("hard_train", 100, 0) if p.answer == "5")
    with VerifierPool(math_task, workers=2, timeout=3.0) as pool:
        assert pool.verify_many([(p, "\\boxed{5}")]) == [Verdict.CORRECT]  # workers warm (imports done)
        t0 = time.monotonic()
        verdicts = pool.verify_many([(p, r) for r in ADVERSARIAL])
        elapsed = time.monotonic() - t0
        assert all(v in (Verdict.TIMEOUT, Verdict.INCORRECT, Verdict.NO_ANSWER) for v in verdicts), verdicts
        # each item is bounded by the deadline (+ a worker restart after a timeout), two workers in parallel
        assert elapsed < len(ADVERSARIAL) * (3.0 + 5.0)
        assert pool.verify_many([(p, "\\boxed{5}"), (p, "\\boxed{6}")]) == [Verdict.CORRECT, Verdict.INCORRECT]


def test_reasoning_gym_scores_exactly_one_is_correct():
    task = get_task("reasoning-gym", dataset="basic_arithmetic", size=40, data_seed=3)
    probs = task.problems("hard_train", 5, 0)
    assert len(probs) == 5 and all(p.question for p in probs)
    p = probs[0]
    assert task.verify(p, f"Thinking... <answer>{p.answer}</answer>") is Verdict.CORRECT
    assert task.verify(p, "<answer>not a number</answer>") is Verdict.INCORRECT
    assert task.verify(p, p.answer) is Verdict.NO_ANSWER  # no <answer> tag
    with VerifierPool(task, workers=1, timeout=10.0) as pool:
        assert pool.verify_many([(p, task.solution(p)), (p, "<answer>x</answer>")]) == [Verdict.CORRECT, Verdict.INCORRECT]
    with pytest.raises(BadInput, match="no dataset"):
        get_task("reasoning-gym", dataset="no_such_dataset").problems("hard_train", 1, 0)


def test_reasoning_gym_questions_ask_for_the_answer_tag_the_verifier_reads():
    from reasoning_gym.utils import SYSTEM_PROMPTS

    bare = get_task("reasoning-gym", dataset="basic_arithmetic", size=40, data_seed=3, instruction="none")
    told = get_task("reasoning-gym", dataset="basic_arithmetic", size=40, data_seed=3)
    direct = get_task("reasoning-gym", dataset="basic_arithmetic", size=40, data_seed=3, instruction="direct")
    for b, t, d in zip(bare.problems("hard_train", 5, 0), told.problems("hard_train", 5, 0),
                       direct.problems("hard_train", 5, 0)):
        assert "<answer>" not in b.question  # the dataset's own question does not say how to answer
        assert (b.id, b.answer) == (t.id, t.answer) == (d.id, d.answer)  # same problems, same splits
        assert t.question == SYSTEM_PROMPTS["default"].strip() + "\n\n" + b.question
        assert d.question.startswith(SYSTEM_PROMPTS["direct"].strip()) and d.question.endswith(b.question)
    with pytest.raises(BadInput, match="no instruction 'loud'; choose from: .*default.*none"):
        get_task("reasoning-gym", dataset="basic_arithmetic", size=40, instruction="loud").problems("hard_train", 1, 0)


# The strict math verifier: only the final \boxed{…} is read. Restatements of the question and answers
# written anywhere else earn nothing; true answers in any equivalent form earn 1.
TABLE = [
    ("30", "11 + 19 = space candies", "no_answer"),  # restates the question; default math-verify said correct
    ("1023", "I restate: $2^{10}-1$.", "no_answer"),  # restates the question in LaTeX
    ("30", "The answer is 30", "no_answer"),  # no \boxed: not an answer here
    ("30", "$30$", "no_answer"),
    ("30", "**Final answer:** 30", "no_answer"),
    ("30", "\\boxed{30", "no_answer"),  # unbalanced
    ("30", "\\boxed{}", "no_answer"),
    ("30", "\\boxed{31}", "incorrect"),  # near miss
    ("30", "\\boxed{30} then, correcting myself, \\boxed{31}", "incorrect"),  # only the final box counts
    ("30", "11 + 19 = 30, so 30 it is. \\boxed{29}", "incorrect"),  # an unboxed 30 never rescues it
    ("1023", "2^{10} - 1 = 1023 \\boxed{1024}", "incorrect"),
    ("30", "\\boxed{30}", "correct"),
    ("30", "so $\\boxed{30}$.", "correct"),
    ("30", "\\boxed{31} no, wait: \\boxed{30}", "correct"),
    ("30", "\\boxed{ 30 }", "correct"),
    ("30", "\\boxed{\\frac{60}{2}}", "correct"),  # equal in value: math-verify compares values
    ("\\frac{3}{4}", "\\boxed{0.75}", "correct"),
    ("1023", "\\boxed{1023}", "correct"),
]


@pytest.mark.parametrize("answer,response,verdict", TABLE)
def test_strict_math_verifier_reads_only_the_final_box(answer, response, verdict):
    from prefixrl.data.tasks.base import Problem

    task = get_task("math", path="unused.jsonl")
    assert task.verify(Problem("p", "hard_train", "What is it?", answer), response).value == verdict


def test_box_extraction_is_linear_and_cuts_stop_before_any_box():
    from prefixrl.data.tasks.answers import boxed_spans

    task = get_task("math", path="unused.jsonl")
    t0 = time.monotonic()
    assert task.extract_answer("\\boxed{" * 200_000) is None  # 1.4 MB of unclosed boxes
    assert task.extract_answer("x" + "\\boxed{1}" * 50_000) == "1"
    # a complexity guard, not a speed target: linear takes ~0.2 s here, the old quadratic scan minutes
    assert time.monotonic() - t0 < 30
    r = "First \\boxed{2} is a step, then \\boxed{\\frac{a}{b}}."
    assert boxed_spans(r)[-1][0] == r.rindex("\\boxed") and task.extract_answer(r) == "\\frac{a}{b}"
    assert task.answer_start(r) == r.index("\\boxed")  # a prefix never holds any box, final or not


def test_a_missing_verifier_library_is_one_line_before_any_work(monkeypatch, tmp_path):
    """Without math-verify (an environment without the `real` extra, such as vLLM's CPU one), --task math
    used to start its verifier workers, which failed to load the task with a traceback."""
    import importlib.util

    from prefixrl.data.tasks.math import MathTask
    from prefixrl.io.errors import BadInput

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "math_verify" else real(name, *a))
    with pytest.raises(BadInput, match=r"task math needs math-verify, which is not installed .*prefixrl\[real\]"):
        MathTask(str(tmp_path / "problems.jsonl"))
