"""The ranges a stage's numbers must lie in, set by what sampling, the RNG and memory can take, not only
by their sign. One rule per kind of number, shared by every stage: `prefixrl.cli.options.check_numbers`
applies them to every config by field name, `RLSettings.check` and `SamplingParams` to the library's.

- Temperature >= 1e-4. Sampling divides float32 logits by it: 1e-50 is 0 in float32, the division gives
  inf and the softmax NaN (every token then became the last id). At 1e-4 a logit would have to exceed
  3e34 to overflow, and vLLM already samples greedily below 1e-5, so the two engines agree on the range.
- top-p in (0, 1]: the nucleus always keeps the most likely token, so any positive value samples.
- Seeds in [0, 2^63): a stream's seed is derived from a run's seed and an index (`seeds.derive`) and
  must fit the signed 64 bits torch and vLLM take; every other integer must fit them too (Parquet, torch).
- Samples drawn per problem (a collection's cap and round, a selection's budget, eval's n, a group) at
  most 2^20, 400 times the paper's cap of 2,500; and one call's samples of one problem at most 2^24 tokens
  (n x max-new-tokens): an engine call holds its samples' tokens in memory at once.
- A text read from a dataset or an imported trace at most 2^20 characters (1 MiB of ASCII), checked before
  it is tokenized: past any prompt a model's positions hold (128k tokens are about 512k characters), and
  well below what a tokenizer can take (a 50 MB question aborted inside one at 7 GB).
"""

from __future__ import annotations

import math

from prefixrl.io.errors import BadInput

MIN_TEMPERATURE = 1e-4
MAX_INT = 2**63 - 1
MAX_SAMPLES = 2**20
MAX_CALL_TOKENS = 2**24
MAX_TEXT = 2**20

SEEDS = ("seed", "data_seed")
# counts of samples of one problem: collect's cap and per_round, select's budget, eval's samples, a group
SAMPLE_COUNTS = ("cap", "per_round", "budget", "samples", "samples_per_prompt", "eval_samples", "recollect_cap",
                 "collect_cap", "collect_per_round")


def check_temperature(value: float, name: str = "temperature") -> None:
    if not (math.isfinite(value) and value >= MIN_TEMPERATURE):
        raise BadInput(f"{name} must be finite and >= {MIN_TEMPERATURE:g} (below it float32 sampling turns to "
                       f"NaN; use {MIN_TEMPERATURE:g} for near-greedy decoding), got {value}")


def check_top_p(value: float, name: str = "top_p") -> None:
    if not (math.isfinite(value) and 0 < value <= 1):
        raise BadInput(f"{name} must be in (0, 1], got {value}")


def check_int(value: int, name: str) -> None:
    if not -MAX_INT - 1 <= value <= MAX_INT:
        raise BadInput(f"{name} must fit 64 bits (|{name}| < 2^63), got {value}")


def check_seed(value: int, name: str = "seed") -> None:
    if not 0 <= value <= MAX_INT:
        raise BadInput(f"{name} must be in [0, 2^63), got {value}")


def check_samples(value: int, name: str) -> None:
    if not 1 <= value <= MAX_SAMPLES:
        raise BadInput(f"{name} must be in [1, 2^20 = {MAX_SAMPLES}] (samples of one problem), got {value}")


def check_call(n: int, max_new_tokens: int, name: str) -> None:
    """`n` samples of one problem in one engine call, each up to `max_new_tokens` tokens, held at once."""
    if n * max_new_tokens > MAX_CALL_TOKENS:
        raise BadInput(f"{name} ({n}) x max_new_tokens ({max_new_tokens}) is {n * max_new_tokens} tokens of one "
                       f"problem in one call; at most 2^24 = {MAX_CALL_TOKENS} are held at once: lower {name}")


def check_text(text: str, where: str) -> None:
    if len(text) > MAX_TEXT:
        raise BadInput(f"{where}: {len(text)} characters, over the limit of 2^20 = {MAX_TEXT} for one text "
                       "(checked before tokenizing; no prompt a model holds is that long)")
