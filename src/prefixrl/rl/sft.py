"""Supervised fine-tuning on off-policy traces: the first half of the SFT→RL baseline (paper §6.3).

The traces become targets: loss = token-mean NLL of trace tokens (and EOS) given the rendered problem,
through the same `trained_mask` as everything else (problem tokens are context, trace tokens are trained).

SFT→RL is the paper's strongest baseline, so it must be the correct one. arXiv 2604.23747 found that
many mixed-policy papers compared against an SFT→RL that dropped micro-batches under gradient
accumulation or weighted its loss per micro-batch instead of per token; fixed, it beat them all. Here:

* the normaliser of a step is the number of trained tokens in the *whole* step, so each micro-batch's
  loss is its summed NLL over that one count and the micro-batch losses sum to the full batch's
  token-mean NLL (every token weighs the same, whichever micro-batch and sequence it is in);
* every row of the step lands in exactly one micro-batch (`mask.micro_batches`), and each one's
  gradient is accumulated before the single optimizer step;
* epochs and learning rate are not hand-set: `fit` chooses them by one rule, the least NLL on a
  validation split of the traces, the same rule for any method with a before-RL phase.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from prefixrl.data.prompt import render_prompt
from prefixrl.data.traces import Trace
from prefixrl.rl.losses import sft_loss, token_logprobs
from prefixrl.rl.mask import Batch, make_batch, micro_batches
from prefixrl.rollout.device import of as device_of
from prefixrl.rollout.flops import Ledger, sample_flops, train_flops
from prefixrl.rollout.model import param_count

LR_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0)  # the learning rates tried, around the configured one
VALIDATION_SHARE = 0.2  # traces held out to choose epochs and learning rate
MIN_VALIDATION = 2  # fewer held-out traces than this: no choice is made, the configured values are used
BATCH_ROWS = 16  # traces per optimizer step


def sft_step(model, opt, batch: Batch, ledger: Ledger, category: str, n_params: int) -> float:
    """One supervised step on the batch's trained tokens (token-mean NLL), clipped at norm 1; charged 6ND."""
    logp, _ = token_logprobs(model, batch)
    loss = sft_loss(logp, batch.mask)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    ledger.add(category, train_flops(n_params, int(batch.lengths.sum())))
    return loss.item()


def micro_losses(model, context: list[list[int]], trained: list[list[int]], pad_id: int,
                 max_tokens: int) -> Iterator[torch.Tensor]:
    """Per micro-batch: its summed NLL over the trained-token count of the whole step. They sum to the
    step's token-mean NLL, whatever the split (the micro-batch-mean bug averages means instead)."""
    total = sum(len(t) for t in trained)
    for rows in micro_batches(context, trained, max_tokens):
        batch = make_batch([context[r] for r in rows], [trained[r] for r in rows], pad_id, device_of(model))
        logp, _ = token_logprobs(model, batch)
        yield -(logp * batch.mask).sum() / total


def accumulated_step(model, opt, context: list[list[int]], trained: list[list[int]], pad_id: int, max_tokens: int,
                     ledger: Ledger, category: str) -> float:
    """One optimizer step over every micro-batch of the step (gradients accumulated), clipped at norm 1."""
    opt.zero_grad(set_to_none=True)
    loss = 0.0
    for part in micro_losses(model, context, trained, pad_id, max_tokens):
        part.backward()
        loss += float(part.detach())
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    ledger.add(category, train_flops(param_count(model), sum(len(c) + len(t) for c, t in zip(context, trained))))
    return loss


def _rows(tokenizer, traces: list[Trace]) -> tuple[list[list[int]], list[list[int]]]:
    return ([render_prompt(tokenizer, t.question) for t in traces],
            [list(t.token_ids) + [tokenizer.eos_token_id] for t in traces])


def sft_on_traces(model, tokenizer, traces: list[Trace], epochs: int, batch_size: int, lr: float, seed: int,
                  ledger: Ledger, max_tokens: int = 8192, after_epoch=None, category: str = "sft/train") -> list[float]:
    """`epochs` passes over the traces in seeded random order; returns the per-step losses.
    `after_epoch(epoch)` is called after each pass (validation, in `fit`)."""
    if not traces:
        raise ValueError("SFT needs at least one trace")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    rng, losses = random.Random(f"sft:{seed}"), []
    context, trained = _rows(tokenizer, traces)
    model.train()
    for epoch in range(1, epochs + 1):
        order = list(range(len(traces)))
        rng.shuffle(order)
        for i in range(0, len(order), batch_size):
            rows = order[i : i + batch_size]
            losses.append(accumulated_step(model, opt, [context[r] for r in rows], [trained[r] for r in rows],
                                           tokenizer.pad_token_id, max_tokens, ledger, category))
        if after_epoch is not None:
            after_epoch(epoch)
    return losses


@torch.no_grad()
def nll_and_entropy(model, tokenizer, traces: list[Trace], ledger: Ledger, category: str) -> tuple[float, float]:
    """Token-mean NLL of the traces under `model`, and its mean entropy at those positions (2ND, to `category`)."""
    context, trained = _rows(tokenizer, traces)
    batch = make_batch(context, trained, tokenizer.pad_token_id, device_of(model))
    logp, entropy = token_logprobs(model, batch)
    ledger.add(category, sample_flops(param_count(model), int(batch.lengths.sum())))
    n = batch.mask.sum()
    return float(-(logp * batch.mask).sum() / n), float((entropy * batch.mask).sum() / n)


@dataclass(frozen=True)
class SFTChoice:
    """What `fit` chose and measured; written into the run's result."""

    lr: float
    epochs: int
    rule: str
    validation_nll: dict  # "lr" -> NLL after each epoch (epoch 0 = the base)
    entropy_before: float  # mean token entropy on the traces, base model
    entropy_after: float  # the same after SFT


def fit(model, tokenizer, traces: list[Trace], max_epochs: int, lr: float, seed: int, ledger: Ledger,
        max_tokens: int = 8192) -> SFTChoice:
    """SFT with epochs and learning rate chosen by one rule: hold out VALIDATION_SHARE of the traces
    (seeded), train on the rest at each lr in lr × LR_FACTORS for up to `max_epochs`, keep the (lr,
    epochs) with the least validation NLL (0 epochs, no SFT, is a candidate), then refit from the base on
    all traces with it. With too few traces to hold out any, the configured (lr, max_epochs) is used. The
    grid spans two decades, so that the choice lands inside it.

    The refit is charged to the method ("sft/train"). The search is hyperparameter selection, which no
    method is charged for (the paper does not count tuning either, and PrefixRL's and RL's own learning
    rate is chosen outside the run): it goes to "select/", recorded in the ledger but outside the budget.
    """
    _, entropy_before = nll_and_entropy(model, tokenizer, traces, ledger, "eval/sft-entropy")
    order = list(range(len(traces)))
    random.Random(f"sft-split:{seed}").shuffle(order)
    n_val = int(len(traces) * VALIDATION_SHARE)
    if n_val < MIN_VALIDATION or len(traces) - n_val < 1:
        sft_on_traces(model, tokenizer, traces, max_epochs, BATCH_ROWS, lr, seed, ledger, max_tokens)
        return SFTChoice(lr, max_epochs, "configured (too few traces to validate)", {},
                         entropy_before, nll_and_entropy(model, tokenizer, traces, ledger, "eval/sft-entropy")[1])
    val, train = [traces[i] for i in order[:n_val]], [traces[i] for i in order[n_val:]]
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    base_nll = nll_and_entropy(model, tokenizer, val, ledger, "select/sft-validate")[0]
    table, best = {}, (base_nll, lr, 0)
    for factor in LR_FACTORS:
        model.load_state_dict(base)
        curve = [base_nll]

        def validate(epoch: int, curve=curve) -> None:
            curve.append(nll_and_entropy(model, tokenizer, val, ledger, "select/sft-validate")[0])

        sft_on_traces(model, tokenizer, train, max_epochs, BATCH_ROWS, lr * factor, seed, ledger, max_tokens, validate,
                      category="select/sft-train")
        table[f"{lr * factor:.3g}"] = curve
        epoch = min(range(len(curve)), key=curve.__getitem__)
        if curve[epoch] < best[0]:
            best = (curve[epoch], lr * factor, epoch)
    model.load_state_dict(base)
    _, chosen_lr, chosen_epochs = best
    if chosen_epochs:
        sft_on_traces(model, tokenizer, traces, chosen_epochs, BATCH_ROWS, chosen_lr, seed, ledger, max_tokens)
    return SFTChoice(chosen_lr, chosen_epochs, f"least validation NLL ({n_val} of {len(traces)} traces held out)",
                     table, entropy_before, nll_and_entropy(model, tokenizer, traces, ledger, "eval/sft-entropy")[1])
