"""The `Engine` protocol on vLLM, for collect and eval (`--engine vllm`).

Prompts go to vLLM as token ids (`TokensPrompt`), so a prefix is never re-tokenised; n samples per
prompt are one request with `n`, which shares the prompt's KV cache, and prefix caching is on, so the
many requests of one problem (rejection-sampling rounds, pass@k) reuse their common prompt. The FLOPs
ledger counts what vLLM computes: each distinct prompt is prefilled once per request (not once per
sample, as the built-in sampler does), each generated token is decoded once; 2·N per token either way.

vLLM is heavy and optional: imported only here. Its CPU build needs an environment of its own
(docs/vllm.md); on a GPU, `pip install vllm` next to prefixrl.
"""

from __future__ import annotations

from pathlib import Path

from prefixrl.rollout.engine import Generations, Sample, SamplingParams
from prefixrl.rollout.flops import sample_flops
from prefixrl.rollout.seeds import derive


def count_params(model_dir: str | Path) -> int:
    """N for the FLOPs ledger, from the config alone (the weights are built on the meta device)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    return sum(p.numel() for p in model.parameters())


class VLLMEngine:
    def __init__(self, model_dir: str | Path, seed: int = 0, **llm_kwargs):
        from vllm import LLM

        self.n_params = count_params(model_dir)
        self.llm = LLM(model=str(model_dir), enable_prefix_caching=True, seed=seed, **llm_kwargs)
        self.eos_id = self.llm.get_tokenizer().eos_token_id

    def generate(self, prompts: list[list[int]], n: int, params: SamplingParams, seed: int,
                 seeds: list[int] | None = None) -> Generations:
        from vllm import SamplingParams as VLLMSamplingParams
        from vllm.inputs import TokensPrompt

        requests = [TokensPrompt(prompt_token_ids=list(p)) for p in prompts]
        # one seed per request (derived from the call's seed, or given): reproducible whatever the batch
        seeds = seeds if seeds is not None else [derive(seed, i) for i in range(len(prompts))]
        sampling = [VLLMSamplingParams(n=n, temperature=params.temperature, top_p=params.top_p,
                                       max_tokens=params.max_new_tokens, seed=s, logprobs=0) for s in seeds]
        outputs = self.llm.generate(requests, sampling, use_tqdm=False)
        samples = []
        for out in outputs:
            group = []
            for c in out.outputs:
                ids = list(c.token_ids)
                logps = [lp[t].logprob for t, lp in zip(ids, c.logprobs)] if c.logprobs else [0.0] * len(ids)
                group.append(Sample(ids, logps, truncated=c.finish_reason == "length"))
            samples.append(group)
        prefill = sample_flops(self.n_params, sum(len(p) for p in prompts))
        decode = sample_flops(self.n_params, sum(len(s.tokens) for g in samples for s in g))
        return Generations(samples, prefill, decode)
