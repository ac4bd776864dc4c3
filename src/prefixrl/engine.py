"""Generation engines. The pipeline talks to `Engine`; `Sampler` is the built-in one (a vLLM engine
plugs in behind the same protocol).

Prompts are token ids (rendered problem, optionally followed by prefix ids): the engine never sees
text, so a prefix cut is never re-tokenised.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Protocol

import torch

from prefixrl.flops import sample_flops
from prefixrl.model import param_count


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0 (use a small value for near-greedy decoding)")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")


@dataclass
class Sample:
    tokens: list[int]  # generated ids, EOS included when the model stopped
    logprobs: list[float]  # log-prob of each generated id under the sampling distribution
    truncated: bool  # hit max_new_tokens without EOS


@dataclass
class Generations:
    samples: list[list[Sample]]  # [prompt][sample]
    prefill_flops: float
    decode_flops: float

    @property
    def flops(self) -> float:
        return self.prefill_flops + self.decode_flops


class Engine(Protocol):
    def generate(self, prompts: list[list[int]], n: int, params: SamplingParams, seed: int) -> Generations:
        """`n` samples for each prompt, reproducible for a given `seed`."""
        ...


def _pick(logits: torch.Tensor, params: SamplingParams, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row; return (ids, log-probs under the tempered distribution)."""
    logp = torch.log_softmax(logits.float() / params.temperature, dim=-1)
    probs = logp.exp()
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > params.top_p  # keep the smallest set reaching top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    ids = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
    return ids, logp.gather(-1, ids[:, None]).squeeze(-1)


class Sampler:
    """Batched sampling with a KV cache on any HF causal LM, on CPU or GPU."""

    def __init__(self, model, eos_id: int, pad_id: int, max_batch: int = 512):
        self.model, self.eos_id, self.pad_id, self.max_batch = model, eos_id, pad_id, max_batch
        # transformers renamed `past_key_values` to `cache` in 5.2x; accept either.
        forward = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in forward else "past_key_values"
        self._keep = {"logits_to_keep": 1} if "logits_to_keep" in forward else {}

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], n: int, params: SamplingParams, seed: int) -> Generations:
        rows = [p for p in prompts for _ in range(n)]  # group-major: prompt i owns rows i*n .. i*n+n-1
        gen = torch.Generator().manual_seed(seed)
        flat: list[Sample] = []
        for i in range(0, len(rows), self.max_batch):
            flat.extend(self._generate_rows(rows[i : i + self.max_batch], params, gen))
        n_params = param_count(self.model)
        prefill = sample_flops(n_params, sum(len(r) for r in rows))
        decode = sample_flops(n_params, sum(len(s.tokens) for s in flat))
        return Generations([flat[i * n : (i + 1) * n] for i in range(len(prompts))], prefill, decode)

    def _generate_rows(self, rows: list[list[int]], params: SamplingParams, gen: torch.Generator) -> list[Sample]:
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):  # left padding keeps every row's last prompt token aligned
            ids[i, width - len(r) :] = torch.tensor(r)
            mask[i, width - len(r) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **self._keep)
        cache, logits, last_pos = getattr(out, self._cache_kw), out.logits[:, -1], pos[:, -1]
        tokens = torch.empty((len(rows), 0), dtype=torch.long)
        logps = torch.empty((len(rows), 0))
        done = torch.zeros(len(rows), dtype=torch.bool)
        for _ in range(params.max_new_tokens):
            nxt, lp = _pick(logits, params, gen)
            nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt.cpu())
            tokens, logps = torch.cat([tokens, nxt[:, None]], 1), torch.cat([logps, lp.cpu()[:, None]], 1)
            done |= nxt == self.eos_id
            if done.all():
                break
            mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=torch.long, device=device)], 1)
            last_pos = last_pos + 1
            out = self.model(
                input_ids=nxt[:, None].to(device), attention_mask=mask, position_ids=last_pos[:, None],
                use_cache=True, **{self._cache_kw: cache},
            )
            cache, logits = getattr(out, self._cache_kw), out.logits[:, -1]
        self.model.train(was_training)
        samples = []
        for row_tokens, row_logps in zip(tokens.tolist(), logps.tolist()):
            n_real = row_tokens.index(self.eos_id) + 1 if self.eos_id in row_tokens else len(row_tokens)
            samples.append(Sample(row_tokens[:n_real], row_logps[:n_real], self.eos_id not in row_tokens))
        return samples
