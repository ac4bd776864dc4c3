"""The one function that decides which tokens are trained.

Every loss in the project (RL, SFT, baselines) consumes this mask and never re-derives it. For PrefixRL
the first trained token is the first token the *current policy* generated: the problem and the
off-policy prefix are context only, so they get exactly zero gradient (paper §3.6).

Layout: a sequence is ``prompt | prefix | completion | padding`` (right-padded). Targets are next-token
predictions, so position t of the mask says whether token t+1 of the sequence is a training target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def trained_mask(lengths: torch.Tensor, train_start: torch.Tensor, width: int) -> torch.Tensor:
    """mask[b, t] = 1 iff token t+1 of row b is in [train_start[b], lengths[b]).

    lengths:     [B] real tokens per row (no padding)
    train_start: [B] index of the first trained token (len(prompt) + len(prefix) for RL)
    returns:     [B, width-1] float mask aligned with logits[:, :-1] / targets ids[:, 1:]
    """
    if bool((train_start < 1).any()):
        raise ValueError("train_start must be >= 1: the first token is never predicted")
    if bool((train_start > lengths).any()):
        raise ValueError("train_start beyond the end of a row")
    token = torch.arange(1, width)[None, :]  # index of the target token
    return ((token >= train_start[:, None]) & (token < lengths[:, None])).float()


@dataclass
class Batch:
    ids: torch.Tensor  # [B, T] right-padded token ids
    mask: torch.Tensor  # [B, T-1] trained-target mask from `trained_mask`
    lengths: torch.Tensor  # [B]


def make_batch(context: list[list[int]], trained: list[list[int]], pad_id: int,
               device: torch.device | str = "cpu") -> Batch:
    """Concatenate each row's context (prompt [+ prefix]) and trained tokens, pad, and mask; the batch
    lives on `device` (the model's: `prefixrl.rollout.device.of`)."""
    seqs = [c + t for c, t in zip(context, trained)]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
    lengths = torch.tensor([len(s) for s in seqs])
    starts = torch.tensor([len(c) for c in context])
    mask = trained_mask(lengths, starts, width)
    return Batch(ids.to(device), mask.to(device), lengths.to(device))


def micro_batches(context: list[list[int]], trained: list[list[int]], max_tokens: int) -> list[list[int]]:
    """Row indices grouped into micro-batches of at most `max_tokens` padded tokens (a longer row gets
    one of its own). Rows are sorted by length first, so each micro-batch pads to nearly its own rows'
    length: with prefixes of every length in one step, padding would otherwise dominate."""
    lengths = [len(c) + len(t) for c, t in zip(context, trained)]
    out: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        if out and (len(out[-1]) + 1) * lengths[i] <= max_tokens:  # sorted: row i is the longest so far
            out[-1].append(i)
        else:
            out.append([i])
    return out
