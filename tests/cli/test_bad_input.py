"""Bad input through the real CLI: a one-line `prefixrl: error:` naming file, row and field, exit code 2,
and nothing written. Traces that fail re-verification are reported and excluded, never trained on."""

import json
from dataclasses import asdict, replace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import pretrain_tiny, reference_traces

from prefixrl.data.prefixes import cut_prefixes, save_prefixes
from prefixrl.data.traces import save_traces
from prefixrl.embedded.tokenizer import build_tokenizer
from prefixrl.io.store import sealed
from prefixrl_lab.cli import main


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
    pq.write_table(sealed(pa.Table.from_pylist(rows)), bad_row)  # hashed as a store is: the row check speaks
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
    save_prefixes(tmp_path / "p.parquet", [replace(p, trace_len=p.cut - 1)], tok)
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
    one_line_error(capsys, "prefixrl.json does not match its hash")  # a sealed base refuses the edit
    (tmp_path / "base" / "manifest.json").unlink()  # a folder of the user's own, with no manifest
    assert main(["eval", "--model", str(tmp_path / "base"), "--samples", "2", "--k", "1"]) == 2
    one_line_error(capsys, "unknown task 'sudoku'")


@pytest.mark.parametrize("args,needles", [
    (["train", "--method", "nope"], ["unknown method 'nope'"]),
    (["train", "--model", "/nonexistent/model"], ["/nonexistent/model", "no model folder there"]),
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
                          (["--eval-samples", "0"], "eval_samples must be in [1, 2^20"),
                          (["--lr", "nan"], "lr must be finite"), (["--lr", "1e999"], "lr must be finite"),
                          (["--temperature", "0"], "temperature must be finite and >= 0.0001"), (["--temperature", "1e-50"], "below it float32 sampling turns to NaN"),
                          (["--steps", "-3"], "steps must be >= 0"),
                          (["--flops-budget", "-1"], "flops_budget must be >= 0"),
                          (["--max-new-tokens", "0"], "max_new_tokens must be >= 1"),
                          (["--grad-clip", "inf"], "grad_clip must be finite"),
                          (["--prefix-schedule", "curriculum"], "unknown prefix schedule 'curriculum'"),
                          (["--prefix-schedule", "adaptive"], "needs a method that draws prefixed problems, not rl"),
                          (["--harvest"], "--harvest needs a method that draws both plain and prefixed"),
                          (["--method", "prefixrl-only", "--harvest"], "not prefixrl-only with mix 1"),
                          (["--method", "prefixrl", "--prefix-target", "1"], "prefix_target must be in (0, 1)"),
                          (["--method", "prefixrl", "--prefix-band", "0.5"], "prefix_band must be in [0, 0.5)"),
                          (["--method", "prefixrl", "--prefix-rungs", "1"], "prefix_rungs must be >= 2")]:
        capsys.readouterr()
        assert main([*base, *flags]) == 2, flags
        one_line_error(capsys, needle)
    assert not out.exists()


def test_the_adaptive_schedule_without_traces_is_one_line(d, task, tok, tmp_path, capsys):
    """The ladders are cut from the traces, so --prefix-schedule adaptive with no trace store is refused
    (the paper's fixed rule needs only the prefix file)."""
    save_prefixes(tmp_path / "p.parquet", cut_prefixes(reference_traces(task, tok, n=4), task, tok), tok)
    out = tmp_path / "run"
    assert main(["train", "--model", str(d / "base"), "--method", "prefixrl", "--prefixes", str(tmp_path / "p.parquet"),
                 "--traces", str(tmp_path / "missing.parquet"), "--prefix-schedule", "adaptive", "--problems", "4",
                 "--out", str(out)]) == 2
    one_line_error(capsys, "missing.parquet")
    assert not out.exists()


def test_prompt_plus_prefix_plus_completion_must_fit_the_models_positions(d, task, tok, tmp_path, capsys):
    traces = reference_traces(task, tok, 4)
    save_traces(tmp_path / "t.parquet", traces)
    save_prefixes(tmp_path / "p.parquet", cut_prefixes(traces, task, tok, seed=0), tok)
    out = tmp_path / "run"
    assert main(["train", "--model", str(d / "base"), "--prefixes", str(tmp_path / "p.parquet"), "--traces",
                 str(tmp_path / "t.parquet"), "--problems", "4", "--max-new-tokens", "250", "--out", str(out)]) == 2
    one_line_error(capsys, "exceeds the model's 256 positions", "--max-new-tokens")
    assert not out.exists()


def test_quick_sets_defaults_but_never_overrides_a_flag():
    from prefixrl_lab.configs import DemoConfig

    quick = DemoConfig(quick=True).resolved()
    assert (quick.rl_steps, quick.train_problems) == (60, 16)
    assert DemoConfig(quick=True, rl_steps=100).resolved().rl_steps == 100
    assert DemoConfig(rl_steps=7).resolved().rl_steps == 7 and DemoConfig().resolved().rl_steps == 300


def user_folder(d, tmp_path):
    """A copy of the base without its manifest: a Hugging Face folder of the user's own, unsealed."""
    import shutil

    shutil.copytree(d / "base", tmp_path / "own")
    (tmp_path / "own" / "manifest.json").unlink()
    return tmp_path / "own"


@pytest.mark.parametrize("name,damage,needle", [
    ("model.safetensors", lambda b: b[: len(b) // 2], "cannot load the model"),  # truncated
    ("model.safetensors", lambda b: b"", "cannot load the model"),  # empty
    ("config.json", lambda b: b"{not json", "cannot load"),
    ("tokenizer.json", lambda b: b"[1, 2", "cannot load its tokenizer"),
    ("prefixrl.json", lambda b: b"{oops", "prefixrl.json: cannot load it"),
    ("prefixrl.json", lambda b: json.dumps({"calibration": {}}).encode(), "key task: missing"),
    ("prefixrl.json", lambda b: json.dumps({"task": {"name": "chain", "colour": 3}}).encode(), "key task"),
])
def test_damaged_files_of_a_users_own_model_folder_are_one_line_errors(d, tmp_path, capsys, name, damage, needle):
    own = user_folder(d, tmp_path)
    (own / name).write_bytes(damage((own / name).read_bytes()))
    assert main(["eval", "--model", str(own), "--samples", "2", "--k", "1"]) == 2
    one_line_error(capsys, str(own), needle)


def test_bad_utf8_in_a_jsonl_file_names_the_file_and_row(d, tmp_path, capsys):
    (tmp_path / "p.jsonl").write_bytes(b'{"problem": "1+1", "answer": "2"}\n{"problem": "\xff\xfe", "answer": "1"}\n')
    assert main(["eval", "--model", str(d / "base"), "--task", "math", "--task-file", str(tmp_path / "p.jsonl"),
                 "--samples", "2", "--k", "1"]) == 2
    one_line_error(capsys, "p.jsonl: line 2: not valid UTF-8")
    (tmp_path / "imp.jsonl").write_bytes(b'{"problem_id": "x", "trace": "\xc3"}\n')
    assert main(["collect", "--model", str(d / "base"), "--import-file", str(tmp_path / "imp.jsonl"), "--out",
                 str(tmp_path / "t.parquet"), "--problems", "2"]) == 2
    one_line_error(capsys, "imp.jsonl: line 1: not valid UTF-8")
    assert not (tmp_path / "t.parquet").exists()


def test_imported_characters_the_tokenizer_cannot_represent_are_an_error_not_dropped(d, task, tmp_path, capsys):
    p = task.problems("hard_train", 1, 0)[0]
    row = {"problem_id": p.id, "trace": task.solution(p).replace(" ", " é ", 1)}
    (tmp_path / "imp.jsonl").write_text(json.dumps(row) + "\n")
    assert main(["collect", "--model", str(d / "base"), "--import-file", str(tmp_path / "imp.jsonl"), "--out",
                 str(tmp_path / "t.parquet"), "--problems", "1"]) == 2
    one_line_error(capsys, "imp.jsonl: line 1: field trace", "cannot represent it exactly")


def test_ctrl_c_is_one_line_saying_how_to_resume_and_exit_130(d, tmp_path):
    """A real SIGINT to a real training run, once it has logged its first step."""
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    # as a terminal starts it: a shell's background job (a CI script run with `&`) ignores SIGINT, and that
    # disposition is inherited, so Python would install no KeyboardInterrupt handler and never stop
    proc = subprocess.Popen([sys.executable, "-m", "prefixrl_lab", "train", "--model", str(d / "base"), "--method", "rl",
                             "--steps", "100000", "--eval-every", "1000", "--out", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not ((run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").read_text().strip()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # it did not stop: ask it where it is (`kill -USR1`), then fail with that
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2)
        proc.kill()
        pytest.fail(f"no exit 60 s after SIGINT; its stacks:\n{proc.communicate()[1][-6000:]}")
    assert proc.returncode == 130, err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last.startswith("prefixrl: interrupted") and "--resume" in last, err
    assert "Traceback" not in err, err


def test_a_trace_row_with_infinite_flops_is_refused(d, task, tok, tmp_path, capsys):
    rows = [asdict(t) for t in reference_traces(task, tok, 2)]
    rows[0]["flops"] = float("inf")
    pq.write_table(sealed(pa.Table.from_pylist(rows)), tmp_path / "inf.parquet")
    assert main(prefixes_cmd(d, tmp_path / "inf.parquet", tmp_path / "p.parquet")) == 2
    one_line_error(capsys, "inf.parquet", "row 0", "field flops", "finite")


def test_ctrl_c_from_a_terminal_while_the_verifiers_warm_up_is_one_line(tmp_path):
    """A terminal sends SIGINT to the whole foreground process group; the verifier workers, mid-way through
    importing math-verify, must not print tracebacks of their own around the run's one line."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from prefixrl.rollout.model import ModelShape, build_model

    tok = build_tokenizer("bytes")
    build_model(tok, ModelShape(hidden=32, layers=1, heads=2, ffn=64, max_positions=256), arch="qwen2",
                seed=0).save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps({"problem": f"{a} + 1?", "answer": str(a + 1)})
                                                for a in range(20)))
    proc = subprocess.Popen([sys.executable, "-m", "prefixrl_lab", "eval", "--model", str(tmp_path / "model"),
                             "--task", "math", "--dataset", str(tmp_path / "p.jsonl"), "--split", "hard_train",
                             "--samples", "2", "--k", "1", "--max-new-tokens", "8"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    children = f"/proc/{proc.pid}/task/{proc.pid}/children"
    deadline = time.monotonic() + 120
    while not (os.path.exists(children) and open(children).read().split()):  # the workers have started
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    time.sleep(0.3)  # inside their warm-up (importing math-verify and sympy takes seconds)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("prefixrl: interrupted"), err


def test_an_imported_trace_over_the_text_limit_is_one_line_before_tokenizing(d, task, tmp_path, capsys):
    from prefixrl.rollout.limits import MAX_TEXT

    pid = task.problems("hard_train", 1, 0)[0].id
    (tmp_path / "imp.jsonl").write_text(json.dumps({"problem_id": pid, "trace": "1" * (MAX_TEXT + 1)}) + "\n")
    assert main(["collect", "--model", str(d / "base"), "--import-file", str(tmp_path / "imp.jsonl"), "--out",
                 str(tmp_path / "t.parquet"), "--problems", "2"]) == 2
    one_line_error(capsys, "imp.jsonl: line 1: field trace", "over the limit")
    assert not (tmp_path / "t.parquet").exists()


def test_an_import_that_names_a_problem_twice_is_refused_before_anything_is_written(d, task, tok, tmp_path, capsys):
    traces = reference_traces(task, tok, 3)
    rows = [{"problem_id": t.problem_id, "trace": t.response} for t in traces] + [
        {"problem_id": traces[1].problem_id, "trace": traces[1].response}]
    (tmp_path / "imp.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["collect", "--model", str(d / "base"), "--import-file", str(tmp_path / "imp.jsonl"), "--out",
                 str(tmp_path / "t.parquet"), "--problems", "3"]) == 2
    one_line_error(capsys, "imp.jsonl: line 4: field problem_id", "is named again (first at line 2)")
    assert not (tmp_path / "t.parquet").exists() and not (tmp_path / "t.json").exists()


@pytest.mark.parametrize("args,needle", [
    (["export", "--format", "verl", "--prefixed-samples", "2"], "verl's agent loop is not told a sample's place"),
    (["export", "--format", "trl", "--prefixed-samples", "0"], "prefixed_samples must be >= 1, got 0"),
    (["train", "--prefixed-samples", "9"], "prefixed_samples must be in [1, 8] (the group's size), got 9"),
    (["train", "--method", "luffy", "--prefixed-samples", "2"], "method luffy puts the trace in the group"),
])
def test_a_group_split_that_cannot_be_is_one_line(d, tmp_path, capsys, args, needle):
    assert main([*args, "--model", str(d / "base"), "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, needle)
    assert not (tmp_path / "out").exists()
