"""Runs are bound to the content of their problems: a resume on other data, prefixes or traces of another
problem set, and every checkpoint corrupt are refused in one line before anything in --out is written."""

import json
from dataclasses import replace

import pytest
from conftest import pretrain_tiny, reference_traces
from test_bad_input import one_line_error

from prefixrl.data.prefixes import cut_prefixes, save_prefixes
from prefixrl.data.tasks.chain import ChainTask
from prefixrl.data.traces import save_traces
from prefixrl_lab.cli import main


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return pretrain_tiny(tmp_path_factory.mktemp("identity") / "base", steps=5, hard_steps=6)


def rl(base, out, *flags):
    return ["train", "--model", str(base), "--method", "rl", "--problems", "4", "--steps", "2", "--prompts-per-step",
            "2", "--samples-per-prompt", "2", "--eval-every", "2", "--eval-problems", "2", "--eval-samples", "1",
            "--max-new-tokens", "16", "--out", str(out), *flags]


def test_a_resume_on_other_problems_or_settings_is_refused_and_leaves_the_run_as_it_was(base, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(rl(base, out)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    # chain ids are positions: hard_train-00000 is another problem under another --data-seed
    for flags, needle in ((["--data-seed", "1"], "(data)"), (["--lr", "1e-3"], "(lr)")):
        capsys.readouterr()
        assert main(rl(base, out, "--resume", *flags)) == 2, flags
        one_line_error(capsys, str(out), needle)
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # config.json included
    assert main(rl(base, out, "--resume")) == 0  # the same command is the same run: its result handed back


def test_prefixes_and_traces_of_another_problem_set_are_refused(base, task, tok, tmp_path, capsys):
    seed0 = reference_traces(task, tok, 4, seed=0)
    four_steps = ChainTask(easy_max_steps=4, hard_steps=4)
    for name, traces in (("seed0", seed0), ("steps4", reference_traces(four_steps, tok, 4))):
        save_traces(tmp_path / f"{name}.parquet", traces)
        save_prefixes(tmp_path / f"{name}-p.parquet", cut_prefixes(traces, task if name == "seed0" else four_steps, tok), tok)
    train = ["train", "--model", str(base), "--method", "prefixrl", "--problems", "4", "--steps", "1"]
    for args, needle in (
            ([*train, "--prefixes", str(tmp_path / "seed0-p.parquet"), "--data-seed", "1"], "seed0-p.parquet: problem"),
            ([*train, "--prefixes", str(tmp_path / "steps4-p.parquet")], "steps4-p.parquet: problem"),
            ([*train, "--method", "sft-rl", "--traces", str(tmp_path / "seed0.parquet"), "--data-seed", "1"],
             "seed0.parquet: problem"),
            (["export", "--model", str(base), "--prefixes", str(tmp_path / "seed0-p.parquet"), "--problems", "4",
              "--data-seed", "1"], "seed0-p.parquet: problem")):
        out = tmp_path / "out"
        capsys.readouterr()
        assert main([*args, "--out", str(out)]) == 2, args
        one_line_error(capsys, needle, "another problem set")
        assert not out.exists()
    # a file none of whose problems is the run's: refused too
    save_traces(tmp_path / "other.parquet", [replace(t, problem_id=t.problem_id + "x") for t in seed0[:2]])
    capsys.readouterr()
    assert main([*train, "--method", "sft-rl", "--traces", str(tmp_path / "other.parquet"), "--out",
                 str(tmp_path / "o")]) == 2
    one_line_error(capsys, "none of its 2 traces is of this run's 4 problems")
    # the same set trains
    assert main([*train, "--prefixes", str(tmp_path / "seed0-p.parquet"), "--traces", str(tmp_path / "seed0.parquet"),
                 "--prompts-per-step", "2",
                 "--samples-per-prompt", "2", "--eval-problems", "2", "--eval-samples", "1", "--max-new-tokens", "8",
                 "--out", str(tmp_path / "ok")]) == 0
    assert json.loads((tmp_path / "ok" / "config.json").read_text())["prefixes"].endswith("seed0-p.parquet")


def test_a_finished_runs_result_is_verified_before_it_is_handed_back(base, tmp_path, capsys):
    """A finished run's result.json is what --resume and the benches read back instead of training again:
    an edited number in it is refused, not reported."""
    out = tmp_path / "run"
    assert main(rl(base, out)) == 0
    saved = json.loads((out / "result.json").read_text())
    saved["result"]["ledger"] = {k: v * 87 for k, v in saved["result"]["ledger"].items()}
    (out / "result.json").write_text(json.dumps(saved))
    capsys.readouterr()
    assert main(rl(base, out, "--resume")) == 2
    one_line_error(capsys, "result.json: content does not match the hash stored with it")


def test_stores_record_their_task_and_a_stage_of_another_task_refuses_them(base, task, tok, tmp_path, capsys):
    """A trace or prefix store made for the 4-step chain, read by a stage of the 6-step task: refused by every
    stage that reads it (prefixes, train, eval --fractions, export), naming both tasks."""
    four = pretrain_tiny(tmp_path / "four", steps=1, hard_steps=4)
    four_task = ChainTask(easy_max_steps=4, hard_steps=4)
    rows = [{"problem_id": t.problem_id, "trace": t.response} for t in reference_traces(four_task, tok, 3)]
    (tmp_path / "imp.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    traces, prefixes = tmp_path / "t.parquet", tmp_path / "p.parquet"
    assert main(["collect", "--model", str(four), "--problems", "3", "--import-file", str(tmp_path / "imp.jsonl"),
                 "--out", str(traces)]) == 0
    assert main(["prefixes", "--model", str(four), "--traces", str(traces), "--out", str(prefixes)]) == 0
    for args in (["prefixes", "--traces", str(traces), "--out", str(tmp_path / "p2.parquet")],
                 ["train", "--prefixes", str(prefixes), "--traces", str(traces), "--problems", "3", "--out",
                  str(tmp_path / "run")],
                 ["eval", "--traces", str(traces), "--fractions", "0.5", "--out", str(tmp_path / "e.json")],
                 ["export", "--prefixes", str(prefixes), "--problems", "3", "--out", str(tmp_path / "rows.parquet")]):
        capsys.readouterr()
        assert main([args[0], "--model", str(base), *args[1:]]) == 2, args
        one_line_error(capsys, "made for task", '"hard_steps": 4', '"hard_steps": 6', "differ in")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["four", "imp.jsonl", "p.parquet", "t.json", "t.parquet"]
