import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prefixrl.rl.losses import group_advantages, reinforce_loss, sft_loss
from prefixrl.rl.mask import make_batch, trained_mask


def test_mask_layout():
    # row 0: 3 prompt, 2 prefix, 3 completion tokens; row 1: 2 prompt, 0 prefix, 1 completion, padded
    m = trained_mask(torch.tensor([8, 3]), torch.tensor([5, 2]), width=8)
    assert m.tolist() == [[0, 0, 0, 0, 1, 1, 1], [0, 1, 0, 0, 0, 0, 0]]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(0, 5), st.integers(1, 6)), min_size=1, max_size=5))
def test_mask_is_one_exactly_on_completions(rows):
    context = [[7] * p + [8] * f for p, f, _ in rows]  # prompt ids + prefix ids
    completion = [[9] * c for _, _, c in rows]
    b = make_batch(context, completion, pad_id=0)
    for i, (p, f, c) in enumerate(rows):
        targets = b.ids[i, 1:]
        on = b.mask[i].bool()
        assert int(on.sum()) == c
        assert bool((targets[on] == 9).all())  # only completion tokens are trained
        assert not bool(on[: p + f - 1].any())  # no problem or prefix token is a target
        assert not bool(on[p + f - 1 + c :].any())  # no padding is a target


def _logits_grad(model, batch, loss_fn):
    logits = model(input_ids=batch.ids).logits
    logits.retain_grad()
    logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, batch.ids[:, 1:, None]).squeeze(-1)
    loss_fn(logp).backward()
    return logits.grad[:, :-1]  # gradient at the position that predicts each target


def test_prompt_and_prefix_get_exactly_zero_gradient(tiny_model, tok):
    prompt, prefix, completion = [1, 4, 12, 13, 5], [14, 15, 16], [17, 18, 2]
    b = make_batch([prompt + prefix, prompt], [completion, prefix + completion], tok.pad_token_id)
    adv = torch.tensor([1.0, -0.5])
    g = _logits_grad(tiny_model, b, lambda lp: reinforce_loss(lp, b.mask, adv, norm=6.0))
    per_pos = g.abs().sum(-1)  # [B, T-1]
    assert torch.equal(per_pos[b.mask == 0], torch.zeros_like(per_pos[b.mask == 0]))
    assert bool((per_pos[b.mask == 1] > 0).all())
    # Row 1 trains the same tokens as row 0's prefix: masking is by position, not by token value.
    assert int(b.mask[0].sum()) == 3 and int(b.mask[1].sum()) == 6


def test_parameter_gradient_ignores_masked_tokens(tiny_model, tok):
    """Changing prefix *targets*' contribution cannot change the gradient: only completions count."""
    prompt, prefix, completion = [1, 4, 12, 13, 5], [14, 15, 16], [17, 18, 2]
    b = make_batch([prompt + prefix], [completion], tok.pad_token_id)

    def grads(scale_masked):
        tiny_model.zero_grad()
        logits = tiny_model(input_ids=b.ids).logits[:, :-1]
        logp = torch.log_softmax(logits, -1).gather(-1, b.ids[:, 1:, None]).squeeze(-1)
        # add a huge term on the masked positions: if the mask leaked, the gradient would change
        logp = logp + scale_masked * (1 - b.mask) * logp
        reinforce_loss(logp, b.mask, torch.tensor([1.0]), norm=3.0).backward()
        return [p.grad.clone() for p in tiny_model.parameters()]

    for a, c in zip(grads(0.0), grads(1e6)):
        assert torch.equal(a, c)


def test_group_advantages():
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    a = group_advantages(r)
    assert a[0].tolist() == [0.75, -0.25, -0.25, -0.25]
    assert torch.equal(a[1:], torch.zeros(2, 4))  # all-equal groups carry no signal


def test_reinforce_and_sft_losses_by_hand():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, -0.5]])
    mask = torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv = torch.tensor([2.0, -1.0])
    # -(2*(-2-3) + (-1)*(-0.5-0.5)) / 4 = -(-10 + 1) / 4
    assert reinforce_loss(logp, mask, adv, norm=4.0).item() == 9.0 / 4
    assert sft_loss(logp, mask).item() == (2 + 3 + 0.5 + 0.5) / 4
