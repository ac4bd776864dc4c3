"""The methods: what differs between PrefixRL and each of the paper's baselines (§6.3), and nothing else.

Task, sampler, optimizer, loss form and FLOPs ledger are shared (`prefixrl.rl.train`). A method says what
share of each batch is prefixed, whether an off-policy trace joins its problem's group, and whether SFT
on the traces, or on the policy's own verified completions of the prefixed problems, comes first. Off-policy trace tokens get the method's weight on ∇log π (`prefixrl.rl.offpolicy`).
This module is the table alone, with no torch, so that `prefixrl train --help` answers at once.

| method        | prefixed share | group                        | off-policy tokens          | before RL   |
|---------------|----------------|------------------------------|----------------------------|-------------|
| prefixrl      | mix (0.75)     | n on-policy                  | —                          | —           |
| prefixrl-only | 1              | n on-policy                  | —                          | —           |
| rl            | 0              | n on-policy                  | —                          | —           |
| sft-rl        | 0              | n on-policy                  | —                          | SFT, traces |
| offpolicy     | 0              | n−1 on-policy + 1 trace      | clipped importance weights | —           |
| luffy         | 0              | n−1 on-policy + 1 trace      | policy shaping p/(p+γ)     | —           |
| regft-rl      | 0              | n on-policy                  | —                          | SFT, own completions after the prefixes |

regft-rl is beyond the paper's baselines (ReGFT, arXiv 2603.01223, in spirit; `prefixrl.rl.regft`): it
trains on the same on-policy tokens after a prefix that PrefixRL's update sees, by SFT instead of RL, which
separates "on-policy tokens" from "RL on them".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    mix: float | None  # share of prefixed prompts; None = the configured mix
    offpolicy: str | None = None  # "importance" | "shaping": one trace joins each group that has one
    before_rl: str | None = None  # "traces": SFT on them; "own-completions": SFT on the policy's verified
    # completions of the prefixed problems (`prefixrl.rl.regft`)


METHODS = {
    "prefixrl": Method(mix=None),
    "prefixrl-only": Method(mix=1.0),
    "rl": Method(mix=0.0),
    "sft-rl": Method(mix=0.0, before_rl="traces"),
    "offpolicy": Method(mix=0.0, offpolicy="importance"),
    "luffy": Method(mix=0.0, offpolicy="shaping"),
    "regft-rl": Method(mix=0.0, before_rl="own-completions"),
}
