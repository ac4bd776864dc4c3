"""`prefixrl eval --per-problem FILE`: one line per problem, consistent with the aggregate pass@k."""

import json

import pytest
from conftest import pretrain_tiny

from prefixrl.data.evaluate import pass_at_k
from prefixrl_lab.cli import main


def test_per_problem_rows_add_up_to_the_aggregate_and_are_never_overwritten(tmp_path, capsys):
    base = pretrain_tiny(tmp_path / "base", steps=20)
    rows_path, out = tmp_path / "per_problem.jsonl", tmp_path / "eval.json"
    args = ["eval", "--model", str(base), "--split", "hard_train", "--problems", "6", "--samples", "8",
            "--k", "1", "4", "--per-problem", str(rows_path), "--out", str(out), "--verifier-workers", "1"]
    assert main(args) == 0
    res = json.loads(out.read_text())
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    assert len(rows) == 6 and len({r["problem_id"] for r in rows}) == 6
    assert all(r["samples"] == 8 and 0 <= r["correct"] <= 8 and r["split"] == "hard_train" for r in rows)
    for k in (1, 4):
        assert all(r[f"pass@{k}"] == pass_at_k(8, r["correct"], k) for r in rows)
        assert sum(r[f"pass@{k}"] for r in rows) / 6 == pytest.approx(res[f"pass@{k}"])
    assert sum(r["correct"] for r in rows) == res["verdicts"]["correct"]
    before = rows_path.read_bytes()
    capsys.readouterr()
    again = [a for a in args if a not in ("--out", str(out))]
    assert main(again) == 2  # the per-problem file exists: refused, left as it was
    err = capsys.readouterr().err
    assert "per_problem.jsonl" in err and "already exists" in err and rows_path.read_bytes() == before


def test_problem_counts_all_and_auto(tmp_path, capsys):
    from prefixrl.cli.options import problem_count
    from prefixrl.io.errors import BadInput

    assert problem_count("auto", "math", 64) is None and problem_count("all", "math", 64) is None
    assert problem_count("auto", "chain", 64) == 64 and problem_count(7, "math", 64) == 7
    with pytest.raises(BadInput, match="generates problems without end"):
        problem_count("all", "chain", 64)
    base = pretrain_tiny(tmp_path / "base")
    assert main(["eval", "--model", str(base), "--problems", "all", "--samples", "2", "--k", "1"]) == 2
    assert "--problems all" in capsys.readouterr().err
    assert main(["eval", "--model", str(base), "--problems", "0", "--samples", "2", "--k", "1"]) == 2


def test_success_against_prefix_length_per_problem(tmp_path, task, tok):
    from conftest import reference_traces

    from prefixrl.data.traces import save_traces

    base = pretrain_tiny(tmp_path / "base", steps=20)
    traces = reference_traces(task, tok, n=4)
    save_traces(tmp_path / "traces.parquet", traces, tokenizer=tok)
    out, rows_path, png = tmp_path / "f.json", tmp_path / "f.jsonl", tmp_path / "f.png"
    assert main(["eval", "--model", str(base), "--traces", str(tmp_path / "traces.parquet"), "--fractions", "0", "0.5",
                 "0.95", "--samples", "4", "--k", "1", "2", "--per-problem", str(rows_path), "--plot", str(png),
                 "--out", str(out), "--verifier-workers", "1"]) == 0
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    assert len(rows) == 4 * 3 and {r["problem_id"] for r in rows} == {t.problem_id for t in traces}
    for t in traces:
        cuts = [r["cut"] for r in rows if r["problem_id"] == t.problem_id]
        answer_at = task.answer_start(t.response)
        assert cuts[0] == 0 and cuts == sorted(cuts)  # longer fractions, longer prefixes ...
        assert all(len(tok.decode(t.token_ids[:c])) <= answer_at for c in cuts)  # ... never past the answer
    res = json.loads(out.read_text())
    for f in ("0.0", "0.5", "0.95"):
        mean = sum(r["pass@1"] for r in rows if str(r["fraction"]) == f) / 4
        assert res["by_fraction"][f]["pass@1"] == pytest.approx(mean)
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["eval", "--model", str(base), "--fractions", "0.5"]) == 2  # no --traces: refused
    assert main(["eval", "--model", str(base), "--traces", str(tmp_path / "traces.parquet"), "--fractions", "1.5"]) == 2
