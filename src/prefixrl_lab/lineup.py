"""The methods a bench compares, by label: which trainer method each runs, with which settings changed."""

from __future__ import annotations

# label -> (trainer method, overrides). "rl-n64" is standard RL with 64 samples per prompt (paper §6.3).
# The last four go beyond the paper (`prefixrl.rl.pool`): PrefixRL with adaptive cuts, with harvested traces,
# with both, and with re-collected traces; they run only when --methods names them.
RUNS = {
    "prefixrl": ("prefixrl", {}),
    "prefixrl-only": ("prefixrl-only", {}),
    "rl": ("rl", {}),
    "rl-n64": ("rl", {"samples_per_prompt": 64, "prompts_per_step": 1}),
    "sft-rl": ("sft-rl", {}),
    "offpolicy": ("offpolicy", {}),
    "luffy": ("luffy", {}),
    "prefixrl-adaptive": ("prefixrl", {"prefix_schedule": "adaptive"}),
    "prefixrl-harvest": ("prefixrl", {"harvest": True}),
    "prefixrl-adaptive-harvest": ("prefixrl", {"prefix_schedule": "adaptive", "harvest": True}),
    # re-collection with the current policy every 50 steps, 64 samples per untraced problem (docs/choices.md)
    "prefixrl-recollect": ("prefixrl", {"recollect_every": 50, "recollect_cap": 64}),
}
PAPER_METHODS = ("prefixrl", "prefixrl-only", "rl", "rl-n64", "sft-rl", "offpolicy", "luffy")
VARIANTS = ("prefixrl-adaptive", "prefixrl-harvest", "prefixrl-adaptive-harvest", "prefixrl-recollect")
# Both benches' default methods: the paper's, and the variants that passed pilot 5's rule (exact
# hard-heldout pass@1 at least 2x fixed PrefixRL's at one of its two settings; docs/regimes.md), measured
# next to PrefixRL in bench paper as on the map. Harvest alone did not pass.
DEFAULT_METHODS = PAPER_METHODS + ("prefixrl-adaptive", "prefixrl-adaptive-harvest")
QUICK_MAP_METHODS = ("prefixrl", "rl", "sft-rl")  # the three the map is about


def is_baseline(label: str) -> bool:
    """A method that conditions on no prefix: what PrefixRL and its variants are compared against."""
    return RUNS[label][0] not in ("prefixrl", "prefixrl-only")
