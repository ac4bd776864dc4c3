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
