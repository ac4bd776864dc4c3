"""Nothing the user made is lost: every stage claims its outputs before it writes (`prefixrl.io.outputs`).

An output that is an input, or an existing artifact, is refused with one line and exit 2, leaving every
byte of it as it was; a store being written is locked against a second writer; what a killed writer
left is cleaned up; a base model is written atomically and sealed, so a flipped byte is refused."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import pretrain_tiny, reference_traces
from test_bad_input import one_line_error

from prefixrl.data.prefixes import cut_prefixes, save_prefixes
from prefixrl.data.traces import save_traces
from prefixrl.io.outputs import Output, claim
from prefixrl.io.store import atomic_write
from prefixrl_lab.cli import main
from prefixrl_lab.configs import BenchConfig
from prefixrl_lab.theory.lab import TheoryConfig


@pytest.fixture(scope="module")
def d(tmp_path_factory, task):
    from prefixrl.rollout.model import load_tokenizer

    d = tmp_path_factory.mktemp("outputs")
    pretrain_tiny(d / "base", steps=2, hard_steps=6)
    tok = load_tokenizer(d / "base")
    traces = reference_traces(task, tok, 4)
    save_traces(d / "t.parquet", traces)
    save_prefixes(d / "p.parquet", cut_prefixes(traces, task, tok, seed=0), tok)
    return d


def snapshot(*paths):
    """Every byte of every file under `paths`, to show nothing changed."""
    out = {}
    for p in paths:
        files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
        out.update({str(f): f.read_bytes() for f in files})
    return out


def test_an_output_that_is_an_input_is_refused_and_the_input_survives(d, capsys):
    before = snapshot(d)
    cases = [
        (["prefixes", "--model", str(d / "base"), "--traces", str(d / "t.parquet"), "--out", str(d / "t.parquet")],
         "--out", "is the input --traces"),
        (["prefixes", "--model", str(d / "base"), "--traces", str(d / "t.parquet"), "--out", str(d / "t.parquet"),
          "--overwrite"], "--out", "is the input --traces"),  # --overwrite never lets an output replace an input
        (["export", "--model", str(d / "base"), "--prefixes", str(d / "p.parquet"), "--out", str(d / "p.parquet")],
         "--out", "is the input --prefixes"),
        (["train", "--model", str(d / "base"), "--out", str(d / "base"), "--method", "rl"], "--out", "is the input --model"),
        (["train", "--model", str(d / "base"), "--out", str(d / "base" / "run"), "--method", "rl"], "is inside the input"),
        (["train", "--model", str(d / "base" / "."), "--out", str(d), "--method", "rl"], "contains the input --model"),
        (["eval", "--model", str(d / "base"), "--samples", "2", "--k", "1", "--out", str(d / "base" / "config.json")],
         "is inside the input --model"),
        (["collect", "--model", str(d / "base"), "--out", str(d / "new.parquet"), "--import-file",
          str(d / "new.json")], "--out's summary (.json)", "is the input --import-file"),
    ]
    for args, *needles in cases:
        capsys.readouterr()
        assert main(args) == 2, args
        one_line_error(capsys, *needles)
    assert snapshot(d) == before


def test_an_existing_artifact_needs_overwrite_or_resume(d, tmp_path, capsys):
    (tmp_path / "x.parquet").write_bytes(b"the user's own file")
    before = snapshot(tmp_path)
    for args in (["prefixes", "--model", str(d / "base"), "--traces", str(d / "t.parquet")],
                 ["export", "--model", str(d / "base"), "--prefixes", str(d / "p.parquet")],
                 ["eval", "--model", str(d / "base"), "--samples", "2", "--k", "1"],
                 ["collect", "--model", str(d / "base"), "--problems", "2"]):
        capsys.readouterr()
        assert main([*args, "--out", str(tmp_path / "x.parquet")]) == 2, args
        one_line_error(capsys, "already exists", "--overwrite" if args[0] != "collect" else "--resume")
    assert main(["pretrain", "--out", str(d / "base"), "--steps", "1"]) == 2
    one_line_error(capsys, "already exists", "--overwrite")
    assert snapshot(tmp_path) == before
    # --overwrite replaces (atomically) an output that is not an input
    assert main(["prefixes", "--model", str(d / "base"), "--traces", str(d / "t.parquet"), "--out",
                 str(tmp_path / "x.parquet"), "--overwrite"]) == 0
    assert (tmp_path / "x.parquet").read_bytes() != before[str(tmp_path / "x.parquet")]


def test_an_output_under_a_file_or_of_the_wrong_kind_is_refused_before_any_work(d, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(["collect", "--model", str(d / "base"), "--problems", "2", "--out",
                 str(tmp_path / "afile" / "t.parquet")]) == 2
    one_line_error(capsys, "afile is a file, not a folder")
    assert main(["prefixes", "--model", str(d / "base"), "--traces", str(d / "t.parquet"), "--out", str(tmp_path)]) == 2
    one_line_error(capsys, "is a folder; it needs a file name")
    assert main(["train", "--model", str(d / "base"), "--method", "rl", "--out", str(tmp_path / "afile")]) == 2
    one_line_error(capsys, "is a file; it needs a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_failing_stage_leaves_no_folder_it_created(d, tmp_path, capsys):
    out = tmp_path / "deep" / "er" / "run"
    assert main(["train", "--model", str(tmp_path / "missing"), "--method", "rl", "--out", str(out)]) == 2
    one_line_error(capsys, "no model folder there")
    assert list(tmp_path.iterdir()) == []


def test_a_second_writer_is_refused_while_the_first_holds_the_store(d, tmp_path, capsys):
    """The first writer is another process, holding the claim as `collect` does."""
    out = tmp_path / "t.parquet"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from prefixrl.io.outputs import Output, claim
        with claim("collect", [Output(Path({str(out)!r}))], {{}}):
            print("held", flush=True)
            sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["collect", "--model", str(d / "base"), "--problems", "2", "--out", str(out)]) == 2
        one_line_error(capsys, "is being written by another prefixrl process")
    finally:
        holder.communicate("done\n", timeout=30)
    assert holder.returncode == 0 and not out.exists()
    with claim("collect", [Output(out)], {}):  # released: the next writer gets it
        pass


def test_temporary_files_a_killed_writer_left_are_removed_on_the_next_claim(tmp_path):
    run = tmp_path / "run"
    (run / "ckpt-000010").mkdir(parents=True)
    stale = [tmp_path / ".t.parquet.abc123.tmp", run / ".ckpt-000025.x1y2.tmp", run / ".metrics.jsonl.q.tmp"]
    stale[0].write_bytes(b"half")
    stale[1].mkdir()
    stale[2].write_bytes(b"half")
    keep = tmp_path / ".other.parquet.zz.tmp"  # another output's temporary: not ours to remove
    keep.write_bytes(b"x")
    with claim("train", [Output(tmp_path / "t.parquet"), Output(run, kind="folder", existing="resume")], {}):
        assert not any(p.exists() for p in stale)
    assert keep.exists() and (run / "ckpt-000010").is_dir()


def test_a_work_folder_is_reused_only_by_the_command_that_made_it(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's")
    assert main(["demo", "--out", str(tmp_path / "mine"), "--quick"]) == 2
    one_line_error(capsys, "was not made by `prefixrl demo`")
    assert main(["bench", "perf", "--work", str(tmp_path / "mine"), "--out", str(tmp_path / "r")]) == 2
    one_line_error(capsys, "was not made by `prefixrl bench`")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    with claim("demo", [Output(tmp_path / "new", kind="folder", existing="owned")], {}):
        pass
    with claim("demo", [Output(tmp_path / "new", kind="folder", existing="owned")], {}):  # its own: reused
        pass


def test_generated_reports_go_under_runs_unless_asked_for():
    """`prefixrl theory --quick` from the repository root used to overwrite the committed docs."""
    assert not str(TheoryConfig().out).startswith("docs") and not str(BenchConfig().out).startswith("docs")


def test_a_base_is_written_atomically_and_sealed_so_a_flipped_byte_is_refused(d, tmp_path, capsys):
    base = pretrain_tiny(tmp_path / "base", steps=1)
    manifest = json.loads((base / "manifest.json").read_text())["files"]
    assert {"model.safetensors", "config.json", "tokenizer.json", "prefixrl.json", "regime.json"} <= set(manifest)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left beside it
    from prefixrl.io.store import current_umask

    modes = {p.name: p.stat().st_mode & 0o777 for p in base.iterdir() if p.is_file()}
    assert set(modes.values()) == {0o666 & ~current_umask()}, modes  # the weights as readable as the rest
    weights = bytearray((base / "model.safetensors").read_bytes())
    weights[-7] ^= 0xFF
    (base / "model.safetensors").write_bytes(bytes(weights))
    capsys.readouterr()
    assert main(["eval", "--model", str(base), "--samples", "2", "--k", "1"]) == 2
    one_line_error(capsys, "model.safetensors does not match its hash")
    # --overwrite: a new base replaces it whole
    assert main(["pretrain", "--out", str(base), "--steps", "1", "--hidden", "32", "--layers", "1", "--heads", "2",
                 "--ffn", "64", "--easy-max-steps", "6", "--hard-steps", "6", "--rare-steps", "0",
                 "--calibration", "none", "--overwrite"]) == 0
    assert main(["eval", "--model", str(base), "--samples", "2", "--k", "1"]) == 0


def test_files_get_the_mode_the_umask_gives(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "f", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640


def test_a_trained_policy_carries_its_task_so_later_stages_read_the_same_one(tmp_path):
    """Before, final/ had no prefixrl.json and `eval --model run/final` silently used the default chain task
    (no rare steps) instead of the one it was trained on."""
    from prefixrl.cli.policy import task_of

    base = pretrain_tiny(tmp_path / "base", 1, 6, "--rare-steps", "1", "--teacher-accuracy", "0.9")
    assert main(["train", "--model", str(base), "--method", "rl", "--steps", "1", "--eval-every", "1",
                 "--eval-problems", "2", "--out", str(tmp_path / "run")]) == 0
    assert task_of(tmp_path / "run" / "final") == task_of(base) and task_of(base).rare_steps == 1
