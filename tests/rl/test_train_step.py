"""One RL step (`train.rl_step`) driven through a scripted engine: what the step samples is fixed by the
test, so each property of the step is asserted exactly, with no sampling luck involved."""

import contextlib

import pytest
import torch
from conftest import reference_traces

from prefixrl.data.prefixes import PrefixedPrompt, cut_prefixes
from prefixrl.data.prompt import decode_response, encode_response
from prefixrl.data.tasks.base import Verdict
from prefixrl.rl.methods import METHODS
from prefixrl.rl.pool import Pool
from prefixrl.rl.settings import RLSettings
from prefixrl.rl.train import Learner, rl_step
from prefixrl.rollout.engine import Generations, Sample
from prefixrl.rollout.flops import Ledger, train_flops
from prefixrl.rollout.model import param_count


class ScriptedEngine:
    """An `Engine` whose completion for each prompt is chosen by `script(prompt ids, sample index)`."""

    def __init__(self, script):
        self.script, self.calls = script, []

    def generate(self, prompts, n, params, seed, seeds=None):
        self.calls.append((prompts, n, seed))
        samples = [[Sample(ids, [-0.5] * len(ids), False) for ids in (self.script(p, i) for i in range(n))]
                   for p in prompts]
        return Generations(samples, prefill_flops=1.0, decode_flops=2.0)


@pytest.fixture
def setup(task, tok, tiny_model):
    traces = reference_traces(task, tok, n=8)
    pool = Pool([t.problem for t in traces], cut_prefixes(traces, task, tok, seed=0))
    solution = {t.problem.question: list(t.token_ids) for t in traces}
    prompts = {tuple(PrefixedPrompt.of(tok, p.problem, p.prefix_ids).ids): (p.problem, list(p.prefix_ids))
               for p in pool.prefixed}
    prompts.update({tuple(PrefixedPrompt.of(tok, p).ids): (p, []) for p in pool.unprefixed})
    cfg = RLSettings(prompts_per_step=8, samples_per_prompt=4, mix=0.75, max_new_tokens=task.max_response_tokens,
                     lr=1e-2)
    learner = Learner(tiny_model, torch.optim.AdamW(tiny_model.parameters(), lr=cfg.lr), METHODS["prefixrl"],
                      contextlib.nullcontext)

    def rest_of_solution(ids):
        """The completion that finishes the reference solution after the prompt's prefix."""
        problem, prefix = prompts[tuple(ids)]
        return solution[problem.question][len(prefix):] + [tok.eos_token_id]

    return pool, cfg, learner, prompts, rest_of_solution


def params_of(model):
    return [p.detach().clone() for p in model.parameters()]


def test_the_batch_holds_the_configured_prefixed_share(setup, task, tok):
    pool, cfg, learner, _, rest = setup
    for step in range(1, 6):
        rec = rl_step(step, pool, ScriptedEngine(lambda ids, i: rest(ids)), learner, task, tok, cfg, Ledger())
        assert sum(rec.prefixed) == round(0.75 * 8) and len(rec.prefixed) == 8


def test_reward_is_the_verdict_on_prefix_plus_completion(setup, task, tok):
    pool, cfg, learner, prompts, rest = setup
    engine = ScriptedEngine(lambda ids, i: rest(ids))
    rec = rl_step(1, pool, engine, learner, task, tok, cfg, Ledger())
    assert all(r == [1.0] * 4 for r in rec.rewards)  # every group completed its own prefix correctly
    for ids in engine.calls[0][0]:
        problem, prefix = prompts[tuple(ids)]
        if prefix:  # the completion alone is wrong: the reward came from prefix + completion
            alone = decode_response(tok, rest(ids))
            assert task.verify(problem, alone) is not Verdict.CORRECT


def test_groups_without_signal_are_neither_trained_nor_charged(setup, task, tok, tiny_model):
    pool, cfg, learner, _, rest = setup
    before, ledger = params_of(tiny_model), Ledger()
    rec = rl_step(1, pool, ScriptedEngine(lambda ids, i: rest(ids)), learner, task, tok, cfg, ledger)
    assert rec.zero_adv_groups == 1.0 and rec.trained_rows == 0
    assert "rl/train" not in ledger.to_dict()
    assert ledger.total("rl/") == 1.0 + 2.0  # the scripted prefill and decode only
    assert all(torch.equal(a, b) for a, b in zip(before, tiny_model.parameters()))


def test_only_groups_with_signal_train_and_their_prefix_tokens_count_in_update_flops(setup, task, tok, tiny_model):
    pool, cfg, learner, prompts, rest = setup
    wrong = encode_response(tok, "0 0 0 0 0 0 #0")
    first_prefixed = {}

    def script(ids, i):
        # one prefixed group is mixed (2 right, 2 wrong), every other group is all right
        key = tuple(ids)
        if prompts[key][1] and not first_prefixed:
            first_prefixed[key] = True
        return wrong if key in first_prefixed and i < 2 else rest(ids)

    before, ledger = params_of(tiny_model), Ledger()
    engine = ScriptedEngine(script)
    rec = rl_step(1, pool, engine, learner, task, tok, cfg, ledger)
    (mixed,) = first_prefixed
    assert rec.trained_rows == 4 and rec.zero_adv_groups == 7 / 8 and rec.applied
    # update FLOPs: 6·N per token of each trained row, the prompt and its prefix included
    prefix_len = len(prompts[mixed][1])
    assert prefix_len > 0
    tokens = sum(len(mixed) + len(script(list(mixed), i)) for i in range(4))
    assert ledger.to_dict()["rl/train"] == train_flops(param_count(tiny_model), tokens)
    assert not all(torch.equal(a, b) for a, b in zip(before, tiny_model.parameters()))
    assert engine.calls[0][1] == cfg.samples_per_prompt  # prefixrl: n on-policy samples per group


def test_a_mixed_group_draws_m_prefixed_samples_and_shares_one_baseline(setup, task, tok, monkeypatch):
    """--prefixed-samples 1 of n = 4: a prefixed prompt gets 1 sample and its plain problem the other 3, in a
    second request; the prefixed sample finishes the solution (reward 1) and the plain ones write nothing
    (reward 0), so one baseline over all 4 is 1/4: advantages +3/4 and −1/4, and all 4 rows are trained."""
    from dataclasses import replace

    from prefixrl.rl import train

    pool, cfg, learner, prompts, rest = setup
    cfg = replace(cfg, prefixed_samples=1)
    engine = ScriptedEngine(lambda ids, i: rest(ids) if prompts[tuple(ids)][1] else [tok.eos_token_id])
    seen = []
    real_update = train.update
    monkeypatch.setattr(train, "update", lambda learner, cfg, tok, groups: seen.extend(groups) or real_update(
        learner, cfg, tok, groups))
    rec = rl_step(1, pool, engine, learner, task, tok, cfg, Ledger())
    # one request per group size: the 6 prefixed prompts 1 each, their 6 plain twins 3, the 2 plain prompts 4
    assert sorted((n, len(p)) for p, n, _ in engine.calls) == [(1, 6), (3, 6), (4, 2)]
    mixed = [g for g in seen if g.prompt.prefixed]
    assert len(mixed) == 6 and all(g.advantages.tolist() == [0.75] for g in mixed)
    twins = [g for g in seen if not g.prompt.prefixed and g.baseline in {m.baseline for m in mixed}]
    assert len(twins) == 6 and all(g.advantages.tolist() == [-0.25] * 3 for g in twins)
    assert rec.trained_rows == 6 * 4 and rec.zero_adv_groups == 2 / 8  # the 2 plain prompts: all reward 0
    assert rec.log(0.0, 0.0, False)["samples_unprefixed"] == 6 * 3 + 2 * 4
