"""The policy as compute: loading models, the built-in sampler and its KV cache, vLLM, precision and
device, seeds, and the FLOPs ledger."""
