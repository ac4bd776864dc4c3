"""Bad input through the real CLI: a one-line `prefixrl: error:` naming file, row and field, exit code 2,
and nothing written. Traces that fail re-verification are reported and excluded, never trained on."""

import json
from dataclasses import asdict, replace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import pretrain_tiny, reference_traces

from prefixrl.cli import main
from prefixrl.prefixes import cut_prefixes, save_prefixes
from prefixrl.tokenizer import build_tokenizer
from prefixrl.traces import save_traces


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    pretrain_tiny(d / "base", steps=5, hard_steps=6)
    return d


def one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("prefixrl: error:") and "\n" not in err, err
    for n in needles:
        assert n in err, err
    return err


def prefixes_cmd(d, traces, out):
    return ["prefixes", "--model", str(d / "base"), "--traces", str(traces), "--out", str(out)]


def test_malformed_trace_file(d, task, tok, tmp_path, capsys):
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"PAR1 this is not parquet")
    assert main(prefixes_cmd(d, junk, tmp_path / "p.parquet")) == 2
    one_line_error(capsys, str(junk), "not a readable Parquet file")
    bad_row = tmp_path / "badrow.parquet"
    rows = [asdict(t) for t in reference_traces(task, tok, 2)]
    rows[1]["samples"] = -3
    pq.write_table(pa.Table.from_pylist(rows), bad_row)
    assert main(prefixes_cmd(d, bad_row, tmp_path / "p.parquet")) == 2
    one_line_error(capsys, str(bad_row), "row 1", "field samples")
    assert not (tmp_path / "p.parquet").exists()


def test_traces_failing_reverification_are_reported_and_excluded(d, task, tok, tmp_path, capsys):
    traces = reference_traces(task, tok, 3)
    wrong = replace(traces[1], answer=str((int(traces[1].answer) + 1) % 10))  # the trace no longer solves it
    save_traces(tmp_path / "t.parquet", [traces[0], wrong, traces[2]])
    assert main(prefixes_cmd(d, tmp_path / "t.parquet", tmp_path / "p.parquet")) == 0
    cap = capsys.readouterr()
    assert "row 1" in cap.err and "fails re-verification" in cap.err
    assert "6 prefixes from 2 traces" in cap.out


def test_prefix_longer_than_its_trace(d, task, tok, tmp_path, capsys):
    [p] = cut_prefixes(reference_traces(task, tok, 1), task, tok, k=1)
    save_prefixes(tmp_path / "p.parquet", [replace(p, trace_len=p.cut - 1)])
    out = tmp_path / "run"
    assert main(["train", "--model", str(d / "base"), "--prefixes", str(tmp_path / "p.parquet"), "--out", str(out),
                 "--steps", "1"]) == 2
    one_line_error(capsys, "p.parquet", "row 0", "field cut", "longer than its trace")
    assert not out.exists()


def test_trace_from_another_tokenizer(d, task, tmp_path, capsys):
    other = build_tokenizer("pairs")
    save_traces(tmp_path / "t.parquet", reference_traces(task, other, 2))
    assert main(prefixes_cmd(d, tmp_path / "t.parquet", tmp_path / "p.parquet")) == 2
    one_line_error(capsys, "t.parquet", "row 0", "field tokenizer")
    assert not (tmp_path / "p.parquet").exists()


def test_unknown_task_in_a_model_folder(d, tmp_path, capsys):
    import shutil

    shutil.copytree(d / "base", tmp_path / "base")
    meta = json.loads((tmp_path / "base" / "prefixrl.json").read_text())
    meta["task"]["name"] = "sudoku"
    (tmp_path / "base" / "prefixrl.json").write_text(json.dumps(meta))
    assert main(["eval", "--model", str(tmp_path / "base"), "--samples", "2", "--k", "1"]) == 2
    one_line_error(capsys, "unknown task 'sudoku'")


@pytest.mark.parametrize("args,needles", [
    (["train", "--method", "nope"], ["unknown method 'nope'"]),
    (["train", "--model", "/nonexistent/model"], ["/nonexistent/model", "model folder not found"]),
    (["eval", "--model", "/nonexistent", "--samples", "4", "--k", "8"], ["k <= samples"]),
    (["train", "--preset", "huge"], ["unknown preset 'huge'"]),
])
def test_unknown_names_and_missing_folders(args, needles, capsys):
    assert main(args) == 2
    one_line_error(capsys, *needles)


def test_inconsistent_config_values(d, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--model", str(d / "base"), "--method", "rl", "--out", str(out)]
    assert main([*base, "--mix", "1.5"]) == 2
    one_line_error(capsys, "mix must be in [0, 1]")
    assert main([*base, "--samples-per-prompt", "1"]) == 2
    one_line_error(capsys, "samples_per_prompt >= 2")
    assert main([*base, "--checkpoint-every", "0"]) == 2
    one_line_error(capsys, "checkpoint_every must be >= 1")
    assert not out.exists()
    assert main(["prefixes", "--model", str(d / "base"), "--low", "0.9", "--high", "0.2"]) == 2
    one_line_error(capsys, "0 <= low <= high <= 1")


def test_every_rl_setting_is_checked_in_one_place_before_anything_is_written(d, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--model", str(d / "base"), "--method", "rl", "--out", str(out)]
    for flags, needle in [(["--eval-every", "0"], "eval_every must be >= 1"),
                          (["--eval-samples", "0"], "eval_samples must be >= 1"),
                          (["--lr", "nan"], "lr must be finite"), (["--lr", "1e999"], "lr must be finite"),
                          (["--temperature", "0"], "temperature must be finite and > 0"),
                          (["--steps", "-3"], "steps must be >= 0"),
                          (["--flops-budget", "-1"], "flops_budget must be finite and >= 0"),
                          (["--max-new-tokens", "0"], "max_new_tokens must be >= 1"),
                          (["--grad-clip", "inf"], "grad_clip must be finite")]:
        capsys.readouterr()
        assert main([*base, *flags]) == 2, flags
        one_line_error(capsys, needle)
    assert not out.exists()


def test_prompt_plus_prefix_plus_completion_must_fit_the_models_positions(d, task, tok, tmp_path, capsys):
    traces = reference_traces(task, tok, 4)
    save_traces(tmp_path / "t.parquet", traces)
    save_prefixes(tmp_path / "p.parquet", cut_prefixes(traces, task, tok, seed=0))
    out = tmp_path / "run"
    assert main(["train", "--model", str(d / "base"), "--prefixes", str(tmp_path / "p.parquet"), "--traces",
                 str(tmp_path / "t.parquet"), "--problems", "4", "--max-new-tokens", "250", "--out", str(out)]) == 2
    one_line_error(capsys, "exceeds the model's 256 positions", "--max-new-tokens")
    assert not out.exists()


def test_quick_sets_defaults_but_never_overrides_a_flag():
    from prefixrl.experiments.demo import DemoConfig

    quick = DemoConfig(quick=True).resolved()
    assert (quick.rl_steps, quick.train_problems) == (60, 16)
    assert DemoConfig(quick=True, rl_steps=100).resolved().rl_steps == 100
    assert DemoConfig(rl_steps=7).resolved().rl_steps == 7 and DemoConfig().resolved().rl_steps == 300
