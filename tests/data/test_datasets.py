"""Datasets as users have them: small files written here in the layouts of DAPO-Math-17k, GSM8K,
MATH/OpenR1 and Omni-MATH, read through the real loaders and judged by the real math-verify in each
declared answer format. Nothing is downloaded."""

import json
import random
import re

import pytest
from layouts import LAYOUTS, SUMS, dapo_rows, omni_rows, write

from prefixrl.data.tasks import get_task
from prefixrl.data.tasks.base import Problem, Verdict
from prefixrl.data.tasks.files import get_field, read_rows
from prefixrl.io.errors import BadInput


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_layout_loads_verifies_in_its_format_and_keeps_its_ids_under_a_shuffle(layout, tmp_path):
    make, fields, right, restated = LAYOUTS[layout]
    rows = make()
    task = get_task("math", path=write(tmp_path / "a.jsonl", rows), heldout_share=0.25, **fields)
    train, held = task.problems("hard_train", None, 0), task.problems("hard_heldout", None, 0)
    assert len(train) + len(held) == len(SUMS)  # every distinct problem once, the repeats folded
    for p in train[:4]:
        s = int(task.gold(p))
        assert task.verify(p, right.format(s=s)) is Verdict.CORRECT
        assert task.verify(p, right.format(s=s + 1)) is Verdict.INCORRECT
        assert task.verify(p, restated.format(s=s)) is Verdict.NO_ANSWER
    # filtering and shuffling the dataset (here: as Parquet) moves no id and no split
    shuffled = random.Random(1).sample(rows, len(rows))[3:]
    other = get_task("math", path=write(tmp_path / "b.parquet", shuffled), heldout_share=0.25, **fields)
    ids = {p.id: (p.split, p.question, p.answer) for split in ("hard_train", "hard_heldout")
           for p in other.problems(split, None, 0)}
    before = {p.id: (p.split, p.question, p.answer) for p in train + held}
    assert ids.items() <= before.items() and len(ids) >= len(SUMS) - 3


def test_ids_name_the_content_or_the_id_field(tmp_path):
    path = write(tmp_path / "d.jsonl", dapo_rows())
    by_field = read_rows(path, "prompt", "reward_model.ground_truth", id_field="extra_info.index")
    assert by_field[0][0] == "id-2-3"
    by_hash = read_rows(path, "prompt", "reward_model.ground_truth")
    assert by_hash[0][0] != by_hash[1][0] and len(by_hash[0][0]) == 12
    assert [q for _, q, _ in by_hash] == [q for _, q, _ in by_field]


def test_csv_json_and_saved_folders_read_the_same_problems(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = omni_rows()
    base = read_rows(write(tmp_path / "o.jsonl", rows), "problem", "answer")
    (tmp_path / "o.json").write_text(json.dumps(rows))
    assert read_rows(str(tmp_path / "o.json"), "problem", "answer") == base
    datasets.Dataset.from_list(rows).to_csv(str(tmp_path / "o.csv"))
    assert read_rows(str(tmp_path / "o.csv"), "problem", "answer") == base
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows[:2])}
                         ).save_to_disk(str(tmp_path / "dd"))
    assert read_rows(str(tmp_path / "dd"), "problem", "answer") == base
    assert len(read_rows(str(tmp_path / "dd"), "problem", "answer", split="test")) == 2


def test_bad_rows_are_one_line_naming_file_row_and_field(tmp_path):
    cases = [
        ([{"prompt": [{"role": "user", "content": "q"}], "reward_model": {}}], "line 1: field reward_model.ground_truth: missing"),
        ([{"prompt": [{"role": "assistant", "content": "q"}], "reward_model": {"ground_truth": "1"}}], "line 1: field prompt: the message list has no user turn"),
        ([{"prompt": "q", "reward_model": {"ground_truth": "1"}}, {"prompt": "q", "reward_model": {"ground_truth": "2"}}],
         "line 2: id .* repeats line 1 with another question or answer"),
    ]
    for i, (rows, message) in enumerate(cases):
        path = write(tmp_path / f"bad{i}.jsonl", rows)
        with pytest.raises(BadInput, match=f"bad{i}.jsonl: {message}"):
            read_rows(path, "prompt", "reward_model.ground_truth")
    with pytest.raises(BadInput, match="unknown answer format 'latex'"):
        get_task("math", path="x.jsonl", answer_format="latex")


@pytest.mark.parametrize("fmt,answer,message", [
    ("gsm8k", "He has 5.\n####", "holds a gsm8k marker but no answer can be read after the last one"),
    ("boxed", "Adding, $2 + 3 = \\boxed{5$.", "holds a boxed marker but no answer"),  # unbalanced
    ("boxed", "Adding 2 and 3\ngives 5.", "has no boxed marker, and a text of several lines is not an answer"),
    ("answer-line", "so\nit is 5", "has no answer-line marker"),
])
def test_a_gold_answer_the_format_cannot_read_is_refused_at_load(tmp_path, fmt, answer, message):
    rows = [{"problem": "What is 2 + 3?", "answer": "5"}, {"problem": "What is 1 + 1?", "answer": answer}]
    task = get_task("math", path=write(tmp_path / "g.jsonl", rows), answer_format=fmt)
    with pytest.raises(BadInput, match=f"g.jsonl: line 2: field answer: {re.escape(message)}"):
        task.problems("hard_train", None, 0)


def test_a_system_turn_is_the_datasets_system_prompt_and_must_be_one(tmp_path):
    def row(q, *system):
        turns = [{"role": "system", "content": s} for s in system] + [{"role": "user", "content": q}]
        return {"prompt": turns, "reward_model": {"ground_truth": "1"}}

    task = get_task("math", path=write(tmp_path / "s.jsonl", [row("a", "Be brief."), row("b", "Be brief.")]),
                    question_field="prompt", answer_field="reward_model.ground_truth")
    assert task.system_prompt() == "Be brief." and {p.question for p in task.problems("hard_train", None, 0)} <= {"a", "b"}
    plain = get_task("math", path=write(tmp_path / "p.jsonl", [row("a"), row("b")]), question_field="prompt",
                     answer_field="reward_model.ground_truth")
    assert plain.system_prompt() is None
    for name, rows, message in (("differ", [row("a", "Be brief."), row("b", "Be long.")],
                                 "line 2: field prompt: its system turn ('Be long.') differs from line 1's ('Be brief.')"),
                                ("some", [row("a"), row("b", "Be brief.")], "line 2: field prompt: its system turn"),
                                ("two", [row("a", "x", "y")], "line 1: field prompt: 2 system turns")):
        bad = get_task("math", path=write(tmp_path / f"{name}.jsonl", rows), question_field="prompt",
                       answer_field="reward_model.ground_truth")
        with pytest.raises(BadInput, match=f"{name}.jsonl: {re.escape(message)}"):
            bad.system_prompt()


def test_a_hub_id_that_is_not_cached_is_one_line_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(BadInput, match="nobody/no-such-dataset: not a local file or folder, and the Hub dataset"):
        read_rows("nobody/no-such-dataset", "problem", "answer")


def test_dotted_paths_reach_into_dicts_and_lists():
    row = {"a": {"b": [{"c": 1}, {"c": 2}]}}
    assert get_field(row, "a.b.1.c") == 2 and get_field(row, "a.b.-1.c") == 2
    for missing in ("a.x", "a.b.5.c", "a.b.0.c.d"):
        with pytest.raises(KeyError):
            get_field(row, missing)


# Per format: (gold, response, verdict). Only the final marker of the declared format counts; a
# restatement, a marker of another format, or a marker in the middle of a line never does.
TABLE = [
    ("answer-line", "5", "Answer: 5", "correct"),
    ("answer-line", "5", "work\nAnswer: $5$.", "correct"),
    ("answer-line", "5", "Answer: 4\nno, wait\nAnswer: 5", "correct"),
    ("answer-line", "5", "Answer: 5\nAnswer: 4", "incorrect"),
    ("answer-line", "5", "The Answer: 5", "no_answer"),
    ("answer-line", "5", "the answer is 5", "no_answer"),
    ("answer-line", "5", "\\boxed{5}", "no_answer"),
    ("answer-line", "5", "Answer:", "no_answer"),
    ("answer-line", "\\frac{1}{2}", "Answer: 0.5", "correct"),
    ("gsm8k", "72", "#### 72", "correct"),
    ("gsm8k", "He has 70 + 2.\n#### 72", "so\n####72", "correct"),  # the gold read from a GSM8K rationale
    ("gsm8k", "72", "#### 71\n#### 72", "correct"),
    ("gsm8k", "72", "#### 72\n#### 71", "incorrect"),
    ("gsm8k", "72", "the total is #### 72", "no_answer"),
    ("gsm8k", "72", "Answer: 72", "no_answer"),
    ("boxed", "Adding, $2 + 3 = \\boxed{5}$.", "\\boxed{5}", "correct"),  # the gold read from a MATH solution
    ("boxed", "5", "Answer: 5", "no_answer"),
]


@pytest.mark.parametrize("fmt,answer,response,verdict", TABLE)
def test_each_format_reads_only_its_final_marker(fmt, answer, response, verdict):
    task = get_task("math", path="unused.jsonl", answer_format=fmt)
    assert task.verify(Problem("p", "hard_train", "What is it?", answer), response).value == verdict


@pytest.mark.parametrize("fmt,response,marker", [("answer-line", "a\nAnswer: 3\nb\nAnswer: 5", "Answer: 3"),
                                                  ("gsm8k", "a\n#### 3\n#### 5", "#### 3"),
                                                  ("boxed", "a \\boxed{3} \\boxed{5}", "\\boxed{3}")])
def test_a_prefix_ends_before_the_first_marker_of_the_format(fmt, response, marker):
    task = get_task("math", path="unused.jsonl", answer_format=fmt)
    assert task.answer_start(response) == response.index(marker)


def test_a_jsonl_error_names_the_line_an_editor_shows_blank_lines_counted(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text('{"problem": "1 + 1?", "answer": "2"}\n\n{"problem": "2 + 2?", "answer": "4"}\n'
                    '{"problem": "3 + 3?"}\n')
    with pytest.raises(BadInput, match="b.jsonl: line 4: field answer: missing"):
        read_rows(str(path), "problem", "answer")


def test_a_text_over_the_limit_is_refused_before_it_is_tokenized(tmp_path):
    from prefixrl.rollout.limits import MAX_TEXT

    rows = [{"problem": "1 + 1?", "answer": "2"}, {"problem": "x" * (MAX_TEXT + 1), "answer": "1"}]
    with pytest.raises(BadInput, match=f"big.jsonl: line 2: field problem: {MAX_TEXT + 1} characters, over the limit"):
        read_rows(write(tmp_path / "big.jsonl", rows), "problem", "answer")
    assert len(read_rows(write(tmp_path / "ok.jsonl", [{"problem": "x" * MAX_TEXT, "answer": "1"}]),
                         "problem", "answer")) == 1
