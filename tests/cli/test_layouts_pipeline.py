"""Each of the four dataset layouts through the paper's pipeline on a tiny chat model: select (the hard set)
→ collect (traces imported as text, re-verified in the layout's answer format) → prefixes → train
(2 steps) → eval, every stage reading the selected file with the same flags."""

import json

import pytest
from layouts import LAYOUTS, write

from prefixrl.cli.policy import task_of
from prefixrl.data.prefixes import load_prefixes
from prefixrl.data.prompt import Rendering, with_rendering
from prefixrl.data.tasks.answers import INSTRUCTIONS
from prefixrl.embedded.tokenizer import build_tokenizer
from prefixrl.rollout.model import ModelShape, build_model
from prefixrl_lab.cli import main


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("chat")
    tok = build_tokenizer("bytes")
    build_model(tok, ModelShape(hidden=32, layers=1, heads=2, ffn=64, max_positions=512), arch="qwen2",
                seed=0).save_pretrained(d / "model")
    tok.save_pretrained(d / "model")
    return d / "model", tok


def flags(fields: dict, dataset) -> list[str]:
    out = ["--task", "math", "--dataset", str(dataset), "--verifier-workers", "1"]
    for key, value in fields.items():
        out += [f"--{key.replace('_', '-')}", str(value)]
    return out


@pytest.mark.slow  # five stages per layout, four layouts: about 30 s
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_a_layout_through_select_collect_prefixes_train_and_eval(layout, model, tmp_path):
    folder, tok = model
    make, fields, right, _ = LAYOUTS[layout]
    data = write(tmp_path / "data.jsonl", make())
    m, short = str(folder), ["--max-new-tokens", "8"]
    # 1. the hard set: a random model solves nothing, so every hard-train problem is kept
    assert main(["select", "--model", m, *flags(fields, data), *short, "--budget", "2", "--per-round", "2",
                 "--out", str(tmp_path / "select")]) == 0
    selected = tmp_path / "select" / "selected.jsonl"
    T = flags(fields, selected)
    task = task_of(folder, {"name": "math", "path": str(selected), **fields})
    hard = task.problems("hard_train", None, 0)
    assert len(hard) == json.loads((tmp_path / "select" / "summary.json").read_text())["selected"] > 0
    # 2. traces made elsewhere, in the layout's own answer format, re-verified on import
    rows = [{"problem_id": p.id, "trace": "first add the two numbers, then " + right.format(s=task.gold(p))}
            for p in hard[:4]]
    (tmp_path / "imp.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert main(["collect", "--model", m, *T, "--import-file", str(tmp_path / "imp.jsonl"),
                 "--out", str(tmp_path / "traces.parquet")]) == 0
    assert json.loads((tmp_path / "traces.json").read_text())["solved"] == 4
    # 3. prefixes end before the first marker of the format
    assert main(["prefixes", "--model", m, *T, "--traces", str(tmp_path / "traces.parquet"),
                 "--out", str(tmp_path / "prefixes.parquet")]) == 0
    for p in load_prefixes(tmp_path / "prefixes.parquet", task, with_rendering(tok, Rendering(
            instruction=INSTRUCTIONS[fields.get("answer_format", "boxed")]))):
        assert task.extract_answer(tok.decode(p.prefix_ids)) is None
    # 4. two PrefixRL steps, then held-out pass@k
    assert main(["train", "--model", m, *T, *short, "--traces", str(tmp_path / "traces.parquet"),
                 "--prefixes", str(tmp_path / "prefixes.parquet"), "--steps", "2", "--prompts-per-step", "2",
                 "--samples-per-prompt", "2", "--eval-problems", "2", "--eval-samples", "1",
                 "--out", str(tmp_path / "run")]) == 0
    assert main(["eval", "--model", str(tmp_path / "run" / "final"), *short, "--split", "hard_train",
                 "--samples", "2", "--k", "1", "2", "--out", str(tmp_path / "eval.json")]) == 0
    res = json.loads((tmp_path / "eval.json").read_text())
    assert res["problems"] == len(hard) and 0 <= res["pass@1"] <= res["pass@2"] <= 1
