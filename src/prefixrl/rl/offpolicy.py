"""Off-policy trace tokens in a group (the offpolicy and luffy baselines, paper §6.3): log π₀ of each
trace under the starting policy, the two weights w_t on a trace token's ∇log π (clipped importance
weights, LUFFY's policy shaping), and `token_weights`, which picks the method's weight for each row."""

from __future__ import annotations

import math

import torch

from prefixrl.data.prompt import render_prompt
from prefixrl.data.traces import Trace
from prefixrl.rl.losses import token_logprobs
from prefixrl.rl.mask import make_batch
from prefixrl.rl.methods import Method
from prefixrl.rollout.device import of as device_of
from prefixrl.rollout.flops import Ledger, sample_flops
from prefixrl.rollout.model import param_count


def _scatter(values: list[list[float]], mask: torch.Tensor) -> torch.Tensor:
    """Place each row's per-token values on that row's trained positions (the mask's ones, in order)."""
    out = torch.zeros_like(mask)
    for b, vals in enumerate(values):
        if vals:
            out[b, mask[b].nonzero().squeeze(-1)] = torch.tensor(vals, dtype=out.dtype, device=out.device)
    return out


@torch.no_grad()
def base_logprobs(model, tokenizer, traces: list[Trace], ledger: Ledger) -> dict[str, list[float]]:
    """log π₀ of every trace token (and EOS) under the starting policy: the behaviour side of the
    importance weights. One forward pass per trace, charged to the ledger."""
    out, n_params = {}, param_count(model)
    for t in traces:
        batch = make_batch([render_prompt(tokenizer, t.question)], [list(t.token_ids) + [tokenizer.eos_token_id]],
                           tokenizer.pad_token_id, device_of(model))
        logp, _ = token_logprobs(model, batch)
        out[t.problem_id] = logp[0][batch.mask[0] > 0].tolist()
        ledger.add("offpolicy/base_logprobs", sample_flops(n_params, int(batch.lengths.sum())))
    return out


def importance_weights(logp: torch.Tensor, logp_base: torch.Tensor, log_accept: torch.Tensor, length: torch.Tensor,
                       clip: float) -> torch.Tensor:
    """Token-level, clipped importance weights for a trace from μ = π₀ conditioned on success.

    μ(y) ≈ π₀(y) / p̂ with p̂ the acceptance rate of rejection sampling (the paper's "acceptance-rate
    approximation"), so π(y)/μ(y) = p̂ · Π_t π(y_t)/π₀(y_t). We spread log p̂ evenly over the trace's T
    tokens and clip each token's weight at `clip`: w_t = min(clip, exp(log π − log π₀ + log p̂ / T)).
    Biased (token-level, clipped) by design, as in the paper's baseline.

    logp, logp_base: [B, T-1]; log_accept, length: [B] (log p̂ ≤ 0 and trace length per row).
    """
    log_w = logp.detach() - logp_base + (log_accept / length.clamp(min=1))[:, None]
    return log_w.exp().clamp(max=clip)


def shaping_weights(logp: torch.Tensor, gamma: float) -> torch.Tensor:
    """LUFFY's policy shaping: off-policy tokens are trained on f(π) = π / (π + γ) with the behaviour
    probability taken as 1. ∇f = γπ/(π+γ)² · ∇log π, so as a weight on ∇log π: w = γπ / (π + γ)²."""
    p = logp.detach().exp()
    return gamma * p / (p + gamma) ** 2


def token_weights(method: Method, is_clip: float, shaping_gamma: float, logp: torch.Tensor, mask: torch.Tensor,
                  row_traces: list[Trace | None], logp_base: dict[str, list[float]]) -> torch.Tensor:
    """w_t on ∇log π: 1 on on-policy rows; the method's weight on rows that are an off-policy trace."""
    weights = torch.ones_like(logp)
    off = [b for b, t in enumerate(row_traces) if t is not None]
    if not off:
        return weights
    if method.offpolicy == "shaping":
        weights[off] = shaping_weights(logp[off], shaping_gamma)
    else:
        base = _scatter([logp_base[row_traces[b].problem_id] for b in off], mask[off])
        accept = torch.tensor([-math.log(row_traces[b].samples) for b in off], device=logp.device)  # log p̂ = −log samples
        length = torch.tensor([float(len(row_traces[b].token_ids) + 1) for b in off], device=logp.device)
        weights[off] = importance_weights(logp[off], base, accept, length, is_clip)
    return weights
