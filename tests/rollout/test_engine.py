import pytest
import torch

from prefixrl.rl.losses import token_logprobs
from prefixrl.rl.mask import make_batch
from prefixrl.rollout.engine import Sampler, SamplingParams
from prefixrl.rollout.model import param_count

PROMPTS = [[1, 4, 12, 13, 5], [1, 4, 14, 5, 20, 21, 22]]  # the second ends with "prefix" ids


def _sampler(model, tok):
    return Sampler(model, tok.eos_token_id, tok.pad_token_id)


def test_same_seed_same_samples_different_seed_differs(tiny_model, tok):
    s = _sampler(tiny_model, tok)
    p = SamplingParams(max_new_tokens=12)
    a, b, c = s.generate(PROMPTS, 4, p, seed=3), s.generate(PROMPTS, 4, p, seed=3), s.generate(PROMPTS, 4, p, seed=4)
    tokens = lambda g: [x.tokens for grp in g.samples for x in grp]
    assert tokens(a) == tokens(b)
    assert [x.logprobs for grp in a.samples for x in grp] == [x.logprobs for grp in b.samples for x in grp]
    assert tokens(a) != tokens(c)


def test_shapes_lengths_and_flops(tiny_model, tok):
    g = _sampler(tiny_model, tok).generate(PROMPTS, 3, SamplingParams(max_new_tokens=7), seed=0)
    assert len(g.samples) == 2 and all(len(grp) == 3 for grp in g.samples)
    n = param_count(tiny_model)
    generated = 0
    for grp in g.samples:
        for x in grp:
            assert 1 <= len(x.tokens) <= 7 and len(x.logprobs) == len(x.tokens)
            assert x.truncated == (tok.eos_token_id not in x.tokens)
            if not x.truncated:
                assert x.tokens[-1] == tok.eos_token_id and x.tokens.count(tok.eos_token_id) == 1
            generated += len(x.tokens)
    assert g.prefill_flops == 2 * n * (5 + 7)  # each prompt is prefilled once for its 3 samples
    assert g.decode_flops == 2 * n * generated
    unshared = Sampler(tiny_model, tok.eos_token_id, tok.pad_token_id, share_prefix=False)
    assert unshared.generate(PROMPTS, 3, SamplingParams(max_new_tokens=7), seed=0).prefill_flops == 3 * g.prefill_flops


def _flat(g):
    return [x.tokens for grp in g.samples for x in grp], [x.logprobs for grp in g.samples for x in grp]


@pytest.mark.parametrize("n", [1, 8])
def test_shared_prefix_bucketing_and_batching_do_not_change_the_samples(tok, n):
    """Same seed → same tokens and log-probs, whether a group's prompt is prefilled once and shared or
    once per sample, whether prompts are length-bucketed, and however rows are split into batches."""
    from prefixrl.rollout.model import ModelShape, build_model

    model = build_model(tok, ModelShape(hidden=64, layers=2, heads=4, ffn=128, max_positions=256), seed=1)
    rng = torch.Generator().manual_seed(0)
    # problems of different lengths, half of them followed by a long "prefix"
    prompts = [torch.randint(3, len(tok), (int(torch.randint(4, 40, (1,), generator=rng)),), generator=rng).tolist()
               for _ in range(12)]
    prompts = [p + [3 + (k % (len(tok) - 3)) for k in range(len(p))] if i % 2 else p for i, p in enumerate(prompts)]
    params = SamplingParams(max_new_tokens=24)
    ref_tokens, ref_logps = _flat(Sampler(model, tok.eos_token_id, tok.pad_token_id, share_prefix=False,
                                          bucket=False).generate(prompts, n, params, seed=5))
    for kw in [{}, {"max_batch": 3 * n}, {"bucket": False}, {"share_prefix": False, "max_batch": 2 * n}]:
        tokens, logps = _flat(Sampler(model, tok.eos_token_id, tok.pad_token_id, **kw).generate(prompts, n, params, seed=5))
        assert tokens == ref_tokens, kw
        for a, b in zip(logps, ref_logps):
            assert torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-5), kw
    assert len({tuple(t) for t in ref_tokens}) > len(prompts) // 2  # the samples really vary


def test_logprobs_match_a_full_forward(tiny_model, tok):
    """The KV-cached, left-padded sampler computes the same log-probs as one unpadded forward."""
    g = _sampler(tiny_model, tok).generate(PROMPTS, 2, SamplingParams(max_new_tokens=10), seed=1)
    _assert_full_forward_logprobs(tiny_model, tok, PROMPTS, g)


def _assert_full_forward_logprobs(model, tok, prompts, g):
    """Every sampled token's log-prob equals the one a single unpadded forward gives it."""
    for prompt, grp in zip(prompts, g.samples):
        for x in grp:
            b = make_batch([prompt], [x.tokens], tok.pad_token_id)
            with torch.no_grad():
                lp, _ = token_logprobs(model, b)
            assert torch.allclose(lp[0][b.mask[0] > 0], torch.tensor(x.logprobs), atol=1e-4)


def _family_model(tok, arch: str, kv_heads: int):
    """A tiny stock transformers model of each family the preallocated cache decodes: Llama (no biases) and
    Qwen2 (q/k/v biases), with full and with grouped-query attention."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    cls, model_cls = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[arch]
    cfg = cls(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=kv_heads, max_position_embeddings=128, tie_word_embeddings=True,
              eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(3)
    model = model_cls(cfg)
    with torch.no_grad():  # biases are zero at init; make them count
        for p in model.parameters():
            if p.ndim == 1 and p.abs().sum() == 0:
                p.normal_(0, 0.5)
    return model


@pytest.mark.parametrize("arch,kv_heads", [("llama", 4), ("llama", 2), ("qwen2", 4), ("qwen2", 1)])
@pytest.mark.parametrize("static", [True, False])
def test_both_caches_sample_the_full_forward_distribution(tok, arch, kv_heads, static, monkeypatch):
    """The preallocated cache (prefixrl.rollout.kv_cache) and transformers' own cache both give, for every sampled
    token, the log-prob one full forward gives it: through left padding, shared prefills and retirement
    (24 new tokens, so rows finish at different steps)."""
    from prefixrl.rollout.kv_cache import GrowingCache, PreallocatedCache

    model = _family_model(tok, arch, kv_heads)
    retired = []
    cls = PreallocatedCache if static else GrowingCache
    select = cls.select
    monkeypatch.setattr(cls, "select", lambda self, keep: retired.append(len(keep)) or select(self, keep))
    sampler = Sampler(model, tok.eos_token_id, tok.pad_token_id, static_cache=static)
    assert sampler.static_cache is static  # every family here is one the fast path decodes
    prompts = PROMPTS + [[3 + k % (len(tok) - 3) for k in range(20)]]
    g = sampler.generate(prompts, 3, SamplingParams(max_new_tokens=24), seed=2)
    assert retired  # rows finished at different steps and retired mid-batch
    _assert_full_forward_logprobs(model, tok, prompts, g)


def test_the_cache_arena_is_reused_and_grows(tiny_model, tok):
    """A second call of the same size reuses the sampler's buffers; a larger one grows them."""
    s = _sampler(tiny_model, tok)
    p = SamplingParams(max_new_tokens=8)
    a = s.generate(PROMPTS, 2, p, seed=0)
    sizes = {k: v.numel() for k, v in s.arena.buffers.items()}
    assert s.generate(PROMPTS, 2, p, seed=0).samples == a.samples
    assert {k: v.numel() for k, v in s.arena.buffers.items()} == sizes
    s.generate(PROMPTS, 3, SamplingParams(max_new_tokens=16), seed=0)
    assert any(s.arena.buffers[k].numel() > n for k, n in sizes.items())


def test_an_unknown_family_falls_back_to_transformers_cache(tok):
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=128,
                                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
    s = Sampler(model, tok.eos_token_id, tok.pad_token_id)
    assert not s.static_cache
    g = s.generate(PROMPTS, 2, SamplingParams(max_new_tokens=6), seed=0)
    assert all(1 <= len(x.tokens) <= 6 for grp in g.samples for x in grp)


def test_top_p_keeps_only_the_nucleus(tiny_model, tok):
    # With a tiny top_p only the most likely token survives: sampling becomes greedy.
    s = _sampler(tiny_model, tok)
    p = SamplingParams(max_new_tokens=6, top_p=1e-6)
    a = s.generate(PROMPTS[:1], 3, p, seed=0).samples[0]
    b = s.generate(PROMPTS[:1], 3, p, seed=9).samples[0]
    assert a[0].tokens == a[1].tokens == a[2].tokens == b[0].tokens


@pytest.mark.parametrize("kwargs", [{"temperature": 0}, {"top_p": 0}, {"top_p": 1.5}, {"max_new_tokens": 0}])
def test_bad_sampling_params(kwargs):
    with pytest.raises(ValueError):
        SamplingParams(**kwargs)
