"""Generation engines. The pipeline talks to `Engine`; `Sampler` is the built-in one (a vLLM engine
plugs in behind the same protocol).

Prompts are token ids (rendered problem, optionally followed by prefix ids): the engine never sees
text, so a prefix cut is never re-tokenised.

The built-in sampler is shaped by what PrefixRL asks of it (docs/performance.md): every prompt is sampled
n times, and prefixed prompts are long. So a group's prompt is prefilled once and its KV cache repeated
for the n samples (the FLOPs ledger charges that prefill once, as vLLM's prefix cache does); prompts are
bucketed by length so that little padding is computed; and finished rows leave the batch at once.
None of this changes what is sampled: each row draws its tokens from uniforms seeded by (seed, row), so
its sample does not depend on which rows share its batch.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import Protocol

import torch

from prefixrl.rollout.flops import sample_flops
from prefixrl.rollout.kv_cache import Arena, GrowingCache, PreallocatedCache
from prefixrl.rollout.limits import MIN_TEMPERATURE
from prefixrl.rollout.model import param_count
from prefixrl.rollout.seeds import derive


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128

    def __post_init__(self) -> None:
        if not self.temperature >= MIN_TEMPERATURE:  # below it float32 sampling gives NaN (`limits`)
            raise ValueError(f"temperature must be >= {MIN_TEMPERATURE:g} (use it for near-greedy decoding)")
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
    def generate(self, prompts: list[list[int]], n: int, params: SamplingParams, seed: int,
                 seeds: list[int] | None = None) -> Generations:
        """`n` samples for each prompt, reproducible for a given `seed` (prompt i draws from the stream
        (seed, i)); with `seeds`, prompt i draws from seeds[i] instead, whatever its position."""
        ...


def _pick(logits: torch.Tensor, params: SamplingParams, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row by inverse-CDF sampling with the row's own uniform `u` [B]; return (ids,
    log-probs under the tempered distribution). Same law as torch.multinomial, but each row's draw depends
    only on its logits and its `u`, not on the other rows in the batch."""
    logp = torch.log_softmax(logits.float() / params.temperature, dim=-1)
    probs = logp.exp()
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > params.top_p  # keep the smallest set reaching top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    cdf = probs.cumsum(-1)
    ids = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1)).squeeze(-1).clamp(max=probs.shape[-1] - 1)
    return ids, logp.gather(-1, ids[:, None]).squeeze(-1)


def row_uniforms(seed: int, rows: range, steps: int) -> torch.Tensor:
    """[len(rows), steps] uniforms; row r's depend only on (seed, r)."""
    return torch.stack([torch.rand(steps, generator=torch.Generator().manual_seed(derive(seed, r))) for r in rows])


class Sampler:
    """Batched sampling with a KV cache on any HF causal LM, on CPU or GPU.

    share_prefix: prefill each distinct prompt once and repeat its KV cache for its n samples (False:
    every sample prefills its own copy; kept for tests and the bench). bucket: sort prompts by length
    before batching. autocast: a context manager for the forward passes (see `prefixrl.rollout.precision`).
    """

    def __init__(self, model, eos_id: int, pad_id: int, max_batch: int = 512, share_prefix: bool = True,
                 bucket: bool = True, autocast=contextlib.nullcontext, static_cache: bool = True):
        self.model, self.eos_id, self.pad_id, self.max_batch = model, eos_id, pad_id, max_batch
        # The preallocated cache and fused decode step (prefixrl.rollout.kv_cache) wherever the model is Llama-shaped
        self.static_cache = static_cache and PreallocatedCache.supports(model)
        self.arena = Arena()
        self.share_prefix, self.bucket, self.autocast = share_prefix, bucket, autocast
        # transformers renamed `past_key_values` to `cache` in 5.2x; accept either.
        forward = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in forward else "past_key_values"
        self._keep = {"logits_to_keep": 1} if "logits_to_keep" in forward else {}

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], n: int, params: SamplingParams, seed: int,
                 seeds: list[int] | None = None) -> Generations:
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i])) if self.bucket else list(range(len(prompts)))
        per_chunk = max(1, self.max_batch // n)  # whole groups per forward batch
        by_prompt: dict[int, list[Sample]] = {}
        for c in range(0, len(order), per_chunk):
            chunk = order[c : c + per_chunk]
            u = torch.cat([row_uniforms(seed, range(i * n, (i + 1) * n), params.max_new_tokens) if seeds is None
                           else row_uniforms(seeds[i], range(n), params.max_new_tokens) for i in chunk])
            samples = self._generate_groups([prompts[i] for i in chunk], n, params, u)
            for k, i in enumerate(chunk):
                by_prompt[i] = samples[k * n : (k + 1) * n]
        samples = [by_prompt[i] for i in range(len(prompts))]
        n_params = param_count(self.model)
        prefilled = sum(len(p) for p in prompts) * (1 if self.share_prefix else n)
        prefill = sample_flops(n_params, prefilled)
        decode = sample_flops(n_params, sum(len(s.tokens) for grp in samples for s in grp))
        return Generations(samples, prefill, decode)

    def _generate_groups(self, prompts: list[list[int]], n: int, params: SamplingParams, u: torch.Tensor) -> list[Sample]:
        """n samples of each prompt, group-major: rows k*n .. k*n+n-1 belong to prompts[k]."""
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        rows = prompts if self.share_prefix else [p for p in prompts for _ in range(n)]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):  # left padding keeps every row's last prompt token aligned
            ids[i, width - len(r) :] = torch.tensor(r)
            mask[i, width - len(r) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with self.autocast():
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **self._keep)
        repeat = n if self.share_prefix else 1  # one prefill per group, shared by its n samples
        logits, last_pos = out.logits[:, -1].repeat_interleave(repeat, 0), pos[:, -1].repeat_interleave(repeat, 0)
        prefill = getattr(out, self._cache_kw)
        if self.static_cache and PreallocatedCache.can_read(prefill):
            cache = PreallocatedCache(self.model, prefill, mask, repeat, params.max_new_tokens, self.arena)
        else:
            cache = GrowingCache(self.model, prefill, mask, repeat, self._cache_kw)
        total = len(prompts) * n
        tokens = torch.full((total, params.max_new_tokens), self.pad_id, dtype=torch.long)
        logps = torch.zeros((total, params.max_new_tokens))
        length = torch.full((total,), params.max_new_tokens, dtype=torch.long)
        live = torch.arange(total)  # the batch's rows (global row ids), in batch order
        running = torch.ones(total, dtype=torch.bool)  # batch rows that have not produced EOS
        for t in range(params.max_new_tokens):
            nxt, lp = _pick(logits, params, u[live, t].to(logits.device))
            nxt, lp = nxt.cpu(), lp.cpu()
            tokens[live[running], t], logps[live[running], t] = nxt[running], lp[running]
            finished = running & (nxt == self.eos_id)
            length[live[finished]] = t + 1
            running &= ~finished
            if not running.any() or t + 1 == params.max_new_tokens:
                break
            if running.sum() <= 0.75 * len(live):
                # Retire finished rows in bulk: each retirement copies the rows' cache, so doing it per
                # finished row would cost more than the rows it saves. Until then they ride along.
                keep = running.nonzero().squeeze(-1)
                cache.select(keep.to(device))
                live, nxt, running, last_pos = live[keep], nxt[keep], running[keep], last_pos[keep.to(device)]
            last_pos = last_pos + 1
            with self.autocast():
                logits = cache.step(nxt.to(device), last_pos)
        self.model.train(was_training)
        return [Sample(tokens[r, : length[r]].tolist(), logps[r, : length[r]].tolist(),
                       tokens[r, length[r] - 1].item() != self.eos_id) for r in range(total)]
