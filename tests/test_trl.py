"""PrefixRL on TRL's real GRPOTrainer, on CPU with a tiny local model: prefix ids are appended to the
prompt (so they are context and carry no loss), rewards score prefix + completion, per-kind rewards are
logged, and a run learns on a toy case."""

import pytest
from conftest import pretrain_tiny, reference_traces

trl = pytest.importorskip("trl")

from prefixrl.export import training_pool
from prefixrl.integrations.trl import PrefixGRPOTrainer, reward_functions, trl_dataset
from prefixrl.prefixes import cut_prefixes
from prefixrl.render import render_prompt


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


class Twice:
    """Toy task: a response is correct when it starts with the answer digit twice ("77…"). A prefix "7"
    leaves one token to the policy: about 1 chance in 20 for a random tiny model, so GRPO has signal on
    prefixed rows; unprefixed rows (1 in 4) need both digits."""

    name = "twice"

    def verify(self, problem, response):
        from prefixrl.tasks.base import Verdict

        return Verdict.CORRECT if response.startswith(problem.answer * 2) else Verdict.INCORRECT


def test_trl_run_learns_on_a_toy_case(tiny_model, tok, tmp_path):
    from prefixrl.export import Row

    seven = tok.encode("7", add_special_tokens=False)
    rows = [Row(f"t:{i}", f"{i} 77", "7", seven if i % 4 else [], "7" if i % 4 else "") for i in range(12)]
    trainer = make_trainer(tiny_model, tok, Twice(), tmp_path, rows * 40, steps=120, lr=1e-2)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "rewards/reward/mean" in h]
    mean = lambda hs: sum(h["rewards/reward/mean"] for h in hs) / len(hs)
    assert "rewards/reward_prefixed/mean" in logs[0]
    assert mean(logs[-20:]) > mean(logs[:20]) + 0.3, [round(h["rewards/reward/mean"], 2) for h in logs]


def test_example_script_trains_on_exported_rows(tmp_path, tok, task):
    """examples/trl_grpo.py, as a user runs it, on rows from `prefixrl export --format trl`."""
    import subprocess
    import sys

    from prefixrl.cli import main

    d = tmp_path
    pretrain_tiny(d / "base", steps=2, hard_steps=6)
    from prefixrl.prefixes import save_prefixes

    save_prefixes(d / "p.parquet", cut_prefixes(reference_traces(task, tok, 4), task, tok), tok)
    assert main(["export", "--format", "trl", "--model", str(d / "base"), "--prefixes", str(d / "p.parquet"),
                 "--problems", "8", "--out", str(d / "rows.parquet")]) == 0
    r = subprocess.run([sys.executable, "examples/trl_grpo.py", "--model", str(d / "base"), "--rows",
                        str(d / "rows.parquet"), "--out", str(d / "trl"), "--max-steps", "2",
                        "--per-device-train-batch-size", "4", "--num-generations", "4", "--max-completion-length", "16"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (d / "trl" / "final" / "config.json").is_file()
