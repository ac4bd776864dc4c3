"""Losses as functions of tensors and the trained-token mask (from `prefixrl.mask`).

Shapes: B rows, T-1 target positions. `mask` is the only thing that says which tokens learn.
"""

from __future__ import annotations

import torch

from prefixrl.mask import Batch


def token_logprobs(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of each next token and the policy's entropy at that position, both [B, T-1].

    Right padding only follows real tokens, so the causal model needs no attention mask.
    """
    logits = model(input_ids=batch.ids).logits[:, :-1].float()
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, batch.ids[:, 1:, None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def sft_loss(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Token-mean negative log-likelihood over trained tokens."""
    return -(logp * mask).sum() / mask.sum().clamp(min=1)


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """A_i = r_i − mean_j r_j within each group (paper §3.6: REINFORCE, group-mean baseline, no std).

    rewards: [G, n] → advantages [G, n]. A group whose rewards are all equal gets exactly zero.
    """
    return rewards - rewards.mean(dim=1, keepdim=True)


def reinforce_loss(logp: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor, norm: float) -> torch.Tensor:
    """−Σ_i A_i Σ_t mask·log π(y_t) / norm.

    `norm` is a constant (rows × max new tokens), not the number of trained tokens, so every sampled
    token has the same weight whatever its sequence's length: the gradient stays the plain REINFORCE
    gradient (Dr. GRPO's argument), and short completions after long prefixes are not up-weighted.
    advantages: [B] one per row.
    """
    return -(advantages[:, None] * logp * mask).sum() / norm
