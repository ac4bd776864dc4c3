"""The built-in sampler's KV cache: where a decode step's time goes (docs/performance.md).

Through transformers' forward, one decode step of the embedded model (0.6M parameters) spends most of its
time outside the matmuls: every layer's DynamicCache grows by `torch.cat`, so each step copies the whole
cache; the causal mask and the rotary tables are rebuilt; and some 80 module calls run in Python.
`PreallocatedCache` removes that work for the Llama family (llama, qwen2, and every model whose decoder
layer has their shape, SmolLM2 and Qwen2.5 included):
* a group's prompt is cached once for its n samples, and attention reads it once for all n (the class's
  docstring); each row's completion is cached in a buffer `max_new_tokens` long, written one column per
  step in place. That memory comes from an `Arena` the sampler keeps between calls, because a fresh
  multi-megabyte tensor is fresh pages from the OS, and first-touch faults cost more than the copy
  (measured: 3 ms against 0.1 ms per layer at the demo's batch);
* the q/k/v and gate/up projections are concatenated once per `generate` call, so a layer is two matmuls
  for attention and two for the MLP;
* rotary tables come from the model's own rotary module, so every RoPE variant transformers implements
  (scaling, partial rotary) stays its business.
The prompt's prefill still runs through transformers' forward, once per batch; only the per-token steps
run here, on the model's own weights (no copy is kept: the optimizer's in-place updates are seen by the
next call). Any other model gets `GrowingCache`, transformers' own forward and cache, token for token the
path used before. Both are checked against a full forward in tests/rollout/test_engine.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FAMILIES = ("llama", "qwen2")


def _layer_shape_is_llama(model) -> bool:
    """True when every decoder layer has exactly the modules the fast step computes with."""
    cfg = model.config
    if getattr(cfg, "model_type", None) not in FAMILIES or getattr(cfg, "hidden_act", None) != "silu":
        return False
    if getattr(cfg, "use_sliding_window", False) or getattr(cfg, "mlp_bias", False):
        return False
    if getattr(cfg, "pretraining_tp", 1) != 1:
        return False
    inner = getattr(model, "model", None)
    needs = ("embed_tokens", "layers", "norm", "rotary_emb")
    if inner is None or not all(hasattr(inner, n) for n in needs) or not hasattr(model, "lm_head"):
        return False
    for layer in inner.layers:
        a, m = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        if a is None or m is None or not all(hasattr(a, p) for p in ("q_proj", "k_proj", "v_proj", "o_proj")):
            return False
        if not all(hasattr(m, p) for p in ("gate_proj", "up_proj", "down_proj")):
            return False
        if not (hasattr(layer, "input_layernorm") and hasattr(layer, "post_attention_layernorm")):
            return False
    return True


def _layers_of(cache) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """(keys, values) per layer of a transformers cache after prefill, or None if its layout is unknown."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):  # transformers 4.x
        return list(zip(cache.key_cache, cache.value_cache))
    return None


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Arena:
    """Flat buffers reused across calls; `view` hands out a tensor of any shape from a named buffer,
    growing it only when a call needs more than any before."""

    def __init__(self):
        self.buffers: dict[str, torch.Tensor] = {}

    def view(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        numel = 1
        for d in shape:
            numel *= d
        buf = self.buffers.get(name)
        if buf is None or buf.numel() < numel or buf.dtype != like.dtype or buf.device != like.device:
            buf = self.buffers[name] = like.new_empty(max(numel, 0 if buf is None else buf.numel()))
        return buf[:numel].view(shape)


class PreallocatedCache:
    """A KV cache of fixed length for the Llama family; `step` is one decode step of the whole model.

    A group's n samples share their prompt, so its keys and values are kept once per group, not once per
    row, and attention runs in two parts: each group's n queries against its prompt in one matmul (the
    prompt is read once for n rows), and each row's query against its own completion so far. One softmax
    spans both parts, so this is exact attention, only summed in two pieces (vLLM calls the same idea
    cascade attention). Rows are group-major; `slot` maps each live row to its place in the [groups × n]
    layout, so retirement moves only the completion part.
    """

    def __init__(self, model, prefill_cache, mask: torch.Tensor, repeat: int, max_new: int, arena: Arena):
        """mask: [groups, width] attention mask of the prefill (left-padded); each group has `repeat` rows."""
        self.model, inner = model, model.model
        cfg = model.config
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.groups, self.n = mask.shape[0], repeat
        self.batch, self.done = self.groups * repeat, 0  # live rows; completion columns written
        self.slot = torch.arange(self.batch, device=mask.device)
        self.arena, self.side = arena, 0  # retirement copies completions into the other side's buffers
        self.prompt = _layers_of(prefill_cache)  # [(keys, values)], each [groups, kv_heads, width, head_dim]
        self.own_keys, self.own_values = [], []
        for i, (k, _) in enumerate(self.prompt):
            shape = (self.batch, self.kv_heads, max_new, self.head_dim)
            self.own_keys.append(arena.view(f"k{i}.0", shape, k))
            self.own_values.append(arena.view(f"v{i}.0", shape, k))
        # additive prompt mask per group: 0 where it attends, -inf on left padding
        dtype = self.prompt[0][0].dtype
        self.prompt_mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(mask == 0,
                                                                                               float("-inf"))
        self.layers = [self._fused(layer) for layer in inner.layers]

    @staticmethod
    def supports(model) -> bool:
        return _layer_shape_is_llama(model)

    @staticmethod
    def can_read(prefill_cache) -> bool:
        return _layers_of(prefill_cache) is not None

    @staticmethod
    def _fused(layer):
        """The layer's projections concatenated for this call (weights are read now, so a step between two
        `generate` calls is always seen)."""
        a, m = layer.self_attn, layer.mlp

        def cat(*linears):
            w = torch.cat([lin.weight for lin in linears])
            bs = [lin.bias for lin in linears]
            return w, (torch.cat(bs) if all(b is not None for b in bs) else None)

        return {"qkv": cat(a.q_proj, a.k_proj, a.v_proj), "o": a.o_proj, "gate_up": cat(m.gate_proj, m.up_proj),
                "down": m.down_proj, "act": m.act_fn, "scaling": getattr(a, "scaling", a.head_dim**-0.5),
                "norm1": layer.input_layernorm, "norm2": layer.post_attention_layernorm}

    def select(self, keep: torch.Tensor) -> None:
        """Keep only these batch rows (finished rows retire); their completions move to the other side."""
        self.side = 1 - self.side

        def moved(name: str, t: torch.Tensor) -> torch.Tensor:
            return torch.index_select(t, 0, keep, out=self.arena.view(name, (len(keep), *t.shape[1:]), t))

        self.own_keys = [moved(f"k{i}.{self.side}", k) for i, k in enumerate(self.own_keys)]
        self.own_values = [moved(f"v{i}.{self.side}", v) for i, v in enumerate(self.own_values)]
        self.slot, self.batch = self.slot[keep], len(keep)

    def _to_slots(self, x: torch.Tensor) -> torch.Tensor:
        """[rows, ...] → [groups × n, ...], zeros where a row has retired."""
        if self.batch == self.groups * self.n:
            return x
        full = x.new_zeros((self.groups * self.n, *x.shape[1:]))
        full[self.slot] = x
        return full

    def _from_slots(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.batch == self.groups * self.n else x[self.slot]

    def _attend(self, q: torch.Tensor, layer: dict, prompt: tuple, own_k: torch.Tensor, own_v: torch.Tensor):
        """q [rows, kv_heads, group, head_dim] → attention output [rows, heads × head_dim]."""
        g, n, kvh, grp, hd = self.groups, self.n, self.kv_heads, self.heads // self.kv_heads, self.head_dim
        pk, pv = prompt
        # the prompt part: a group's n rows (and a key head's grp query heads) in one matmul
        qg = self._to_slots(q).view(g, n, kvh, grp, hd).permute(0, 2, 1, 3, 4).reshape(g, kvh, n * grp, hd)
        s_prompt = torch.matmul(qg, pk.transpose(2, 3)) * layer["scaling"] + self.prompt_mask[:, None, None]
        s_prompt = self._from_slots(s_prompt.view(g, kvh, n, grp, -1).permute(0, 2, 1, 3, 4).reshape(g * n, kvh, grp, -1))
        # the completion part: each row against its own tokens so far (all rows have written as many)
        s_own = torch.matmul(q, own_k[:, :, : self.done + 1].transpose(2, 3)) * layer["scaling"]
        width = s_prompt.shape[-1]
        p = torch.softmax(torch.cat([s_prompt, s_own], -1), dim=-1, dtype=torch.float32).to(q.dtype)
        p_prompt = self._to_slots(p[..., :width]).view(g, n, kvh, grp, width).permute(0, 2, 1, 3, 4)
        o = torch.matmul(p_prompt.reshape(g, kvh, n * grp, width), pv)
        o = self._from_slots(o.view(g, kvh, n, grp, hd).permute(0, 2, 1, 3, 4).reshape(g * n, kvh, grp, hd))
        o = o + torch.matmul(p[..., width:], own_v[:, :, : self.done + 1])
        return o.reshape(len(q), 1, self.heads * hd)

    def step(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Append one token per row (ids [B], its position [B]) and return the next-token logits [B, V]."""
        inner, b, hd = self.model.model, self.batch, self.head_dim
        h = inner.embed_tokens(ids[:, None])
        cos, sin = inner.rotary_emb(h, positions[:, None])
        cos, sin = cos[:, None], sin[:, None]  # [B, 1, 1, head_dim], broadcast over heads
        q_size, kv_size = self.heads * hd, self.kv_heads * hd
        for layer, prompt, own_k, own_v in zip(self.layers, self.prompt, self.own_keys, self.own_values):
            qkv = F.linear(layer["norm1"](h), *layer["qkv"])
            q = qkv[..., :q_size].view(b, 1, self.heads, hd).transpose(1, 2)
            k = qkv[..., q_size : q_size + kv_size].view(b, 1, self.kv_heads, hd).transpose(1, 2)
            v = qkv[..., q_size + kv_size :].view(b, 1, self.kv_heads, hd).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            own_k[:, :, self.done] = k[:, :, 0]
            own_v[:, :, self.done] = v[:, :, 0]
            # grouped-query heads attend to their shared key head without copying it
            h = h + layer["o"](self._attend(q.reshape(b, self.kv_heads, -1, hd), layer, prompt, own_k, own_v))
            gate, up = F.linear(layer["norm2"](h), *layer["gate_up"]).chunk(2, dim=-1)
            h = h + layer["down"](layer["act"](gate) * up)
        self.done += 1
        return self.model.lm_head(inner.norm(h))[:, -1]


class GrowingCache:
    """transformers' own forward and cache: every other model (and the reference path in tests)."""

    def __init__(self, model, prefill_cache, mask: torch.Tensor, repeat: int, cache_kw: str):
        self.model, self.cache, self.cache_kw = model, prefill_cache, cache_kw
        if repeat > 1:
            prefill_cache.batch_repeat_interleave(repeat)
        self.mask = mask.repeat_interleave(repeat, dim=0)

    def select(self, keep: torch.Tensor) -> None:
        self.cache.batch_select_indices(keep)
        self.mask = self.mask[keep]

    def step(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        self.mask = torch.cat([self.mask, torch.ones((len(ids), 1), dtype=self.mask.dtype, device=self.mask.device)], 1)
        out = self.model(input_ids=ids[:, None], attention_mask=self.mask, position_ids=positions[:, None],
                         use_cache=True, **{self.cache_kw: self.cache})
        self.cache = getattr(out, self.cache_kw)
        return out.logits[:, -1]
