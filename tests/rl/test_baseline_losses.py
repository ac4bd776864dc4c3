"""The baselines' own pieces on tiny hand-made tensors."""

import math

import torch

from prefixrl.rl.losses import group_advantages, sft_loss, token_logprobs, weighted_pg_loss
from prefixrl.rl.mask import make_batch
from prefixrl.rl.offpolicy import _scatter, importance_weights, shaping_weights


def test_importance_weights_by_hand_and_clipping():
    logp = torch.log(torch.tensor([[0.5, 0.2, 0.9]]))
    base = torch.log(torch.tensor([[0.25, 0.4, 0.3]]))
    accept = torch.tensor([math.log(1 / 8)])  # p̂ = 1/8: the trace took 8 samples
    length = torch.tensor([3.0])
    w = importance_weights(logp, base, accept, length, clip=10.0)
    # w_t = π/π₀ · p̂^(1/T) = ratio · 0.5
    assert torch.allclose(w, torch.tensor([[2.0 * 0.5, 0.5 * 0.5, 3.0 * 0.5]]))
    clipped = importance_weights(logp, base, accept, length, clip=1.0)
    assert torch.allclose(clipped, torch.tensor([[1.0, 0.25, 1.0]]))


def test_importance_weights_carry_no_gradient():
    logp = torch.log(torch.tensor([[0.5, 0.2]])).requires_grad_()
    w = importance_weights(logp, torch.zeros(1, 2), torch.zeros(1), torch.tensor([2.0]), clip=5.0)
    assert not w.requires_grad


def test_shaping_is_the_gradient_of_p_over_p_plus_gamma():
    gamma = 0.1
    for p0 in (0.01, 0.3, 0.9):
        x = torch.tensor([[math.log(p0)]], requires_grad=True)  # log π as the leaf
        p = x.exp()
        (p / (p + gamma)).sum().backward()  # LUFFY's objective for one token
        w = shaping_weights(x.detach(), gamma)  # our weight on ∇ log π
        assert torch.allclose(x.grad, w, atol=1e-7)
        assert math.isclose(w.item(), gamma * p0 / (p0 + gamma) ** 2, rel_tol=1e-6)


def test_weighted_loss_matches_hand_value():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -4.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([0.5, -1.0])
    w = torch.tensor([[1.0, 1.0], [0.25, 9.0]])  # row 1 is an off-policy trace; its masked weight is ignored
    # -(0.5*(-1-2) + (-1)*(0.25*-0.5)) / 2
    assert weighted_pg_loss(logp, mask, adv, w, norm=2.0).item() == -(0.5 * -3.0 + 0.125) / 2


def test_mixed_group_advantages():
    # LUFFY-style group: 3 failed on-policy samples + 1 correct off-policy trace
    a = group_advantages(torch.tensor([[0.0, 0.0, 0.0, 1.0]]))[0]
    assert a.tolist() == [-0.25, -0.25, -0.25, 0.75]
    # a group of n-1 = 3 on-policy samples that all failed, without a trace, carries no signal
    assert group_advantages(torch.tensor([[0.0, 0.0, 0.0]])).abs().sum() == 0


def test_sft_trains_exactly_the_trace_tokens(tiny_model, tok):
    prompt, trace = [1, 4, 12, 13, 5], [14, 15, 16, 2]
    b = make_batch([prompt], [trace], tok.pad_token_id)
    assert int(b.mask.sum()) == len(trace)
    logits = tiny_model(input_ids=b.ids).logits
    logits.retain_grad()
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, b.ids[:, 1:, None]).squeeze(-1)
    sft_loss(logp, b.mask).backward()
    per_pos = logits.grad[0, :-1].abs().sum(-1)
    assert torch.equal(per_pos[b.mask[0] == 0], torch.zeros(int((b.mask[0] == 0).sum())))
    assert bool((per_pos[b.mask[0] == 1] > 0).all())
    lp, _ = token_logprobs(tiny_model, b)
    assert torch.allclose(sft_loss(lp, b.mask), -(lp * b.mask).sum() / len(trace))


def test_scatter_places_values_on_trained_positions():
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    out = _scatter([[7.0, 8.0], [5.0, 6.0]], mask)
    assert out.tolist() == [[0.0, 7.0, 8.0, 0.0], [0.0, 0.0, 5.0, 6.0]]
