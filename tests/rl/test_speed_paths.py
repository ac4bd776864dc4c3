"""The fast paths compute the same thing as the plain ones: completion-only logits, length-bucketed
micro-batches with gradient accumulation, bf16 only where native, torch.compile behind a flag."""

import pytest
import torch

from prefixrl.rl.losses import token_logprobs, weighted_pg_loss
from prefixrl.rl.mask import make_batch, micro_batches
from prefixrl.rl.train import guarded_update
from prefixrl.rollout.model import ModelShape, build_model
from prefixrl.rollout.precision import autocast, native_bf16, resolve


@pytest.fixture
def model(tok):
    return build_model(tok, ModelShape(hidden=32, layers=2, heads=2, ffn=64, max_positions=128), seed=3)


def rows(tok, n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    rand = lambda lo, hi: int(torch.randint(lo, hi, (1,), generator=g))  # noqa: E731
    context = [torch.randint(3, len(tok), (rand(3, 50),), generator=g).tolist() for _ in range(n)]
    trained = [torch.randint(3, len(tok), (rand(1, 20),), generator=g).tolist() for _ in range(n)]
    return context, trained


def full_forward_logprobs(model, batch):
    logits = model(input_ids=batch.ids).logits[:, :-1].float()
    return torch.log_softmax(logits, -1).gather(-1, batch.ids[:, 1:, None]).squeeze(-1) * batch.mask


def test_completion_only_logits_equal_the_full_forward_values_and_gradients(model, tok):
    context, trained = rows(tok)
    batch = make_batch(context, trained, tok.pad_token_id)
    assert int(batch.mask.sum()) == sum(len(t) for t in trained)  # exactly the completions are trained
    adv = torch.linspace(-1, 1, len(context))
    grads = []
    for fn in (full_forward_logprobs, lambda m, b: token_logprobs(m, b)[0]):
        model.zero_grad()
        logp = fn(model, batch)
        weighted_pg_loss(logp, batch.mask, adv, torch.ones_like(logp), 100.0).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        if len(grads) == 1:
            ref = logp.detach()
    assert torch.allclose(logp.detach(), ref, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))


def test_micro_batches_partition_rows_within_the_token_budget(tok):
    context, trained = rows(tok, n=40)
    lengths = [len(c) + len(t) for c, t in zip(context, trained)]
    mbs = micro_batches(context, trained, max_tokens=200)
    assert sorted(i for mb in mbs for i in mb) == list(range(40))
    for mb in mbs:
        assert len(mb) == 1 or len(mb) * max(lengths[i] for i in mb) <= 200
    # bucketing: padded tokens computed are far fewer than one padded batch of everything
    padded = sum(len(mb) * max(lengths[i] for i in mb) for mb in mbs)
    assert padded < 0.8 * len(lengths) * max(lengths)


def test_accumulated_micro_batch_gradient_equals_the_full_batch_gradient(model, tok):
    context, trained = rows(tok, n=12, seed=1)
    adv = torch.linspace(-1, 1, len(context))
    norm = 12 * 20.0

    def loss_of(idx):
        b = make_batch([context[i] for i in idx], [trained[i] for i in idx], tok.pad_token_id)
        logp, _ = token_logprobs(model, b)
        return weighted_pg_loss(logp, b.mask, adv[idx], torch.ones_like(logp), norm)

    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: compare gradients, keep the weights
    full_norm, _ = guarded_update(model, opt, loss_of(list(range(12))), grad_clip=1e9)
    full = [p.grad.clone() for p in model.parameters()]
    mbs = micro_batches(context, trained, max_tokens=120)
    assert len(mbs) > 2
    micro_norm, applied = guarded_update(model, opt, (loss_of(mb) for mb in mbs), grad_clip=1e9)
    assert applied and abs(micro_norm - full_norm) < 1e-4 * full_norm
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(full, model.parameters()))


def test_precision_auto_is_fp32_on_every_cpu_and_bf16_stays_close(model, tok, monkeypatch):
    cpu = torch.device("cpu")
    # the same default on CPUs with and without native bf16: the embedded default trains alike on both
    for native in (True, False):
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda native=native: native)
        assert native_bf16(cpu) is native and resolve("auto", cpu) == "fp32"
    monkeypatch.undo()
    assert resolve("fp32", cpu) == "fp32" and resolve("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="unknown precision"):
        resolve("fp8", cpu)
    batch = make_batch(*rows(tok, n=3), tok.pad_token_id)
    ref, _ = token_logprobs(model, batch)
    with autocast("bf16", cpu)():
        low, _ = token_logprobs(model, batch)
        assert model.model.layers[0].mlp.down_proj(torch.ones(1, 64)).dtype == torch.bfloat16
    assert torch.allclose(low, ref, atol=0.1)  # float32 log-softmax over bf16 matmuls


@pytest.mark.slow
def test_compiled_backbone_gives_the_same_logprobs(model, tok):
    batch = make_batch(*rows(tok, n=4), tok.pad_token_id)
    eager, _ = token_logprobs(model, batch)
    compiled, _ = token_logprobs(model, batch, torch.compile(model.base_model, dynamic=True))
    assert torch.allclose(eager, compiled, atol=1e-5)
