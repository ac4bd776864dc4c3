"""Off-policy trace tokens in a group (the offpolicy and luffy baselines, paper §6.3): log π₀ of each
trace under the starting policy, and the method's weight w_t on each token's ∇log π."""

from __future__ import annotations

import math

import torch

from prefixrl.data.prompt import render_prompt
from prefixrl.data.traces import Trace
from prefixrl.rl.losses import importance_weights, shaping_weights, token_logprobs
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
