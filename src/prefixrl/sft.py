"""Supervised fine-tuning on off-policy traces: the first half of the SFT→RL baseline (paper §6.3).

The traces become targets: loss = token-mean NLL of trace tokens (and EOS) given the rendered problem,
through the same `trained_mask` as everything else (problem tokens are context, trace tokens are trained).
"""

from __future__ import annotations

import random

import torch

from prefixrl.flops import Ledger, train_flops
from prefixrl.losses import sft_loss, token_logprobs
from prefixrl.mask import Batch, make_batch
from prefixrl.model import param_count
from prefixrl.render import render_prompt
from prefixrl.traces import Trace


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


def sft_on_traces(model, tokenizer, traces: list[Trace], epochs: int, batch_size: int, lr: float, seed: int,
                  ledger: Ledger) -> list[float]:
    """`epochs` passes over the traces in seeded random order; returns the per-step losses."""
    if not traces:
        raise ValueError("SFT needs at least one trace")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    n_params, rng, losses = param_count(model), random.Random(f"sft:{seed}"), []
    model.train()
    for _ in range(epochs):
        order = list(range(len(traces)))
        rng.shuffle(order)
        for i in range(0, len(order), batch_size):
            chunk = [traces[j] for j in order[i : i + batch_size]]
            batch = make_batch([render_prompt(tokenizer, t.question) for t in chunk],
                               [list(t.token_ids) + [tokenizer.eos_token_id] for t in chunk], tokenizer.pad_token_id)
            losses.append(sft_step(model, opt, batch, ledger, "sft/train", n_params))
    return losses
