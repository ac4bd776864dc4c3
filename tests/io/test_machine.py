"""The machine's failures in one line: a full disk (a real tmpfs, filled) and a read-only folder (a tmpfs
remounted read-only) give exit 2, one line, and nothing half-written, in every stage that writes. Mounting
needs root; where it cannot be done the tests are skipped."""

import json
import os
import subprocess

import pytest
from conftest import pretrain_tiny, reference_traces

from prefixrl.data.traces import save_traces
from prefixrl_lab.cli import main


def mount(path, *options) -> bool:
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(["size=512k", *options]), "tmpfs", str(path)],
                       capture_output=True)
    return r.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "mnt"
    if os.geteuid() != 0 or not mount(mnt):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt):
    """Leave no free byte: a filler file grown until the filesystem refuses."""
    with open(mnt / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from prefixrl.cli.policy import task_of
    from prefixrl.embedded.tokenizer import build_tokenizer

    d = tmp_path_factory.mktemp("machine")
    pretrain_tiny(d / "base", steps=2, hard_steps=6)
    task, tok = task_of(d / "base"), build_tokenizer()
    save_traces(d / "traces.parquet", reference_traces(task, tok, 4))
    rows = [{"problem_id": t.problem_id, "trace": t.response} for t in reference_traces(task, tok, 4)]
    (d / "imp.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return d


def stage_runs(d, out):
    base = str(d / "base")
    return {
        "pretrain": ["pretrain", "--out", str(out / "base"), "--steps", "1", "--hidden", "32", "--layers", "1",
                     "--heads", "2", "--ffn", "64", "--easy-max-steps", "6", "--hard-steps", "6", "--rare-steps", "0",
                     "--calibration", "none"],
        "collect": ["collect", "--model", base, "--problems", "4", "--import-file", str(d / "imp.jsonl"),
                    "--out", str(out / "t.parquet")],
        "prefixes": ["prefixes", "--model", base, "--traces", str(d / "traces.parquet"), "--out", str(out / "p.parquet")],
        "train": ["train", "--model", base, "--method", "rl", "--problems", "4", "--steps", "1", "--prompts-per-step",
                  "2", "--samples-per-prompt", "2", "--eval-problems", "2", "--eval-samples", "1", "--max-new-tokens",
                  "8", "--out", str(out / "run")],
        "eval": ["eval", "--model", base, "--problems", "2", "--samples", "2", "--k", "1", "--max-new-tokens", "8",
                 "--out", str(out / "e.json")],
    }


def one_line(capsys, needle):
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (after a progress bar, if any)
    assert err.startswith("prefixrl: error:") and needle in err, err
    assert "nothing was half-written" in err, err


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(inputs, small_disk, capsys):
    fill(small_disk)
    for name, args in stage_runs(inputs, small_disk).items():
        capsys.readouterr()
        assert main(args) == 2, name
        one_line(capsys, "No space left on device")
        assert sorted(p.name for p in small_disk.iterdir()) == ["filler"], (name, list(small_disk.rglob("*")))


def test_a_read_only_folder_is_one_line(inputs, small_disk, capsys, monkeypatch):
    (small_disk / "kept.txt").write_text("the user's")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    for name, args in stage_runs(inputs, small_disk).items():
        capsys.readouterr()
        assert main(args) == 2, name
        one_line(capsys, "Read-only file system")
    # a read-only working folder: the default outputs are relative to it
    monkeypatch.chdir(small_disk)
    capsys.readouterr()
    assert main(["collect", "--model", str(inputs / "base"), "--problems", "4", "--import-file",
                 str(inputs / "imp.jsonl")]) == 2
    one_line(capsys, "Read-only file system")
    assert (small_disk / "kept.txt").read_text() == "the user's" and len(list(small_disk.iterdir())) == 1
