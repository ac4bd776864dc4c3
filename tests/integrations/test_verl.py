"""verl, for real: rows from `prefixrl export --format verl` read by verl's RLHFDataset, rolled out by verl's
own AgentLoopWorker (which instantiates our registered "prefixrl_agent" loop through its registry), and
scored by verl's NaiveRewardManager with our compute_score loaded through verl's custom-reward loader.

verl pins transformers < 5.11, so this file runs in an environment of its own (`.ci/run`) and is skipped
elsewhere. What a GPU would add — the vLLM/SGLang rollout server and the FSDP actor — is not under test:
the LLM server here is a local backend that answers each prompt with the reference solution's
continuation (so a correct reward is reachable and checkable) and records the prompt ids it was sent.
"""

import asyncio
import os
from pathlib import Path

import pytest

pytest.importorskip("verl")

from conftest import pretrain_tiny, reference_traces  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from verl.experimental.agent_loop.agent_loop import (  # noqa: E402
    AgentLoopWorker,
    _agent_loop_registry,
)
from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager  # noqa: E402
from verl.protocol import DataProto  # noqa: E402
from verl.trainer.ppo.ray_trainer import RayPPOTrainer  # noqa: E402
from verl.trainer.ppo.reward import get_custom_reward_fn  # noqa: E402
from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn  # noqa: E402
from verl.workers.rollout.replica import TokenOutput  # noqa: E402

import prefixrl.integrations.verl  # noqa: E402,F401  (registers prefixrl_agent)
import prefixrl.integrations.verl_reward as verl_reward  # noqa: E402
from prefixrl.data.prefixes import cut_prefixes, save_prefixes  # noqa: E402
from prefixrl.data.prompt import encode_response, render_prompt  # noqa: E402
from prefixrl.data.tasks.chain import ChainTask  # noqa: E402
from prefixrl.io.errors import BadInput  # noqa: E402
from prefixrl_lab.cli import main  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class ReferenceServer:
    """verl's LLM-server interface (`generate(...) -> TokenOutput`), answering with the reference
    solution's tokens after whatever part of it the prompt already holds."""

    def __init__(self, tok, task, problems):
        self.answers = {}
        for p in problems:
            full = encode_response(tok, task.solution(p), eos=True)
            base = render_prompt(tok, p.question)
            for cut in range(len(full)):
                self.answers[tuple(base + full[:cut])] = full[cut:]
        self.seen: list[list[int]] = []

    async def generate(self, *, request_id, prompt_ids, sampling_params, **_):
        self.seen.append(list(prompt_ids))
        return TokenOutput(token_ids=self.answers[tuple(prompt_ids)], stop_reason="completed")


def verl_config(base, rows, max_prompt_length=256):
    import verl.trainer.config

    with initialize_config_dir(config_dir=os.path.dirname(verl.trainer.config.__file__), version_base=None):
        return compose("ppo_trainer", overrides=[
            f"actor_rollout_ref.model.path={base}", f"data.train_files={rows}",
            f"data.max_prompt_length={max_prompt_length}", "data.max_response_length=96",
            "actor_rollout_ref.rollout.name=vllm", "actor_rollout_ref.rollout.calculate_log_probs=false",
            f"reward.custom_reward_function.path={verl_reward.__file__}",
            "reward.custom_reward_function.name=compute_score",
            # the registry file docs/verl.md tells users to pass (what Ray workers load)
            f"actor_rollout_ref.rollout.agent.agent_loop_config_path={EXAMPLES / 'verl_agent_loops.yaml'}",
        ])


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tok):
    d = tmp_path_factory.mktemp("verl")
    pretrain_tiny(d / "base", steps=2, hard_steps=6)
    task = ChainTask(easy_max_steps=6, hard_steps=6)
    save_prefixes(d / "p.parquet", cut_prefixes(reference_traces(task, tok, 4), task, tok), tok)
    assert main(["export", "--format", "verl", "--model", str(d / "base"), "--prefixes", str(d / "p.parquet"),
                 "--out", str(d / "rows.parquet"), "--problems", "4"]) == 0
    return d, task, task.problems("hard_train", 4, 0)


def rollout(d, task, problems, tok, rows="rows.parquet", **cfg_kw):
    cfg = verl_config(d / "base", d / rows, **cfg_kw)
    server = ReferenceServer(tok, task, problems)
    worker = AgentLoopWorker(cfg, server)
    ds = RLHFDataset(data_files=[str(d / rows)], tokenizer=worker.tokenizer, config=cfg.data, processor=None)
    batch = DataProto.from_single_dict(collate_fn([ds[i] for i in range(len(ds))]))
    return cfg, worker, server, asyncio.run(worker.generate_sequences(batch))


def test_agent_loop_is_registered_for_verl():
    assert _agent_loop_registry["prefixrl_agent"] == {"_target_": "prefixrl.integrations.verl.PrefixAgentLoop"}


def test_prefix_is_prompt_context_and_reward_scores_prefix_plus_response(setup, tok, tmp_path):
    d, task, problems = setup
    cfg, worker, server, out = rollout(d, task, problems, tok)
    info = out.non_tensor_batch["extra_info"]
    assert sum(bool(list(i["prefix_ids"])) for i in info) == 12 and len(info) == 16
    assert set(out.non_tensor_batch["agent_name"]) == {"prefixrl_agent", "single_turn_agent"}
    for row in range(len(out)):
        ex = info[row]
        want = render_prompt(tok, ex["question"]) + [int(t) for t in ex["prefix_ids"]]
        mask = out.batch["attention_mask"][row]
        prompt_len = out.batch["prompts"].shape[1]
        prompt = out.batch["prompts"][row][mask[:prompt_len].bool()].tolist()
        # The server generated after exactly render(question) + prefix ids, and verl keeps those ids on
        # the prompt side of its prompt/response split: context, never a training target.
        assert prompt == want and want in server.seen
        n_resp = int(mask[prompt_len:].sum())
        response = out.batch["responses"][row][:n_resp].tolist()
        assert response == server.answers[tuple(want)]
        # verl's loss mask covers exactly the generated tokens, and none of the prefix.
        assert out.batch["response_mask"][row].tolist() == [1] * n_resp + [0] * (out.batch["responses"].shape[1] - n_resp)

    # Reward through verl: its custom-reward loader imports our function from its file, its reward
    # manager decodes the response only; compute_score puts the prefix text back in front.
    manager = NaiveRewardManager(cfg, worker.tokenizer, compute_score=get_custom_reward_fn(cfg))
    scores = [manager.loop.run_until_complete(manager.run_single(out[row : row + 1])) for row in range(len(out))]
    assert [s["reward_score"] for s in scores] == [1.0] * len(out)
    assert sorted(s["reward_extra_info"]["prefixed"] for s in scores) == [0.0] * 4 + [1.0] * 12
    # Control: a prefixed row's continuation alone is not a correct response; with its prefix it is.
    row = next(r for r in range(len(out)) if info[r]["prefix_text"])
    n_resp = int(out.batch["response_mask"][row].sum())
    text = worker.tokenizer.decode(out.batch["responses"][row][:n_resp], skip_special_tokens=True)
    truth = out.non_tensor_batch["reward_model"][row]["ground_truth"]
    assert verl_reward.compute_score("prefixrl", text, truth, dict(info[row]))["score"] == 1.0
    assert verl_reward.compute_score("prefixrl", text, truth, dict(info[row], prefix_text=""))["score"] == 0.0

    # The per-kind training reward, read from the dumps verl's own writer makes under
    # trainer.rollout_data_dir. Step 2 scores each bare continuation: prefixed rows fail, plain ones pass.
    dump = tmp_path / "rollouts"
    extra = {"prefixed": [s["reward_extra_info"]["prefixed"] for s in scores]}
    bare = []
    for r in range(len(out)):
        n = int(out.batch["response_mask"][r].sum())
        cont = worker.tokenizer.decode(out.batch["responses"][r][:n], skip_special_tokens=True)
        truth = out.non_tensor_batch["reward_model"][r]["ground_truth"]
        bare.append(verl_reward.compute_score("prefixrl", cont, truth, dict(info[r], prefix_text=""))["score"])
    for step, step_scores in ((1, [s["reward_score"] for s in scores]), (2, bare)):
        RayPPOTrainer._write_generations(["q"] * len(out), ["a"] * len(out), [None] * len(out), step_scores, extra,
                                         str(dump), step)
    assert verl_reward.rewards_by_kind(dump) == [
        {"step": 1, "prefixed_mean": 1.0, "unprefixed_mean": 1.0, "prefixed_n": 12, "unprefixed_n": 4},
        {"step": 2, "prefixed_mean": 0.0, "unprefixed_mean": 1.0, "prefixed_n": 12, "unprefixed_n": 4}]
    assert verl_reward.main([str(dump)]) == 0
    # verl's default (v1) trainer passes only the sample ids as extra keys: the kind is lost, and said so
    RayPPOTrainer._write_generations(["q"], ["a"], [None], [1.0], {"uid": ["u0_0_0"]}, str(dump), 3)
    with pytest.raises(BadInput, match=r"3\.jsonl:1: no 'prefixed'.*trainer.use_v1=false"):
        verl_reward.rewards_by_kind(dump)


def test_prompt_plus_prefix_over_the_limit_is_refused(setup, tok):
    d, task, problems = setup
    longest_plain = max(len(render_prompt(tok, p.question)) for p in problems)
    with pytest.raises(ValueError, match="max_prompt_length"):
        rollout(d, task, problems, tok, max_prompt_length=longest_plain + 1)


def test_rows_exported_under_the_prompt_limit_all_roll_out(setup, tok, capsys):
    """`export --max-prompt-tokens` = verl's data.max_prompt_length: the rows that would stop the step
    are left out at export, with a count, and every row written rolls out."""
    d, task, problems = setup
    limit = max(len(render_prompt(tok, p.question)) for p in problems) + 4  # some prefixes fit, some do not
    capsys.readouterr()
    assert main(["export", "--format", "verl", "--model", str(d / "base"), "--prefixes", str(d / "p.parquet"),
                 "--out", str(d / "capped.parquet"), "--problems", "4", "--max-prompt-tokens", str(limit)]) == 0
    printed = capsys.readouterr()
    assert "dropped" in printed.err and f"longer than --max-prompt-tokens {limit}" in printed.err
    _, _, _, out = rollout(d, task, problems, tok, rows="capped.parquet", max_prompt_length=limit)
    assert 4 <= len(out) < 16  # every unprefixed row, and only the prefixed rows that fit
    assert int(out.batch["attention_mask"][:, : out.batch["prompts"].shape[1]].sum(-1).max()) <= limit


def test_the_recipe_normalises_every_token_by_one_constant():
    """docs/verl.md's recipe: loss_scale_factor = max_response_length, so verl's seq-mean-token-sum-norm
    divides by the same constant in every step (paper §3.6), not by the batch's padded width."""
    import re

    import torch
    from verl.trainer.ppo.core_algos import agg_loss

    recipe = (Path(__file__).resolve().parents[2] / "docs" / "verl.md").read_text()
    start = recipe.index("python -m verl.trainer.main_ppo")
    flags = dict(re.findall(r"([\w.]+)=(\S+)", recipe[start : recipe.index("```", start)]))  # the command only
    assert flags["algorithm.norm_adv_by_std_in_grpo"] == "false"
    assert flags["actor_rollout_ref.actor.loss_agg_mode"] == "seq-mean-token-sum-norm"
    assert flags["actor_rollout_ref.actor.loss_scale_factor"] == flags["data.max_response_length"]
    # the legacy trainer: the agent loop and reward manager tested here, and rollout dumps that keep `prefixed`
    assert flags["trainer.use_v1"] == "false" and flags["trainer.rollout_data_dir"]
    factor = int(flags["data.max_response_length"])
    loss, mask = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 0.0]]), torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    padded = (torch.nn.functional.pad(loss, (0, 5)), torch.nn.functional.pad(mask, (0, 5)))
    mode = "seq-mean-token-sum-norm"
    assert agg_loss(loss, mask, mode, loss_scale_factor=factor) == agg_loss(*padded, mode, loss_scale_factor=factor)
    assert agg_loss(loss, mask, mode) != agg_loss(*padded, mode)  # unset: the batch's own width decides
