"""A user's path: their own HF chat model (here a tiny Qwen2 with a locally trained byte-level BPE and a
ChatML template, saved with save_pretrained, no prefixrl.json) and their JSONL of math problems, through
import → prefixes → train → eval → export on the real CLI, with math-verify in the deadline pool."""

import json

import pyarrow.parquet as pq
import pytest

from prefixrl.cli.policy import task_of
from prefixrl.data.prefixes import load_prefixes
from prefixrl.data.prompt import Rendering, decode_response, render_prompt, with_rendering
from prefixrl.data.tasks.answers import INSTRUCTIONS
from prefixrl.embedded.tokenizer import build_tokenizer
from prefixrl.rollout.model import ModelShape, build_model
from prefixrl_lab.cli import main


def as_stages_render(tok, answer_format: str = "boxed"):
    """The tokenizer as the stages render for --task math by default: --instruction auto asks for the format."""
    return with_rendering(tok, Rendering(instruction=INSTRUCTIONS[answer_format]))

QUESTIONS = [(f"What is {a} + {b}?", str(a + b)) for a in range(1, 6) for b in range(1, 5)]


def trace_for(q: str, ans: str) -> str:
    return f"<think>\nfirst add the numbers: {q[8:-1]} = {ans}, so the total is {ans}\n</think>\nThe answer is \\boxed{{{ans}}}"


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    d = tmp_path_factory.mktemp("user")
    tok = build_tokenizer("bytes")
    model = build_model(tok, ModelShape(hidden=32, layers=1, heads=2, ffn=64, max_positions=256), arch="qwen2", seed=0)
    model.save_pretrained(d / "model")
    tok.save_pretrained(d / "model")
    (d / "problems.jsonl").write_text("\n".join(json.dumps({"problem": q, "answer": a}) for q, a in QUESTIONS))
    return d, tok


def test_hf_model_and_math_jsonl_end_to_end(user, capsys):
    d, tok = user
    task_flags = ["--task", "math", "--task-file", str(d / "problems.jsonl")]
    task = task_of(d / "model", {"name": "math", "path": str(d / "problems.jsonl")})
    train = task.problems("hard_train", 8, 0)
    rows = [{"problem_id": p.id, "trace": trace_for(p.question, p.answer)} for p in train[:6]]
    rows.append({"problem_id": train[6].id, "trace": "The answer is \\boxed{999}"})  # wrong: reported, excluded
    (d / "traces.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    model = str(d / "model")
    assert main(["collect", "--model", model, *task_flags, "--problems", "8", "--import-file", str(d / "traces.jsonl"),
                 "--out", str(d / "traces.parquet")]) == 0
    summary = json.loads((d / "traces.json").read_text())
    assert summary["solved"] == 6 and len(summary["rejected"]) == 1
    assert main(["prefixes", "--model", model, *task_flags, "--traces", str(d / "traces.parquet"),
                 "--out", str(d / "prefixes.parquet")]) == 0
    tok = as_stages_render(tok)
    prefixes = load_prefixes(d / "prefixes.parquet", task, tok)
    assert len(prefixes) == 18
    for p in prefixes:
        text = decode_response(tok, list(p.prefix_ids))
        assert text.startswith("<think>") and "\\boxed" not in text  # inside the reasoning block, before the answer
        prompt = tok.decode(render_prompt(tok, p.question) + list(p.prefix_ids))
        assert prompt.endswith("<|im_start|>assistant\n" + text)  # the prefix starts the assistant's turn
    capsys.readouterr()
    out = d / "run"
    assert main(["train", "--model", model, *task_flags, "--method", "prefixrl", "--problems", "8",
                 "--prefixes", str(d / "prefixes.parquet"), "--traces", str(d / "traces.parquet"), "--steps", "2",
                 "--prompts-per-step", "4", "--samples-per-prompt", "2", "--max-new-tokens", "24", "--eval-every", "100",
                 "--eval-problems", "2", "--out", str(out)]) == 0
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if s["kind"] == "step"] == [1, 2]
    assert all(s["verifier_timeouts"] == 0 for s in steps if s["kind"] == "step")
    capsys.readouterr()
    assert main(["eval", "--model", str(out / "final"), *task_flags, "--split", "hard_heldout", "--problems", "2",
                 "--samples", "2", "--k", "1", "--max-new-tokens", "16"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert sum(res["verdicts"].values()) == 2 * res["problems"] and res["verdicts"]["correct"] == 0
    assert main(["export", "--format", "verl", "--model", model, *task_flags, "--problems", "8",
                 "--prefixes", str(d / "prefixes.parquet"), "--out", str(d / "verl.parquet")]) == 0
    verl = pq.read_table(d / "verl.parquet").to_pylist()
    assert len(verl) == 24 and verl[0]["data_source"] == "prefixrl"
