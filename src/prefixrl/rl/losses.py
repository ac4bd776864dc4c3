"""Losses as functions of tensors and the trained-token mask (from `prefixrl.rl.mask`).

Shapes: B rows, T-1 target positions. `mask` is the only thing that says which tokens learn.
"""

from __future__ import annotations

import torch

from prefixrl.rl.mask import Batch


def token_logprobs(model, batch: Batch, backbone=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of each trained next token and the policy's entropy there, both [B, T-1], zero where
    `batch.mask` is 0.

    Only trained positions reach the vocabulary projection: prompt and prefix positions are context
    (paper §3.6), so computing their logits would be wasted work, and with long prefixes and a large
    vocabulary it is most of the work. `backbone` is the model without its LM head (default
    `model.base_model`; a torch.compile'd one works too). Models that post-process their logits
    (soft-capping, logit scales) take the full forward instead. Right padding only follows real
    tokens, so the causal model needs no attention mask.
    """
    sel = batch.mask.bool()
    target = batch.ids[:, 1:][sel]
    if _plain_head(model):
        hidden = (model.base_model if backbone is None else backbone)(input_ids=batch.ids).last_hidden_state[:, :-1][sel]
        logits = model.get_output_embeddings()(hidden).float()  # [N, V], N = trained tokens
    else:
        logits = model(input_ids=batch.ids).logits[:, :-1][sel].float()
    logp_all = torch.log_softmax(logits, dim=-1)
    logp, entropy = logp_all.new_zeros(batch.mask.shape), logp_all.new_zeros(batch.mask.shape)
    logp[sel] = logp_all.gather(-1, target[:, None]).squeeze(-1)
    entropy[sel] = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def _plain_head(model) -> bool:
    """True when logits = lm_head(last hidden state), nothing more."""
    cfg = model.config
    return not any(getattr(cfg, k, None) for k in ("final_logit_softcapping", "logit_scale", "logits_scaling"))


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
    return weighted_pg_loss(logp, mask, advantages, torch.ones_like(logp), norm)


def weighted_pg_loss(logp: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor, weights: torch.Tensor,
                     norm: float) -> torch.Tensor:
    """−Σ_i A_i Σ_t mask·stopgrad(w)·log π / norm; weights [B, T-1]. Every policy-gradient loss in the project
    has this form, the weights held constant: on-policy tokens have w = 1 (`reinforce_loss`), off-policy trace
    tokens the method's weight (`prefixrl.rl.offpolicy`, paper §6.3); the mask still decides what trains."""
    return -(advantages[:, None] * weights.detach() * logp * mask).sum() / norm
