"""Exact resume after SIGKILL, for real `prefixrl train` and `prefixrl collect` subprocesses.

A small calibrated base, traces of the reference solver (imported, so no test waits on sampling luck)
and their prefixes are built once per module; each test then compares a run killed mid-way and resumed
with an uninterrupted one. The collection test samples for real, from a base whose regime it asserts
first: exact pass@1 makes "no trace at all" and "finished before the kill" vanishingly unlikely.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prefixrl.cli.policy import task_of
from prefixrl.data.traces import TRACE_SCHEMA
from prefixrl.io.checkpoint import checkpoints, latest_checkpoint, save_checkpoint, verify_folder, write_folder
from prefixrl.io.errors import BadInput
from prefixrl.io.store import read_meta, read_records, read_store
from prefixrl.rl import exact
from prefixrl.rollout.model import load

pytestmark = pytest.mark.slow


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefixrl_lab", *args]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=900)


def kill_when(args: list[str], ready, timeout: float = 600) -> None:
    """Start a CLI subprocess, SIGKILL it as soon as ready() is true; fail if it finished first."""
    proc = subprocess.Popen(cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while not ready():
        assert proc.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() - t0 < timeout
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


PROBLEMS = 16


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    d = tmp_path_factory.mktemp("preset")
    r = run("pretrain", "--out", str(d / "base"), "--steps", "400", "--hidden", "64", "--layers", "2", "--heads", "2",
            "--ffn", "128", "--easy-max-steps", "6", "--hard-steps", "6", "--rare-steps", "0", "--target-pass1", "0.02",
            "--calibration-problems", "64")
    assert r.returncode == 0, r.stderr[-2000:]
    task = task_of(d / "base")
    rows = [{"problem_id": p.id, "trace": task.solution(p)} for p in task.problems("hard_train", PROBLEMS, 0)]
    (d / "ref.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    for args in (["collect", "--model", str(d / "base"), "--out", str(d / "traces.parquet"), "--problems", str(PROBLEMS),
                  "--import-file", str(d / "ref.jsonl")],
                 ["prefixes", "--model", str(d / "base"), "--traces", str(d / "traces.parquet"),
                  "--out", str(d / "prefixes.parquet")]):
        r = run(*args)
        assert r.returncode == 0, r.stderr[-2000:]
    return d


def train_args(preset: Path, out: Path, pool: tuple[str, ...] = ()) -> list[str]:
    return ["train", "--model", str(preset / "base"), "--prefixes", str(preset / "prefixes.parquet"),
            "--traces", str(preset / "traces.parquet"), "--problems", str(PROBLEMS if not pool else 2 * PROBLEMS),
            "--method", "prefixrl", "--steps", "12", "--seed", "3", "--deterministic", "--checkpoint-every", "4",
            "--eval-every", "5", "--out", str(out), *pool]


# beyond the paper: adaptive ladders and harvesting (half the problems have no trace), whose state the
# checkpoint must carry (a scripted run that certainly changes both: tests/rl/test_pool.py)
POOLS = {"paper": (), "adaptive+harvest": ("--prefix-schedule", "adaptive", "--harvest")}


def steps_logged(out: Path) -> int:
    try:
        lines = (out / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    return sum('"kind": "step"' in line for line in lines)


def without_time(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in path.read_text().splitlines()]


@pytest.mark.parametrize("pool", list(POOLS))
def test_train_killed_mid_run_resumes_bit_identical(preset, tmp_path, pool):
    ref, killed, pool = tmp_path / "ref", tmp_path / "killed", POOLS[pool]
    r = run(*train_args(preset, ref, pool))
    assert r.returncode == 0, r.stderr[-2000:]
    kill_when(train_args(preset, killed, pool), lambda: steps_logged(killed) >= 7)  # past the step-4 checkpoint
    assert not (killed / "final").exists() and checkpoints(killed)
    # without --resume the run folder is protected
    again = run(*train_args(preset, killed, pool))
    assert again.returncode == 2 and "pass --resume" in again.stderr
    r = run(*train_args(preset, killed, pool), "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = load_file(ref / "final" / "model.safetensors"), load_file(killed / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert without_time(ref / "metrics.jsonl") == without_time(killed / "metrics.jsonl")
    assert json.loads((ref / "ledger.json").read_text()) == json.loads((killed / "ledger.json").read_text())
    verify_folder(killed / "final")
    if pool:
        assert (ref / "harvested.parquet").read_bytes() == (killed / "harvested.parquet").read_bytes()
    # resuming a finished run changes nothing; resuming with other settings is refused
    assert run(*train_args(preset, killed, pool), "--resume").returncode == 0
    other = run(*train_args(preset, killed, pool), "--resume", "--lr", "1e-3")
    assert other.returncode == 2 and "different settings (lr)" in other.stderr


def collect_args(preset: Path, out: Path, *extra: str) -> list[str]:
    return ["collect", "--model", str(preset / "base"), "--out", str(out), "--problems", str(PROBLEMS), "--cap", "256",
            "--per-round", "16", "--seed", "5", "--chunk-size", "4", *extra]


def test_a_killed_run_is_resumed_only_on_its_own_data_and_from_a_checkpoint_that_verifies(preset, tmp_path):
    """Killed mid-run: a resume on other problems (chain ids are positions, so --data-seed 1 reuses every id)
    is refused, and so are one whose log was edited before the checkpoint and one whose checkpoints all
    fail verification; none touches the folder."""
    out = tmp_path / "killed"
    args = ["train", "--model", str(preset / "base"), "--method", "rl", "--problems", str(PROBLEMS), "--steps", "12",
            "--seed", "3", "--checkpoint-every", "4", "--eval-every", "5", "--out", str(out)]
    kill_when(args, lambda: steps_logged(out) >= 6)  # past the step-4 checkpoint

    def files() -> dict:
        # (a temporary a kill left, hidden, is removed by the next claim: not a file of the run)
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(out).parts)}

    before = files()
    r = run(*args, "--resume", "--data-seed", "1")
    assert r.returncode == 2 and "different settings (data)" in r.stderr.strip().splitlines()[-1], r.stderr[-2000:]
    assert files() == before  # config.json included: nothing is written before the key is checked
    # the log's records up to the checkpoint are what later figures read: edited, the resume is refused
    log = out / "metrics.jsonl"
    first = log.read_text().splitlines()[1]  # step 1, before the step-4 checkpoint
    log.write_text(log.read_text().replace(first, first.replace('"step": 1', '"step": 1, "edited": 1'), 1))
    before = files()
    r = run(*args, "--resume")
    assert r.returncode == 2 and "differ from those its checkpoint saw" in r.stderr.strip().splitlines()[-1], r.stderr
    assert files() == before
    for ckpt in checkpoints(out):
        weights = ckpt / "policy" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:-1] + b"x")
    before = files()
    r = run(*args, "--resume")
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and "no usable checkpoint to resume from" in last and "Traceback" not in r.stderr, r.stderr
    assert files() == before  # not restarted at step 0: the log and the checkpoints are as they were


def test_the_collection_regime_makes_the_kill_test_certain(preset):
    """The collect test needs at least one trace, and a collection still running after 3 rounds (48 samples
    per problem). Both follow from the base's exact per-problem pass@1, checked here, not hoped for."""
    model, tok = load(preset / "base")
    task = task_of(preset / "base")
    p, _ = exact.teacher_force(model, tok, task, task.problems("hard_train", PROBLEMS, 0)).per_problem()
    assert exact.expected_collection(p, 256)["p_no_trace"] < 1e-6
    all_solved_in_3_rounds = float(torch.prod(-torch.expm1(48 * torch.log1p(-p))))
    assert all_solved_in_3_rounds < 1e-6


def mid_round(path: Path, state: str = "collection") -> bool:
    """The store was saved part-way through round 2 or later: after a request of --chunk-size problems, with
    unsolved problems still at different counts."""
    try:
        rows, meta = read_store(path, TRACE_SCHEMA)
    except (BadInput, FileNotFoundError):
        return False
    solved = {r["problem_id"] for r in rows}
    counts = {n for pid, n in meta[state]["samples"].items() if pid not in solved}
    return len(counts) > 1 and max(counts) >= 32


def test_collect_killed_mid_run_resumes_without_resampling_or_losing_traces(preset, tmp_path):
    ref, killed = tmp_path / "ref.parquet", tmp_path / "killed.parquet"
    assert run(*collect_args(preset, ref)).returncode == 0
    kill_when(collect_args(preset, killed), lambda: mid_round(killed))  # a kill loses one request at most
    state = read_meta(killed)["collection"]
    assert not state["finished"]
    before = read_records(killed, TRACE_SCHEMA)
    r = run(*collect_args(preset, killed), "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    after = read_records(killed, TRACE_SCHEMA)
    assert before == after[: len(before)]  # nothing collected before the kill was lost or changed
    assert after == read_records(ref, TRACE_SCHEMA)  # same traces, no duplicates, same costs per trace
    s_ref = json.loads(ref.with_suffix(".json").read_text())
    s_res = json.loads(killed.with_suffix(".json").read_text())
    # the same samples per problem as the uninterrupted run: solved problems were not sampled again
    assert read_meta(killed)["collection"]["samples"] == read_meta(ref)["collection"]["samples"]
    assert s_res["ledger"] == s_ref["ledger"] and s_res["samples"] == s_ref["samples"] and s_res["solved"] >= 1
    # never overwritten without --resume
    r = run(*collect_args(preset, killed))
    assert r.returncode == 2 and "never overwritten" in r.stderr


def test_a_sharded_collection_merges_to_the_unsharded_one_trace_for_trace(preset, tmp_path):
    """Two shards, merged, are the unsharded collection: the same traces in the same order, the same
    attempts, FLOPs and ledger. One problem per request in both (--chunk-size 1), so every forward pass has
    the same shapes and nothing hinges on float rounding; at least one trace (regime: the test above)."""
    stores = {name: tmp_path / f"{name}.parquet" for name in ("all", "s0", "s1", "merged")}
    for name, extra in (("all", []), ("s0", ["--shard", "0/2"]), ("s1", ["--shard", "1/2"])):
        r = run(*collect_args(preset, stores[name], "--chunk-size", "1", *extra))
        assert r.returncode == 0, r.stderr[-2000:]
    r = run("merge", str(stores["s0"]), str(stores["s1"]), "--out", str(stores["merged"]))
    assert r.returncode == 0, r.stderr[-2000:]
    merged, unsharded = read_store(stores["merged"], TRACE_SCHEMA), read_store(stores["all"], TRACE_SCHEMA)
    assert len(unsharded[0]) >= 1 and merged == unsharded


def test_select_killed_mid_run_resumes_to_the_uninterrupted_selection(preset, tmp_path):
    """`prefixrl select` is rejection sampling with a budget: a kill loses at most the request in flight, and
    --resume ends with the same table, the same hard set and the same ledger (regime: the test above)."""
    def args(out: Path) -> list[str]:
        return ["select", "--model", str(preset / "base"), "--out", str(out), "--problems", str(PROBLEMS),
                "--budget", "256", "--per-round", "16", "--seed", "5", "--chunk-size", "4"]

    ref, killed = tmp_path / "ref", tmp_path / "killed"
    r = run(*args(ref))
    assert r.returncode == 0, r.stderr[-2000:]
    kill_when(args(killed), lambda: mid_round(killed / "sampling.parquet", "selection"))
    assert not read_meta(killed / "sampling.parquet")["selection"]["finished"]
    assert not (killed / "summary.json").exists()
    r = run(*args(killed), "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    for name in ("per_problem.jsonl", "selected.jsonl", "summary.json"):
        assert (killed / name).read_text() == (ref / name).read_text(), name


def test_a_kill_during_a_checkpoint_save_leaves_the_previous_one(tiny_model, tok, tmp_path):
    opt = torch.optim.AdamW(tiny_model.parameters())
    good = save_checkpoint(tmp_path, 4, tiny_model, tok, opt, {"x": 1})

    def interrupted(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"\0" * 100)
        raise KeyboardInterrupt  # stands for the kill: the save stops half-way

    with pytest.raises(KeyboardInterrupt):
        write_folder(tmp_path / "ckpt-000008", interrupted)
    assert checkpoints(tmp_path) == [good] and latest_checkpoint(tmp_path) == (good, [])
    # a newer checkpoint that is corrupt on disk (bit rot, a copy cut short) is skipped, with a message
    newer = save_checkpoint(tmp_path, 8, tiny_model, tok, opt, {"x": 2})
    blob = newer / "optimizer.pt"
    blob.write_bytes(blob.read_bytes()[:-10])
    found, skipped = latest_checkpoint(tmp_path)
    assert found == good and "does not match its hash" in skipped[0]


def test_a_kill_while_an_old_checkpoint_is_removed_leaves_no_half_deleted_checkpoint(tiny_model, tok, tmp_path,
                                                                                      monkeypatch):
    """Keeping the newest two removes the oldest; a kill half-way through that removal (seen once in CI) used
    to leave a `ckpt-*` folder without its weights, listed among the run's checkpoints."""
    from prefixrl.io import checkpoint
    from prefixrl.io.outputs import clean_temporaries

    opt = torch.optim.AdamW(tiny_model.parameters())
    first = save_checkpoint(tmp_path, 0, tiny_model, tok, opt, {"x": 0})
    kept = [save_checkpoint(tmp_path, 4, tiny_model, tok, opt, {"x": 1})]
    real_rmtree = checkpoint.shutil.rmtree

    def killed_half_way(path, ignore_errors=False):
        if Path(path).name.endswith(".discarded.tmp") and Path(path).exists():
            (Path(path) / "policy" / "model.safetensors").unlink()  # part of it is gone
            raise KeyboardInterrupt  # stands for the kill
        real_rmtree(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(checkpoint.shutil, "rmtree", killed_half_way)
    with pytest.raises(KeyboardInterrupt):
        kept.append(save_checkpoint(tmp_path, 8, tiny_model, tok, opt, {"x": 2}))
    monkeypatch.undo()
    newest = tmp_path / "ckpt-000008"
    assert not first.exists() and checkpoints(tmp_path) == [kept[0], newest]
    assert latest_checkpoint(tmp_path) == (newest, [])
    assert [p.name for p in clean_temporaries(tmp_path, "folder")] == [".ckpt-000000.discarded.tmp"]


@pytest.mark.parametrize("manifest,needle", [
    ('{"files": {}}', "lists no files"),  # an empty manifest used to verify, so corrupt weights loaded
    ('{"files": ["policy/model.safetensors"]}', "lists them wrongly"),  # the wrong type used to be a traceback
    ('[1, 2]', "unreadable manifest"),
    ('{"files": {"../outside": "00"}}', "outside the folder"),
    ('{"files": {"state.json": 5}}', "lists them wrongly"),
    ("\xff", "unreadable manifest"),
])
def test_a_malformed_manifest_is_corrupt_and_resume_falls_back_past_it(tiny_model, tok, tmp_path, manifest, needle):
    opt = torch.optim.AdamW(tiny_model.parameters())
    good = save_checkpoint(tmp_path, 4, tiny_model, tok, opt, {"x": 1})
    newer = save_checkpoint(tmp_path, 8, tiny_model, tok, opt, {"x": 2})
    (tmp_path / "outside").write_text("x")
    (newer / "manifest.json").write_bytes(manifest.encode("latin-1"))
    found, skipped = latest_checkpoint(tmp_path)
    assert found == good and needle in skipped[0], skipped


def test_a_file_added_to_a_sealed_folder_is_refused(tiny_model, tok, tmp_path):
    """An unlisted weights file could be loaded in place of the listed one."""
    opt = torch.optim.AdamW(tiny_model.parameters())
    ckpt = save_checkpoint(tmp_path, 4, tiny_model, tok, opt, {"x": 1})
    (ckpt / "policy" / "pytorch_model.bin").write_bytes(b"planted")
    with pytest.raises(BadInput, match="pytorch_model.bin is not in the manifest"):
        verify_folder(ckpt)
