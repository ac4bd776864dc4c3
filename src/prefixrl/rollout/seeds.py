"""One rule for deriving a stream's seed from a run's seed and an index (a step, a round, a row).

Every random draw in a run is a function of (seed, index), so a resumed run needs no sampler state and
a row's sample does not depend on its batch mates. The multiplier is a prime larger than any index a
run reaches, so distinct (seed, index) pairs of one run never share a stream. Derived seeds are taken
modulo 2^63, so any seed a stage accepts (`prefixrl.rollout.limits`), derived twice (a round, then a row),
fits the signed 64 bits torch's and vLLM's generators take; below that, the value is unchanged.
"""

from __future__ import annotations

import hashlib

PRIME = 1_000_003


def derive(seed: int, index: int) -> int:
    return (seed * PRIME + index) % 2**63


def problem_seed(seed: int, problem_id: str, attempt: int) -> int:
    """The stream of one problem's request in a collection: a function of (seed, problem id, samples drawn
    before it) alone, so a problem's draws are the same whichever shard, chunk or resumed process sends it.
    The id enters through SHA-256, not Python's per-process string hash."""
    key = int.from_bytes(hashlib.sha256(problem_id.encode()).digest()[:8], "big")
    return derive(derive(seed, key), attempt)
