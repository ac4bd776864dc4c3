"""The pipeline through the real CLI, at toy size: pretrain → collect → prefixes → train → eval."""

import json
import subprocess
import sys

import pytest
from conftest import pretrain_tiny

from prefixrl.cli.policy import task_of
from prefixrl_lab.cli import main
from prefixrl_lab.reports import render


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    pretrain_tiny(d / "base", steps=40, hard_steps=4)
    return d


def test_stages_end_to_end(base, capsys):
    d, model = base, str(base / "base")
    task = task_of(base / "base")
    assert task.hard_steps == 4
    # real rejection sampling (a 40-step model solves little, so the regime gate is turned off; the
    # ledger must still count every sample)
    assert main(["collect", "--model", model, "--out", str(d / "sampled.parquet"), "--problems", "4", "--cap", "8",
                 "--per-round", "4", "--data-seed", "0", "--min-yield", "0"]) == 0
    summary = json.loads((d / "sampled.json").read_text())
    assert summary["problems"] == 4 and summary["samples"] >= 8 and summary["flops"] > 0
    # traces made elsewhere (the reference solver), imported as text and re-verified
    probs = task.problems("hard_train", 4, 0)
    (d / "ext.jsonl").write_text("\n".join(json.dumps({"problem_id": p.id, "trace": task.solution(p)}) for p in probs))
    assert main(["collect", "--model", model, "--out", str(d / "traces.parquet"), "--problems", "4",
                 "--import-file", str(d / "ext.jsonl")]) == 0
    assert main(["prefixes", "--model", model, "--traces", str(d / "traces.parquet"), "--out", str(d / "prefixes.parquet")]) == 0
    assert "12 prefixes from 4 traces" in capsys.readouterr().out
    for method in ("prefixrl", "rl", "prefixrl-only", "sft-rl", "offpolicy", "luffy", "regft-rl"):
        out = d / method
        assert main(["train", "--model", model, "--method", method, "--prefixes", str(d / "prefixes.parquet"),
                     "--traces", str(d / "traces.parquet"), "--problems", "4", "--steps", "3", "--prompts-per-step", "4",
                     "--samples-per-prompt", "4", "--eval-every", "2", "--out", str(out)]) == 0
        steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert [s["step"] for s in steps if s["kind"] == "step"] == [1, 2, 3]
        assert (out / "final" / "config.json").is_file()
        rows = [s for s in steps if s["kind"] == "step"]
        if method == "rl":
            assert all(s["reward_prefixed"] is None for s in rows)
        if method == "prefixrl-only":
            assert all(s["reward_unprefixed"] is None for s in rows)
        ledger = json.loads((out / "ledger.json").read_text())
        assert ledger["rl/decode"] > 0 and ledger["rl/prefill"] > 0
        assert (ledger.get("sft/train", 0) > 0) == (method == "sft-rl") or method == "regft-rl"
        assert (ledger.get("regft/decode", 0) > 0) == (method == "regft-rl")  # its completions, sampled and charged
        assert ("offpolicy/base_logprobs" in ledger) == (method == "offpolicy")
        if method in ("offpolicy", "luffy"):  # every group of a traced problem holds its trace: never all-zero
            assert all(s["zero_adv_groups"] < 1 for s in rows)
    capsys.readouterr()
    assert main(["eval", "--model", str(d / "prefixrl" / "final"), "--split", "hard_heldout", "--problems", "4",
                 "--samples", "4", "--k", "1", "2", "4"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res) >= {"pass@1", "pass@2", "pass@4", "verdicts"} and sum(res["verdicts"].values()) == 16


@pytest.mark.parametrize("args,needle", [
    (["train", "--method", "nope"], "unknown method"),
    (["train", "--model", "/nonexistent/model"], "no model folder there"),
    (["eval", "--model", "/nonexistent", "--samples", "4", "--k", "8"], "k <= samples"),
    (["prefixes", "--traces", "/nonexistent.parquet"], "no model folder there"),
])
def test_bad_input_is_one_line_exit_2(args, needle, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and err.startswith("prefixrl: error:") and "\n" not in err


@pytest.mark.slow
def test_demo_cli_at_toy_size(tmp_path):
    """`prefixrl demo` as a user runs it, shrunk: every stage, the report files and their schema."""
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "prefixrl_lab", "demo", "--out", str(out), "--hard-steps", "6", "--rare-steps", "2",
           "--teacher-accuracy", "0.9", "--pretrain-steps", "300", "--train-problems", "8", "--heldout-problems", "8", "--base-samples", "8",
           "--collect-cap", "64", "--rl-steps", "4", "--final-samples", "4", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rep = json.loads((out / "report.json").read_text())
    assert {"seed", "config", "base", "collection", "methods"} <= set(rep)
    assert set(rep["base"]["pass@1"]) == {"easy", "hard_train", "hard_heldout"}
    assert set(rep["base"]["pass@k"]["8"]) == {"easy", "hard_train", "hard_heldout"}
    assert {"problems", "solved", "samples", "flops"} <= set(rep["collection"]) and rep["collection"]["solved"] > 0
    assert list(rep["methods"]) == ["prefixrl", "rl", "sft-rl"]  # the strongest baseline on the first page
    for name in ("prefixrl", "rl", "sft-rl"):
        m = rep["methods"][name]
        # a baseline whose charged traces and SFT already cost PrefixRL's whole budget makes no RL step (how
        # many epochs SFT early-stops at, and so what it costs, moves with the CPU's rounding at this size)
        if m["steps"]:
            assert 0 <= m["mechanism"]["signal_share"] <= 1 and m["mechanism"]["correct_per_tflop"] >= 0
        else:
            assert m["mechanism"]["signal_share"] is None and m["mechanism"]["correct_samples"] == 0
        assert {"step", "flops", "train_acc_unprefixed", "train_acc_prefixed"} <= set(m["curve"][0])
        assert set(m["final"]) == {"hard_train_pass@1", "hard_heldout_pass@1", "hard_heldout_exact_pass@1",
                                   "rare_knowledge"} and m["flops_total"] > 0
        assert 0 < m["final"]["hard_heldout_exact_pass@1"] < 1 and 0 < m["final"]["rare_knowledge"] < 1
    # PrefixRL's curve starts at the rejection-sampling FLOPs; standard RL's at zero
    assert rep["methods"]["prefixrl"]["curve"][0]["flops"] == pytest.approx(rep["collection"]["flops"])
    assert rep["methods"]["rl"]["curve"][0]["flops"] == 0
    assert rep["methods"]["sft-rl"]["curve"][0]["flops"] >= rep["collection"]["flops"]  # charged, and its SFT too
    # equal total FLOPs: each baseline stops within one step of PrefixRL's total
    for name in ("rl", "sft-rl"):
        assert rep["methods"][name]["flops_total"] >= rep["methods"]["prefixrl"]["flops_total"]
    assert "SFT→RL (" in rep["verdict"] and "standard RL (" in rep["verdict"]
    assert (out / "curve.png").stat().st_size > 0 and rep["kind"] == "demo" and rep["verdict"]
    # the paper's-regime gates are measured on every run (docs/regimes.md), with the headline ratios
    assert {"knowledge", "rl_starved", "reachable"} <= set(rep["gates"])
    assert all(isinstance(rep["gates"][g]["ok"], bool) for g in ("knowledge", "rl_starved", "reachable"))
    assert rep["config"]["task_config"]["rare_steps"] == 2 and "flops_ratio_vs_rl" in rep["compute_efficiency"]
    # the page is what the one renderer makes of report.json alone
    page = (out / "report.md").read_text()
    assert "| SFT→RL | " in page and "groups with signal" in page and "correct samples per TFLOP" in page
    (out / "report.md").unlink()
    render(out / "report.json")
    assert (out / "report.md").read_text() == page


def test_a_copied_work_folder_reuses_its_collection(tmp_path, monkeypatch):
    # A collection is identified by the model's weights and tokenizer, not by its folder's path: a work
    # folder copied or moved elsewhere reads its traces back instead of rejection sampling again.
    import shutil

    from prefixrl.rollout.engine import SamplingParams
    from prefixrl_lab import pipeline

    a = tmp_path / "a"
    pretrain_tiny(a / "base", 300, 2)  # 2-step chains: a base that finds some traces
    task = task_of(a / "base")
    problems = task.problems("hard_train", 4, seed=0)
    params = SamplingParams(max_new_tokens=task.max_response_tokens)
    first = pipeline.collect_traces(a / "traces.parquet", a / "base", task, problems, params, cap=64, seed=0,
                                    progress=False)
    shutil.copytree(a, tmp_path / "b")

    def sampled(*args, **kwargs):
        raise AssertionError("rejection sampling ran again")

    monkeypatch.setattr(pipeline, "rejection_sample", sampled)
    b = tmp_path / "b"
    again = pipeline.collect_traces(b / "traces.parquet", b / "base", task, problems, params, cap=64, seed=0,
                                    progress=False)
    assert again.samples == first.samples and again.flops == pytest.approx(first.flops) and first.traces
    assert [t.token_ids for t in again.traces] == [t.token_ids for t in first.traces]
    # anything else in the key still decides: another cap is another collection
    with pytest.raises(AssertionError, match="ran again"):
        pipeline.collect_traces(b / "traces.parquet", b / "base", task, problems, params, cap=32, seed=0,
                                progress=False)
