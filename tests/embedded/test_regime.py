"""The regime measured exactly, calibration to a target fixed in advance, and the gates before sampling.

Every assertion here holds whatever CPU computes it: the exact figures are compared with tolerances far
wider than float rounding, and the sampled check is a 5-standard-error bound.
"""

import json

import pytest
import torch
from conftest import pretrain_tiny
from transformers import AutoModelForCausalLM

from prefixrl.cli.policy import task_of
from prefixrl.data.evaluate import evaluate
from prefixrl.data.prompt import encode_response, render_prompt
from prefixrl.embedded import calibration
from prefixrl.rl import exact
from prefixrl.rollout.engine import Sampler, SamplingParams
from prefixrl.rollout.model import load
from prefixrl_lab.cli import main

SHAPE = ["--hidden", "64", "--layers", "2", "--heads", "2", "--ffn", "128", "--easy-max-steps", "6", "--hard-steps", "6",
         "--rare-steps", "0"]


def calibrated(folder, steps, seed, target):
    assert main(["pretrain", "--out", str(folder), "--steps", str(steps), "--seed", str(seed), *SHAPE,
                 "--target-pass1", str(target), "--calibration-problems", "64"]) == 0
    return folder


@pytest.fixture(scope="module")
def two_bases(tmp_path_factory):
    d = tmp_path_factory.mktemp("bases")
    return calibrated(d / "a", 300, 0, 0.02), calibrated(d / "b", 450, 1, 0.02)


def test_exact_pass1_is_the_teacher_forced_probability_of_the_one_correct_response(tmp_path):
    base = pretrain_tiny(tmp_path / "base", 20, 3)
    model, tok = load(base)
    task = task_of(base)
    problems = task.problems("hard_train", 5, 0)
    got = exact.teacher_force(model, tok, task, problems).per_problem()[0]
    for p, g in zip(problems, got):
        prompt, resp = render_prompt(tok, p.question), encode_response(tok, task.solution(p))
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([prompt + resp])).logits[0].double(), -1)
        want = sum(float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(resp))
        assert float(g) == pytest.approx(torch.tensor(want).exp().item(), rel=1e-4)


@pytest.mark.slow  # the two_bases fixture pretrains two bases (300 and 450 steps)
def test_calibration_meets_the_same_target_from_two_differently_trained_bases(two_bases):
    records = [json.loads((b / "prefixrl.json").read_text())["calibration"] for b in two_bases]
    assert records[0]["scale"] != pytest.approx(records[1]["scale"], rel=0.01)  # different bases, different s
    for b, cal in zip(two_bases, records):
        assert cal["target_pass1"] == 0.02 and abs(cal["exact_pass@1_after"] / 0.02 - 1) < 0.011
        # the scale travels with the weights: a plain transformers load measures the calibrated regime
        model = AutoModelForCausalLM.from_pretrained(b, dtype=torch.float32)
        _, tok = load(b)
        task = task_of(b)
        seed = json.loads((b / "prefixrl.json").read_text())["pretrain"]["seed"]  # calibrated on its own problems
        got = exact.measure(model, tok, task, task.problems("hard_train", 64, seed))
        saved = json.loads((b / "regime.json").read_text())["hard_train"]
        assert got["exact_pass@1"] == pytest.approx(saved["exact_pass@1"], rel=1e-3)
        assert calibration.Target(0.02, 2.0).holds(got["exact_pass@1"])
        # greedy pass@1 does not move with the scale (no argmax changes)
        assert got["greedy_pass@1"] == pytest.approx(cal["greedy_pass@1"], abs=1 / 64 + 1e-9)


@pytest.mark.slow  # the two_bases fixture pretrains two bases (300 and 450 steps)
def test_exact_and_greedy_agree_with_sampling_and_argmax_decoding(two_bases):
    base = two_bases[0]
    model, tok = load(base)
    task = task_of(base)
    problems = task.problems("hard_train", 32, 0)
    forced = exact.teacher_force(model, tok, task, problems)
    p, greedy = forced.per_problem()
    # argmax decoding with transformers' own generate: correct exactly where teacher forcing says so
    for prob, g in zip(problems[:12], greedy[:12]):
        prompt = torch.tensor([render_prompt(tok, prob.question)])
        out = model.generate(prompt, do_sample=False, max_new_tokens=task.max_response_tokens, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
        text = tok.decode(out[0, prompt.shape[1]:], skip_special_tokens=True)
        assert (task.verify(prob, text).value == "correct") == bool(g)
    # sampled pass@1 agrees with the exact one within 5 standard errors
    n = 256
    r = evaluate(Sampler(model, tok.eos_token_id, tok.pad_token_id), tok, task, problems, n,
                 SamplingParams(max_new_tokens=task.max_response_tokens), seed=7)
    exact_p1 = float(p.mean())
    se = (sum(float(x) * (1 - float(x)) for x in p) / n) ** 0.5 / len(problems)
    assert abs(r.pass_at(1) - exact_p1) < 5 * se + 1e-4


def test_a_miscalibrated_base_is_refused_before_anything_is_sampled(tmp_path, monkeypatch, capsys):
    base = pretrain_tiny(tmp_path / "base", 2, 6)  # 2 steps, not calibrated: it solves nothing

    def tripwire(*args, **kwargs):
        raise AssertionError("the sampler ran although the gate should have stopped the collection")

    monkeypatch.setattr(Sampler, "generate", tripwire)
    capsys.readouterr()
    out = tmp_path / "traces.parquet"
    assert main(["collect", "--model", str(base), "--out", str(out), "--problems", "8", "--cap", "64"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("prefixrl: error: regime gate:")
    assert "expected to solve 0.0%" in err and "floor 25%" in err and "--cap" in err and "--min-yield 0" in err
    assert not out.exists() and not out.with_suffix(".json").exists()


@pytest.mark.slow  # the two_bases fixture pretrains two bases (300 and 450 steps)
def test_a_base_outside_its_calibration_window_is_refused(two_bases, tmp_path, capsys):
    base = two_bases[0]
    meta = json.loads((base / "prefixrl.json").read_text())
    assert calibration.base_target(base) == calibration.Target(0.02, 2.0)
    # the same weights, claimed to be calibrated to a target 100x higher: measured, and refused
    moved = tmp_path / "moved"
    moved.mkdir()
    for f in base.iterdir():
        if f.name != "manifest.json":  # unsealed: a sealed base would refuse the edited prefixrl.json first
            (moved / f.name).write_bytes(f.read_bytes())
    meta["calibration"]["target_pass1"] = 0.5
    (moved / "prefixrl.json").write_text(json.dumps(meta))
    capsys.readouterr()
    out = tmp_path / "t.parquet"
    assert main(["collect", "--model", str(moved), "--out", str(out), "--problems", "8", "--cap", "64"]) == 2
    err = capsys.readouterr().err.strip()
    assert "outside the window [2.50e-01, 1.00e+00]" in err and "prefixrl pretrain" in err and not out.exists()


def test_calibration_refuses_a_target_the_base_cannot_reach(tmp_path, capsys):
    assert main(["pretrain", "--out", str(tmp_path / "b"), "--steps", "2", "--hidden", "32", "--layers", "1",
                 "--heads", "2", "--ffn", "64", "--easy-max-steps", "6", "--hard-steps", "6", "--rare-steps", "0"]) == 2
    err = capsys.readouterr().err
    assert "peaks at" in err and "greedy pass@1 is 0.0000" in err and "--steps" in err
    capsys.readouterr()
    # refused by the config's check, before any compute: one line, exit 2
    assert main(["pretrain", "--out", str(tmp_path / "c"), "--target-pass1", "1.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prefixrl: error:") and "target_pass1 must be in (0, 1)" in err and "\n" not in err
    assert not (tmp_path / "c").exists()


def test_expected_yield_and_no_trace_probability():
    p = torch.tensor([0.5, 1e-6, 0.0], dtype=torch.float64)
    e = exact.expected_collection(p, cap=4)
    assert e["expected_yield"] == pytest.approx((1 - 0.5**4 + 1 - (1 - 1e-6) ** 4 + 0) / 3, rel=1e-9)
    assert e["p_no_trace"] == pytest.approx(0.5**4 * (1 - 1e-6) ** 4, rel=1e-9)


def test_the_spread_says_whether_a_mean_rests_on_one_problem():
    from prefixrl.rl.exact import spread

    even = torch.full((128,), 1e-3, dtype=torch.float64)
    s = spread(even)
    assert s["mean"] == pytest.approx(1e-3) and s["median"] == pytest.approx(1e-3) and s["learned"] == 0
    assert s["top_share"] == pytest.approx(1 / 128)
    # a higher mean from one problem made likely while the rest fell tenfold
    one = torch.full((128,), 1e-4, dtype=torch.float64)
    one[7] = 0.4
    s = spread(one)
    assert s["mean"] > 3 * 1e-3 and s["median"] == pytest.approx(1e-4) and s["learned"] == 1
    assert s["top_share"] == pytest.approx(0.4 / (0.4 + 127e-4))
    assert spread(torch.zeros(4, dtype=torch.float64))["top_share"] is None


def test_a_copied_base_is_reused_not_pretrained_again(tmp_path):
    import shutil

    from prefixrl.embedded.config import PretrainConfig
    from prefixrl.embedded.pretrain import ensure_pretrained

    shape = dict(steps=2, hidden=32, layers=1, heads=2, ffn=64, easy_max_steps=6, hard_steps=6, rare_steps=0,
                 calibration="none")
    ensure_pretrained(PretrainConfig(out=tmp_path / "a", **shape), progress=False)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    before = (tmp_path / "b" / "model.safetensors").stat().st_mtime_ns
    ensure_pretrained(PretrainConfig(out=tmp_path / "b", **shape), progress=False)
    assert (tmp_path / "b" / "model.safetensors").stat().st_mtime_ns == before
    ensure_pretrained(PretrainConfig(out=tmp_path / "b", **{**shape, "steps": 3}), progress=False)  # other settings
    assert (tmp_path / "b" / "model.safetensors").stat().st_mtime_ns != before


def test_rare_knowledge_is_the_teacher_forced_mass_on_a_rare_steps_two_admissible_values(tmp_path):
    """Checked against one forward pass per problem and the tables themselves; None without rare steps."""
    from prefixrl.data.tasks.chain import Chain, rare_tables

    base = pretrain_tiny(tmp_path / "base", 3, 6, "--rare-steps", "2", "--teacher-accuracy", "0.9")
    model, tok = load(base)
    task = task_of(base)
    problems = task.problems("hard_heldout", 4, 0)
    want = []
    for p in problems:
        text, chain = task.solution(p), Chain.parse(p.question)
        prompt = render_prompt(tok, p.question)
        with torch.no_grad():
            probs = torch.softmax(model(torch.tensor([prompt + encode_response(tok, text)])).logits[0].double(), -1)
        for i, (op, y) in enumerate(chain.steps):
            if op in "abcdefgh":
                assert text[2 * i] == str(rare_tables(op)[0][y])  # the reference writes table A there
                ids = [tok.convert_tokens_to_ids(str(rare_tables(op)[t][y])) for t in (0, 1)]
                want.append(float(probs[len(prompt) + 2 * i - 1, ids].sum()))
    assert len(want) == 2 * len(problems)
    assert exact.rare_knowledge(model, tok, task, problems) == pytest.approx(sum(want) / len(want), rel=1e-5)
    shared = task_of(pretrain_tiny(tmp_path / "b0", 1, 6))
    assert exact.rare_knowledge(model, tok, shared, shared.problems("hard_heldout", 4, 0)) is None
