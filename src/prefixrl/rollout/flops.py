"""The FLOPs ledger: every stage adds what it spent, by category (paper App. F.2).

Sampling costs 2·N FLOPs per token processed (prefill of problem + prefix, and each decoded token);
a training update costs 6·N per token in the sequence, prefix tokens included even though they carry
no loss, because they are still in the forward and backward pass. N counts parameters; attention's
context-length term is ignored (it is small at these lengths and the paper's rule ignores it too).
Only real tokens are counted, not padding: the ledger measures the method, not our batching.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


def sample_flops(n_params: int, tokens: int) -> float:
    return 2.0 * n_params * tokens


def train_flops(n_params: int, tokens: int) -> float:
    return 6.0 * n_params * tokens


@dataclass
class Ledger:
    """Cumulative FLOPs by category, e.g. "collect/decode", "rl/train". Plain data: JSON round-trips."""

    spent: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, category: str, flops: float) -> None:
        if flops < 0:
            raise ValueError(f"negative FLOPs for {category}")
        self.spent[category] += flops

    def total(self, prefix: str = "") -> float:
        return sum(v for k, v in self.spent.items() if k.startswith(prefix))

    def to_dict(self) -> dict[str, float]:
        return dict(sorted(self.spent.items()))

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> Ledger:
        led = cls()
        for k, v in d.items():
            led.add(k, float(v))
        return led
