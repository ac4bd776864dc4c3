"""The ReGFT-style baseline (`--method regft-rl`): SFT on the policy's own verified completions of the
prefixed problems, then RL. A scripted engine fixes what the policy "writes", so what is kept, what is
trained and what is charged are asserted exactly."""

import pytest
import torch
from conftest import reference_traces
from test_train_step import ScriptedEngine

from prefixrl.data.prefixes import PrefixedPrompt, cut_prefixes
from prefixrl.rl.mask import make_batch
from prefixrl.rl.methods import METHODS
from prefixrl.rl.regft import own_completions
from prefixrl.rl.settings import RLSettings
from prefixrl.rl.train import TrainingSet, before_rl, train_rl
from prefixrl.rollout.engine import SamplingParams
from prefixrl.rollout.flops import Ledger


@pytest.fixture
def data(task, tok):
    traces = reference_traces(task, tok, n=6)
    prefixes = cut_prefixes(traces, task, tok, seed=0)
    rest = {tuple(PrefixedPrompt.of(tok, p.problem, p.prefix_ids).ids):
            list(t.token_ids)[len(p.prefix_ids):] + [tok.eos_token_id]
            for p in prefixes for t in traces if t.problem_id == p.problem_id}
    return traces, prefixes, rest


def test_only_verified_completions_are_kept_with_the_prefix_as_context(data, task, tok):
    """Sample 0 of every prefix finishes the solution, the others stop at once: one example per prefix,
    its context the rendered problem + prefix, its trained ids the completion alone."""
    traces, prefixes, rest = data
    engine = ScriptedEngine(lambda ids, i: rest[tuple(ids)] if i == 0 else [tok.eos_token_id])
    ledger = Ledger()
    examples, counts = own_completions(engine, tok, task, prefixes, 4, SamplingParams(max_new_tokens=task.max_response_tokens),
                                       seed=0, ledger=ledger)
    assert counts == {"prefixes": len(prefixes), "sampled": 4 * len(prefixes), "kept": len(prefixes),
                      "problems": len(traces)}
    for p, context, trained in zip(prefixes, examples.context, examples.trained):
        assert context == PrefixedPrompt.of(tok, p.problem, p.prefix_ids).ids  # the prefix is context
        assert trained == rest[tuple(context)]
    # the prefix gets no gradient: only the completion's positions are in the mask
    batch = make_batch(examples.context[:1], examples.trained[:1], tok.pad_token_id)
    assert int(batch.mask.sum()) == len(examples.trained[0])
    assert ledger.total("regft/") == len(engine.calls) * 3.0  # the sampling, charged (prefill 1 + decode 2 per call)
    assert len(engine.calls) == 1 and engine.calls[0][1] == 4


def test_the_phase_fits_the_kept_completions_and_is_charged(data, task, tok, tiny_model):
    traces, prefixes, rest = data
    engine = ScriptedEngine(lambda ids, i: rest[tuple(ids)] if i < 2 else [tok.eos_token_id])
    cfg = RLSettings(method="regft-rl", regft_samples=3, sft_rule="epochs", sft_epochs=2, sft_lr=1e-3,
                     max_new_tokens=task.max_response_tokens)
    before = [p.detach().clone() for p in tiny_model.parameters()]
    ledger = Ledger()
    out = before_rl(tiny_model, tok, task, cfg, METHODS["regft-rl"], [], prefixes, engine, ledger)
    assert out["completions"]["kept"] == 2 * len(prefixes) and out["epochs"] == 2 and out["examples"] == 2 * len(prefixes)
    assert ledger.total("sft/train") > 0 and ledger.total("regft/") > 0 and ledger.total("select/") == 0
    assert any(not torch.equal(a, b) for a, b in zip(before, tiny_model.parameters()))


def test_no_verified_completion_leaves_the_policy_as_it_was(data, task, tok, tiny_model):
    _, prefixes, _ = data
    engine = ScriptedEngine(lambda ids, i: [tok.eos_token_id])
    before = [p.detach().clone() for p in tiny_model.parameters()]
    out = before_rl(tiny_model, tok, task, RLSettings(method="regft-rl", max_new_tokens=task.max_response_tokens),
                    METHODS["regft-rl"], [], prefixes, engine, Ledger())
    assert out["completions"]["kept"] == 0 and out["rule"] == "no verified completion"
    assert all(torch.equal(a, b) for a, b in zip(before, tiny_model.parameters()))


def test_regft_rl_trains_from_the_real_sampler_and_needs_prefixes(data, task, tok, tiny_model, tmp_path):
    """Through `train_rl` with the built-in sampler: the completions are sampled and charged before RL."""
    traces, prefixes, _ = data
    cfg = RLSettings(method="regft-rl", steps=2, prompts_per_step=2, samples_per_prompt=2, regft_samples=2,
                     eval_every=2, eval_problems=2, eval_samples=2, sft_rule="epochs", sft_epochs=1)
    problems = [t.problem for t in traces]
    result = train_rl(tiny_model, tok, TrainingSet(task, problems, prefixes), cfg, tmp_path / "run")
    assert result["ledger"]["regft/decode"] > 0 and result["sft"]["completions"]["sampled"] == 2 * len(prefixes)
    with pytest.raises(ValueError, match="needs prefixes"):
        train_rl(tiny_model, tok, TrainingSet(task, problems, []), cfg, tmp_path / "run2")
