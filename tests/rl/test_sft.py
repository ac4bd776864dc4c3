"""SFT→RL must be the strong, correct baseline (arXiv 2604.23747): gradient accumulation equals the
full batch, every micro-batch counts, the loss is a token mean over the whole step, and epochs and
learning rate are chosen on held-out traces by one rule."""

import random

import pytest
import torch

from prefixrl.data.prompt import encode_response, render_prompt
from prefixrl.data.tasks.chain import ChainTask
from prefixrl.data.traces import Trace
from prefixrl.embedded.tokenizer import build_tokenizer
from prefixrl.rl.losses import sft_loss, token_logprobs
from prefixrl.rl.mask import make_batch, micro_batches
from prefixrl.rl.sft import Examples, accumulated_step, fit, micro_losses
from prefixrl.rollout.flops import Ledger
from prefixrl.rollout.model import ModelShape, build_model


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def tiny(tok, seed=0):
    return build_model(tok, ModelShape(hidden=32, layers=1, heads=2, ffn=64), seed=seed)


def rows(tok, n=12, seed=0):
    """Chain problems of different lengths, so rows differ in length and micro-batches in size."""
    task, rng = ChainTask(easy_max_steps=10, hard_steps=10), random.Random(seed)
    probs = task.problems("easy", n, seed)
    context = [render_prompt(tok, p.question) for p in probs]
    trained = [encode_response(tok, task.noisy_solution(p, 0.8, rng)) for p in probs]
    return context, trained


def grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_gradient_accumulation_equals_the_full_batch(tok):
    context, trained = rows(tok)
    model = tiny(tok)
    full = make_batch(context, trained, tok.pad_token_id)
    model.zero_grad()
    sft_loss(token_logprobs(model, full)[0], full.mask).backward()
    g_full = grads(model).clone()
    parts = micro_batches(context, trained, max_tokens=80)
    assert len(parts) >= 4  # the split is real
    model.zero_grad()
    losses = list(micro_losses(model, context, trained, tok.pad_token_id, max_tokens=80))
    for loss in losses:
        loss.backward()
    torch.testing.assert_close(grads(model), g_full, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(sum(losses), sft_loss(token_logprobs(model, full)[0], full.mask), rtol=1e-5, atol=1e-6)


def test_every_micro_batch_counts(tok):
    context, trained = rows(tok)
    parts = micro_batches(context, trained, max_tokens=80)
    assert sorted(r for p in parts for r in p) == list(range(len(context)))  # each row exactly once
    model = tiny(tok)
    losses = list(micro_losses(model, context, trained, tok.pad_token_id, max_tokens=80))
    assert len(losses) == len(parts) and all(float(x.detach()) > 0 for x in losses)
    # one optimizer step that accumulates them all moves the weights exactly as the full batch does
    a, b = tiny(tok), tiny(tok)
    opt_a, opt_b = (torch.optim.SGD(m.parameters(), lr=1e-2) for m in (a, b))  # linear in the gradient
    accumulated_step(a, opt_a, context, trained, tok.pad_token_id, 80, Ledger(), "sft/train")
    accumulated_step(b, opt_b, context, trained, tok.pad_token_id, 10**6, Ledger(), "sft/train")
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-6)
    # and dropping the last micro-batch (the bug) would not
    model.zero_grad()
    for loss in losses[:-1]:
        loss.backward()
    dropped = grads(model).clone()
    model.zero_grad()
    for loss in micro_losses(model, context, trained, tok.pad_token_id, max_tokens=80):
        loss.backward()
    assert (grads(model) - dropped).abs().max() > 1e-4


def test_the_loss_weighs_every_token_the_same(tok):
    context, trained = rows(tok, n=6)
    trained[0] = trained[0] * 3  # one long row: a per-sequence mean would down-weight its tokens
    model = tiny(tok)
    per_row = []
    for c, t in zip(context, trained):
        b = make_batch([c], [t], tok.pad_token_id)
        per_row.append(-(token_logprobs(model, b)[0] * b.mask).sum())
    tokens = sum(len(t) for t in trained)
    loss = sum(micro_losses(model, context, trained, tok.pad_token_id, max_tokens=60))
    torch.testing.assert_close(loss, sum(per_row) / tokens, rtol=1e-5, atol=1e-6)  # documented: token mean
    seq_mean = sum(r / len(t) for r, t in zip(per_row, trained)) / len(trained)
    assert abs(loss.item() - seq_mean.item()) > 1e-3  # the test can tell the two weightings apart


def test_fit_chooses_epochs_and_lr_on_held_out_traces(tok):
    context, trained = rows(tok, n=20, seed=3)
    probs = ChainTask(easy_max_steps=10, hard_steps=10).problems("easy", 20, 3)
    traces = [Trace(f"p{i}", p.question, p.answer, "", t, "char", "test", 1.0, 1.0, 1, 0.0)
              for i, (p, t) in enumerate(zip(probs, trained))]
    model, ledger = tiny(tok), Ledger()
    before = [p.detach().clone() for p in model.parameters()]
    choice = fit(model, tok, Examples.of_traces(tok, traces), max_epochs=3, lr=1e-3, seed=0, ledger=ledger)
    assert set(choice.validation_nll) == {"0.0001", "0.0003", "0.001", "0.003", "0.01"}
    assert all(len(c) == 4 for c in choice.validation_nll.values())  # epoch 0 (the base) and 3 epochs
    best = min(v for c in choice.validation_nll.values() for v in c)
    assert choice.validation_nll[f"{choice.lr:.3g}"][choice.epochs] == best  # the least validation NLL wins
    assert "validation" in choice.rule and ledger.total("select/sft-validate") > 0 and ledger.total("select/sft-train") > 0
    assert (ledger.total("sft/train") > 0) == (choice.epochs > 0)  # only the refit is charged to the method
    moved = any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert moved == (choice.epochs > 0)
    assert choice.entropy_before > 0 and choice.entropy_after > 0


def _traces(tok, n=20, seed=3):
    context, trained = rows(tok, n=n, seed=seed)
    probs = ChainTask(easy_max_steps=10, hard_steps=10).problems("easy", n, seed)
    return [Trace(f"p{i}", p.question, p.answer, "", t, "char", "test", 1.0, 1.0, 1, 0.0)
            for i, (p, t) in enumerate(zip(probs, trained))]


def test_early_stop_keeps_the_lr_and_a_fixed_depth_runs_exactly_its_epochs(tok):
    """The depth of SFT is studied at fixed epochs (docs/last_word.md); early-stop tunes epochs only."""
    ex = Examples.of_traces(tok, _traces(tok))
    early = fit(tiny(tok), tok, ex, max_epochs=3, lr=1e-3, seed=0, ledger=Ledger(), rule="early-stop")
    assert early.lr == 1e-3 and list(early.validation_nll) == ["0.001"] and 0 <= early.epochs <= 3
    ledger = Ledger()
    fixed = fit(tiny(tok), tok, ex, max_epochs=2, lr=1e-3, seed=0, ledger=ledger, rule="epochs")
    assert (fixed.lr, fixed.epochs, fixed.rule, fixed.validation_nll) == (1e-3, 2, "configured", {})
    assert ledger.total("select/") == 0  # nothing held out, nothing searched
    one = Ledger()
    fit(tiny(tok), tok, ex, max_epochs=1, lr=1e-3, seed=0, ledger=one, rule="epochs")
    assert ledger.total("sft/train") == pytest.approx(2 * one.total("sft/train"))  # two passes, charged


def test_validation_holds_out_whole_problems(tok):
    """Rows of one problem (ReGFT: several completions of its prefixes) never sit on both sides."""
    traces = _traces(tok)
    ex = Examples.of_traces(tok, traces)
    many = Examples(ex.context * 3, ex.trained * 3, ex.problems * 3)
    val, train = many.split(seed=0)
    assert set(val.problems).isdisjoint(train.problems) and len(set(val.problems)) == 4
    assert len(val) == 12 and len(train) == 48
    once_val, once_train = ex.split(seed=0)  # one row per problem: the same problems held out
    assert set(once_val.problems) == set(val.problems)
