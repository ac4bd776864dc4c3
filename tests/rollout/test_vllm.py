"""The vLLM engine for real, with vLLM's CPU build (its own environment: .ci/run makes it; docs/vllm.md)
on a tiny local model: token-id prompts with and without prefixes, n samples, seeds, FLOPs, and the CLI."""

import json
import os

import pytest

vllm = pytest.importorskip("vllm")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # no engine-core subprocess under pytest
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from prefixrl.data.prompt import render_prompt
from prefixrl.data.tasks.chain import ChainTask
from prefixrl.embedded.tokenizer import build_tokenizer
from prefixrl.rollout.engine import SamplingParams
from prefixrl.rollout.flops import sample_flops
from prefixrl.rollout.model import ModelShape, build_model, param_count
from prefixrl_lab.cli import main


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("vllm")
    tok = build_tokenizer()
    model = build_model(tok, ModelShape(hidden=64, layers=2, heads=2, ffn=128, max_positions=256), seed=0)
    model.save_pretrained(d / "model")
    tok.save_pretrained(d / "model")
    from prefixrl.rollout.vllm_engine import VLLMEngine

    return d, tok, param_count(model), VLLMEngine(d / "model", dtype="float32")


def test_vllm_engine_samples_token_id_prompts_with_and_without_prefixes(setup):
    d, tok, n_params, engine = setup
    task = ChainTask(easy_max_steps=4, hard_steps=4)
    probs = task.problems("hard_train", 3, 0)
    prefix = tok.encode(task.solution(probs[0])[:4], add_special_tokens=False)
    prompts = [render_prompt(tok, p.question) for p in probs] + [render_prompt(tok, probs[0].question) + prefix]
    params = SamplingParams(max_new_tokens=12)
    gens = engine.generate(prompts, 4, params, seed=7)
    assert [len(g) for g in gens.samples] == [4, 4, 4, 4]
    for g in gens.samples:
        for s in g:
            assert 1 <= len(s.tokens) <= 12 and len(s.logprobs) == len(s.tokens)
            assert all(0 <= t < len(tok) for t in s.tokens) and all(lp <= 0 for lp in s.logprobs)
            assert s.truncated == (len(s.tokens) == 12 and s.tokens[-1] != tok.eos_token_id)
    assert gens.prefill_flops == sample_flops(n_params, sum(len(p) for p in prompts))
    assert gens.decode_flops == sample_flops(n_params, sum(len(s.tokens) for g in gens.samples for s in g))
    again = engine.generate(prompts, 4, params, seed=7)
    assert [[s.tokens for s in g] for g in again.samples] == [[s.tokens for s in g] for g in gens.samples]


def test_eval_cli_with_vllm_engine(setup, capsys):
    d, *_ = setup
    capsys.readouterr()
    assert main(["eval", "--model", str(d / "model"), "--engine", "vllm", "--task", "chain", "--split", "hard_train",
                 "--problems", "4", "--samples", "4", "--k", "1", "4"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert sum(res["verdicts"].values()) == 16 and 0.0 <= res["pass@1"] <= res["pass@4"] <= 1.0


def test_select_cli_with_vllm_engine(setup, tmp_path, capsys):
    d, *_ = setup
    out = tmp_path / "sel"
    assert main(["select", "--model", str(d / "model"), "--engine", "vllm", "--task", "chain", "--problems", "4",
                 "--budget", "8", "--per-round", "4", "--out", str(out), "--verifier-workers", "1",
                 "--dtype", "float32", "--max-model-len", "256", "--enforce-eager"]) == 0  # vLLM's own settings
    # reach vllm.LLM (one it does not know would stop it there)
    table = [json.loads(x) for x in (out / "per_problem.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert len(table) == 4 and summary["samples"] == sum(r["samples"] for r in table)
    for r in table:  # an unsolved problem drew the whole budget; a solved one stopped at the end of its round
        assert r["samples"] == 8 if not r["solved"] else r["first_success_at"] <= r["samples"] <= 8
    assert summary["selected"] == sum(not r["solved"] for r in table) == len((out / "selected.jsonl").read_text().splitlines())


def test_sharded_collect_with_vllm_merges_without_duplicates(setup, tmp_path):
    """Two shards on vLLM, in requests of 2 problems, merged: every problem once, with its attempts, and the
    shards' ledgers summed."""
    d, *_ = setup
    from prefixrl.data.traces import TRACE_SCHEMA
    from prefixrl.io.store import read_sealed_json, read_store

    for i in (0, 1):
        assert main(["collect", "--model", str(d / "model"), "--engine", "vllm", "--task", "chain", "--problems", "5",
                     "--cap", "8", "--per-round", "4", "--chunk-size", "2", "--shard", f"{i}/2", "--min-yield", "0",
                     "--out", str(tmp_path / f"s{i}.parquet"), "--verifier-workers", "1", "--dtype", "float32",
                     "--enforce-eager"]) == 0
    out = tmp_path / "traces.parquet"
    assert main(["merge", str(tmp_path / "s0.parquet"), str(tmp_path / "s1.parquet"), "--out", str(out)]) == 0
    rows, meta = read_store(out, TRACE_SCHEMA)
    samples = meta["collection"]["samples"]
    assert list(samples) == [f"hard_train-{i:05d}" for i in range(5)]  # the selection's order, each once
    assert len({r["problem_id"] for r in rows}) == len(rows)
    for pid, n in samples.items():  # unsolved: the whole cap; solved: stopped at the end of its round
        assert n == 8 or pid in {r["problem_id"] for r in rows}
    shards = [read_sealed_json(tmp_path / f"s{i}.json")["ledger"] for i in (0, 1)]
    assert meta["collection"]["ledger"] == {k: shards[0][k] + shards[1][k] for k in shards[0]}
