"""`prefixrl select`: each problem sampled until its first verified success or the budget; the ones never
solved are written in the dataset's own columns, with every problem's figures beside them."""

import json

from prefixrl.data.traces import charged_flops
from prefixrl.embedded.tokenizer import build_tokenizer
from prefixrl.rollout.model import ModelShape, build_model
from prefixrl_lab.cli import main


def test_the_table_records_the_first_success_and_the_samples_drawn(task, tok):
    from prefixrl.cli.select import hardness_table
    from prefixrl.data.collect import Collection
    from prefixrl.data.traces import Trace

    problems = task.problems("hard_train", 3, 0)
    a, b, c = problems
    trace = Trace(b.id, b.question, b.answer, task.solution(b), [1, 2], "fp", "select:m", 1.0, 1.0, 6, 1e6)
    col = Collection([trace], {a.id: 8, b.id: 8, c.id: 8}, {a.id: 2e6, b.id: 2e6, c.id: 2e6})
    table = hardness_table(problems, col)
    assert [r["solved"] for r in table] == [False, True, False]
    assert table[1]["first_success_at"] == 6 and table[0]["first_success_at"] is None
    assert [r["samples"] for r in table] == [8, 8, 8] and [r["problem_id"] for r in table] == [a.id, b.id, c.id]


def select_args(tmp_path, out):
    return ["--model", str(tmp_path / "model"), "--task", "math", "--dataset", str(tmp_path / "dapo.jsonl"),
            "--question-field", "prompt", "--answer-field", "reward_model.ground_truth", "--answer-format",
            "answer-line", "--id-field", "extra_info.index", "--max-new-tokens", "8", "--out", str(out),
            "--verifier-workers", "1"]


def test_select_writes_a_dapo_layout_in_its_own_columns(tmp_path):
    tok = build_tokenizer("bytes")
    build_model(tok, ModelShape(hidden=32, layers=1, heads=2, ffn=64, max_positions=256), arch="qwen2",
                seed=0).save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    rows = [{"data_source": "math_dapo", "prompt": [{"role": "user", "content": f"What is {a} + {a}?"}],
             "reward_model": {"ground_truth": str(2 * a), "style": "rule"}, "extra_info": {"index": f"i{a}"}}
            for a in range(10)]
    (tmp_path / "dapo.jsonl").write_text("\n".join(json.dumps(r) for r in rows + rows[:3]))
    out = tmp_path / "sel"
    assert main(["select", *select_args(tmp_path, out), "--budget", "2", "--per-round", "2"]) == 0
    selected = [json.loads(x) for x in (out / "selected.jsonl").read_text().splitlines()]
    table = [json.loads(x) for x in (out / "per_problem.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    # a random model writes no answer line in 8 tokens: every hard-train problem drew the whole budget
    assert len(selected) == len(table) == summary["selected"] and all(r["samples"] == 2 for r in table)
    assert summary["samples"] == 2 * len(table) and set(summary["ledger"]) == {"select/prefill", "select/decode"}
    assert charged_flops(out / "sampling.parquet") == 0.0  # never read as a collection's cost
    for row in selected:
        original = next(r for r in rows if r["extra_info"]["index"] == row["prefixrl_id"].split(":", 1)[1])
        assert {k: row[k] for k in original} == original and row["prefixrl_samples"] == 2
    flags = ["--budget", "2", "--per-round", "2"]
    assert main(["select", *select_args(tmp_path, out), *flags]) == 2  # an existing selection is never overwritten
    assert main(["select", *select_args(tmp_path, out), *flags, "--resume"]) == 0  # finished: reused as it is
    assert json.loads((out / "summary.json").read_text()) == summary
    # the selected file is a dataset the next stage reads with the same flags
    assert main(["eval", "--model", str(tmp_path / "model"), "--task", "math", "--dataset", str(out / "selected.jsonl"),
                 "--question-field", "prompt", "--answer-field", "reward_model.ground_truth", "--answer-format",
                 "answer-line", "--id-field", "extra_info.index", "--split", "hard_train", "--samples", "2", "--k", "1",
                 "--max-new-tokens", "8", "--verifier-workers", "1"]) == 0
