"""PrefixRL on TRL's real GRPOTrainer, on CPU with a tiny local model: prefix ids are appended to the
prompt (so they are context and carry no loss), rewards score prefix + completion, per-kind rewards are
logged, and a run learns on a toy case."""

import pytest
from conftest import pretrain_tiny, reference_traces

trl = pytest.importorskip("trl")

from prefixrl.data.prefixes import cut_prefixes
from prefixrl.data.prompt import render_prompt
from prefixrl.io.errors import BadInput
from prefixrl.integrations.trl import PrefixGRPOTrainer, reward_functions, trl_dataset
from prefixrl.rl.export import training_pool


def make_trainer(tiny_model, tok, task, tmp_path, rows, steps=2, lr=1e-6):
    # constant LR; GRPO's loss with beta = 0 (no reference model), as PrefixRL's built-in trainer
    cfg = trl.GRPOConfig(
        output_dir=str(tmp_path / "trl"), per_device_train_batch_size=8, num_generations=4, max_completion_length=16,
        max_steps=steps, learning_rate=lr, beta=0.0, use_cpu=True, bf16=False, report_to=[], logging_steps=1,
        save_strategy="no", seed=0, temperature=1.0, shuffle_dataset=False, lr_scheduler_type="constant",
    )
    return PrefixGRPOTrainer(model=tiny_model, reward_funcs=reward_functions(task), args=cfg,
                             train_dataset=trl_dataset(rows), processing_class=tok)


def test_prefix_ids_are_context_and_rewards_score_prefix_plus_completion(tiny_model, tok, task, tmp_path):
    traces = reference_traces(task, tok, 4)
    prefixes = cut_prefixes(traces, task, tok, k=1, low=0.8, high=0.8)
    rows = training_pool(prefixes, [t.problem for t in traces], tok, mix=0.5, seed=0)
    trainer = make_trainer(tiny_model, tok, task, tmp_path, rows)
    batch = [r for r in trl_dataset(rows) for _ in range(4)][:8]  # two rows × num_generations, as TRL repeats them
    out = trainer._generate_and_score_completions(batch)
    prompt_ids, prompt_mask = out["prompt_ids"], out["prompt_mask"]
    for i, row in enumerate(batch):
        real = prompt_ids[i][prompt_mask[i].bool()].tolist()
        assert real == render_prompt(tok, row["prompt"][0]["content"]) + row["prefix_ids"]
    # the loss only ever sees completion_ids under completion_mask: the prefix is not among them
    assert out["completion_ids"].shape[0] == 8 and out["completion_mask"].sum() > 0


def test_prefixed_samples_m_gives_a_group_m_prefixed_and_n_minus_m_plain_samples(tiny_model, tok, task, tmp_path):
    """Rows exported with --prefixed-samples 1: of each prefixed row's 4 copies, the first is generated from
    prompt + prefix and the other 3 from the plain prompt, scored as plain, in the one group TRL baselines."""
    from prefixrl.rl.export import trl_records

    traces = reference_traces(task, tok, 4)
    rows = training_pool(cut_prefixes(traces, task, tok, k=1), [t.problem for t in traces], tok, mix=0.5, seed=0)
    records = trl_records(rows, prefixed_samples=1)
    assert {r["prefixed_samples"] for r in records if r["prefix_ids"]} == {1}
    assert {r["prefixed_samples"] for r in records if not r["prefix_ids"]} == {None}
    trainer = make_trainer(tiny_model, tok, task, tmp_path, rows)
    batch = [r for r in records for _ in range(4)][:8]  # two rows × num_generations, as TRL repeats them
    out = trainer._generate_and_score_completions(batch)
    for i, row in enumerate(batch):
        real = out["prompt_ids"][i][out["prompt_mask"][i].bool()].tolist()
        prefix = row["prefix_ids"] if i % 4 < 1 else []
        assert real == render_prompt(tok, row["prompt"][0]["content"]) + prefix
    assert any(row["prefix_ids"] for row in batch)  # the batch holds a prefixed row, so the check bites
    # a TRL that laid a group's copies out otherwise (interleaved) is refused, not read wrongly
    two = [records[0], next(r for r in records if r["problem_id"] != records[0]["problem_id"])]
    interleaved = [row for _ in range(4) for row in two]
    with pytest.raises(BadInput, match="batches a group's copies otherwise than num_generations consecutive rows"):
        trainer._generate_and_score_completions(interleaved)
    records[0]["prefixed_samples"] = 5
    with pytest.raises(BadInput, match="5 prefixed samples per group, more than TRL's num_generations 4"):
        trainer._generate_and_score_completions([records[0]] * 4)


def test_a_trl_that_would_leave_the_prefixes_unapplied_is_refused(tiny_model, tok, task, tmp_path, monkeypatch):
    """The coupling hooks two private methods of GRPOTrainer: a TRL outside the checked range, one without
    either method, and a batch generated without the prefix hook each stop the run with one message."""
    from prefixrl.integrations.trl import check_trl

    check_trl()  # the installed TRL is one of the checked releases
    for version in ("2.0.0", "1.9.3"):
        with pytest.raises(BadInput, match=f"TRL {version}"):
            check_trl(version)
    traces = reference_traces(task, tok, 4)
    rows = training_pool(cut_prefixes(traces, task, tok, k=1), [t.problem for t in traces], tok, mix=1.0, seed=0)
    trainer = make_trainer(tiny_model, tok, task, tmp_path, rows)
    batch = [r for r in trl_dataset(rows) for _ in range(4)][:8]
    # a release whose generation no longer goes through _tokenize_prompts: the prefixes would be dropped
    # (as if TRL had renamed it: its own tokenization runs, the override never does)
    monkeypatch.setattr(PrefixGRPOTrainer, "_tokenize_prompts", trl.GRPOTrainer._tokenize_prompts)
    with pytest.raises(BadInput, match=f"TRL {trl.__version__} generated this batch without calling"):
        trainer._generate_and_score_completions(batch)
    monkeypatch.delattr(trl.GRPOTrainer, "_tokenize_prompts")
    with pytest.raises(BadInput, match="has no _tokenize_prompts"):
        make_trainer(tiny_model, tok, task, tmp_path, rows)


class Twice:
    """Toy task: a response is correct when it starts with the answer digit twice ("77…"). A prefix "7"
    leaves one token to the policy: about 1 chance in 20 for a random tiny model, so GRPO has signal on
    prefixed rows; unprefixed rows (1 in 4) need both digits."""

    name = "twice"

    def verify(self, problem, response):
        from prefixrl.data.tasks.base import Verdict

        return Verdict.CORRECT if response.startswith(problem.answer * 2) else Verdict.INCORRECT


def test_trl_run_learns_on_a_toy_case(tiny_model, tok, tmp_path):
    from prefixrl.rl.export import Row

    seven = tok.encode("7", add_special_tokens=False)
    rows = [Row(f"t:{i}", f"{i} 77", "7", seven if i % 4 else [], "7" if i % 4 else "") for i in range(12)]
    trainer = make_trainer(tiny_model, tok, Twice(), tmp_path, rows * 40, steps=120, lr=1e-2)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "rewards/reward/mean" in h]
    mean = lambda hs: sum(h["rewards/reward/mean"] for h in hs) / len(hs)
    assert "rewards/reward_prefixed/mean" in logs[0]
    assert mean(logs[-20:]) > mean(logs[:20]) + 0.3, [round(h["rewards/reward/mean"], 2) for h in logs]


def _example():
    """examples/trl_grpo.py as a module (it is a script, not part of the package)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "trl_grpo.py"
    spec = importlib.util.spec_from_file_location("trl_grpo_example", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module's annotations through it
    spec.loader.exec_module(module)
    return module


def test_the_example_parses_trls_own_flags_with_the_papers_objective_as_default(tmp_path):
    example = _example()
    _, config, model = example.parse(["--model_name_or_path", "m", "--output_dir", str(tmp_path), "--use_cpu", "true"])
    assert (config.scale_rewards, config.loss_type, config.beta, config.reward_weights) == ("none", "dr_grpo", 0.0,
                                                                                          [1.0, 0.0, 0.0])
    assert model.model_name_or_path == "m" and config.save_strategy == "steps"  # TRL's own defaults otherwise
    import torch

    if not torch.cuda.is_available():  # TRL's bf16 default needs a GPU; on a CPU, float32 as everywhere here
        _, config, _ = example.parse(["--output_dir", str(tmp_path)])
        assert config.use_cpu and not config.bf16
    (tmp_path / "recipe.yaml").write_text("scale_rewards: group\nloss_type: grpo\nlearning_rate: 0.001\n")
    _, config, _ = example.parse(["--config", str(tmp_path / "recipe.yaml"), "--output_dir", str(tmp_path),
                                  "--use_cpu", "true", "--learning_rate", "0.002"])
    assert (config.scale_rewards, config.loss_type, config.learning_rate) == ("group", "grpo", 0.002)


def test_a_users_reward_function_scores_prefix_plus_completion(tiny_model, tok, task, tmp_path):
    """`with_prefix`: any TRL reward function sees the prefix text in front of each completion."""
    from prefixrl.integrations.trl import with_prefix

    seen = []

    def length_reward(prompts, completions, **kwargs):
        seen.extend(completions)
        return [float(len(c)) for c in completions]

    traces = reference_traces(task, tok, 2)
    rows = training_pool(cut_prefixes(traces, task, tok, k=1, low=0.5, high=0.5), [t.problem for t in traces], tok,
                         mix=0.5, seed=0)
    cfg = trl.GRPOConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=8, num_generations=4,
                         max_completion_length=8, max_steps=1, beta=0.0, use_cpu=True, bf16=False, report_to=[],
                         save_strategy="no", seed=0, shuffle_dataset=False, reward_weights=[1.0, 0.0, 0.0, 0.0])
    trainer = PrefixGRPOTrainer(model=tiny_model, reward_funcs=[*reward_functions(task), with_prefix(length_reward)],
                                args=cfg, train_dataset=trl_dataset(rows), processing_class=tok)
    batch = [r for r in trl_dataset(rows) for _ in range(4)][:8]
    out = trainer._generate_and_score_completions(batch)
    texts = [tok.decode(ids[m.bool()].tolist(), skip_special_tokens=True)
             for ids, m in zip(out["completion_ids"], out["completion_mask"])]
    assert len(seen) == 8 and any(r["prefix_text"] for r in batch)
    for row, text, got in zip(batch, texts, seen):  # conversational rows: the assistant message's content
        assert got[-1]["role"] == "assistant" and got[-1]["content"] == row["prefix_text"] + text
    assert with_prefix(length_reward).__name__ == "length_reward"  # TRL logs it under the user's own name


def _exported_rows(tmp_path, tok, task):
    from prefixrl.data.prefixes import save_prefixes
    from prefixrl_lab.cli import main

    pretrain_tiny(tmp_path / "base", steps=2, hard_steps=6)
    save_prefixes(tmp_path / "p.parquet", cut_prefixes(reference_traces(task, tok, 4), task, tok), tok)
    assert main(["export", "--format", "trl", "--model", str(tmp_path / "base"), "--prefixes",
                 str(tmp_path / "p.parquet"), "--problems", "8", "--out", str(tmp_path / "rows.parquet")]) == 0
    return tmp_path / "rows.parquet"


def _run_example(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "examples/trl_grpo.py", *args], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow  # TRL's example script, run three times in subprocesses
def test_example_script_trains_checkpoints_and_resumes_on_exported_rows(tmp_path, tok, task):
    """examples/trl_grpo.py as docs/trl.md runs it: TRL's flags, checkpoints every step, then the same
    command resumed; the task comes from the rows file; the model card cites PrefixRL."""
    import json

    rows = _exported_rows(tmp_path, tok, task)
    out = tmp_path / "trl"
    common = ["--model_name_or_path", str(tmp_path / "base"), "--rows", str(rows), "--output_dir", str(out),
              "--per_device_train_batch_size", "4", "--num_generations", "4", "--max_completion_length", "16",
              "--use_cpu", "true", "--bf16", "false", "--report_to", "none", "--save_strategy", "steps",
              "--save_steps", "1", "--logging_steps", "1"]
    r = _run_example(*common, "--max_steps", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "checkpoint-2").is_dir() and (out / "config.json").is_file()
    before = {c.name: (c / "trainer_state.json").stat().st_mtime_ns for c in out.glob("checkpoint-*")}
    r = _run_example(*common, "--max_steps", "3", "--resume_from_checkpoint", "true")
    assert r.returncode == 0, r.stderr[-3000:]
    # resumed, not restarted: steps 1 and 2 were not run (nor saved) again
    assert {c: (out / c / "trainer_state.json").stat().st_mtime_ns for c in before} == before
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2, 3]
    card = (out / "README.md").read_text()
    assert "2601.18795" in card and "prefixrl" in card and "Reuse your FLOPs" in card


def test_rows_that_record_no_task_are_an_error_not_reward_zero(tmp_path, tok, task):
    import pyarrow.parquet as pq

    rows = _exported_rows(tmp_path, tok, task)
    bare = tmp_path / "bare.parquet"
    pq.write_table(pq.read_table(rows).replace_schema_metadata(None), bare)
    r = _run_example("--model_name_or_path", str(tmp_path / "base"), "--rows", str(bare), "--output_dir",
                     str(tmp_path / "trl"), "--use_cpu", "true", "--max_steps", "1")
    assert r.returncode == 2 and "records no task" in r.stderr.strip().splitlines()[-1], r.stderr[-2000:]
