"""The hidden-string MDP of Proposition 3.4, solved exactly.

A policy writes H tokens from a vocabulary of V; the reward is 1 iff the string equals a hidden string
s*. Only states on the hidden path matter (once a wrong token is written the reward is 0 whatever follows),
so a policy is summarised by one distribution per position h over the V tokens — a tabular softmax with
logits θ[h, a] — and everything below is exact: no sampling.

Notation: q_h(π) = π(s*_h | h) is the chance of writing the right token at position h.
    J(π)            = Π_h q_h                       success from the start (the standard objective)
    J_h(π)          = Π_{k ≥ h} q_k                 success from the prefix s*_{<h} (a PrefixRL state)
    KL(μ ‖ π₀)      = Σ_h KL(μ(·|h) ‖ π₀(·|h))      along the hidden path (μ's trajectories stay on it)
For μ = π₀ conditioned on success (rejection sampling), μ puts all mass on s*, so KL = −log J(π₀).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class HiddenString:
    H: int  # horizon (string length)
    V: int  # vocabulary size
    secret: tuple[int, ...]  # s*, one token per position

    @staticmethod
    def make(H: int, V: int, seed: int = 0) -> HiddenString:
        if H < 1 or V < 2:
            raise ValueError("need H >= 1 and V >= 2")
        rng = np.random.default_rng(seed)
        return HiddenString(H, V, tuple(int(x) for x in rng.integers(0, V, size=H)))


def softmax(theta: np.ndarray) -> np.ndarray:
    z = theta - theta.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def base_logits(env: HiddenString, p: float) -> np.ndarray:
    """Logits of a base policy π₀ that writes the right token with probability p at every position
    (the rest uniform): pass rate J(π₀) = p^H, tunable through p."""
    if not 1.0 / env.V <= p < 1.0:
        raise ValueError("need 1/V <= p < 1")
    probs = np.full((env.H, env.V), (1 - p) / (env.V - 1))
    probs[np.arange(env.H), env.secret] = p
    return np.log(probs)


def right_token_probs(env: HiddenString, theta: np.ndarray) -> np.ndarray:
    """q_h for every h: shape [H]."""
    return softmax(theta)[np.arange(env.H), env.secret]


def success(env: HiddenString, theta: np.ndarray, h: int = 0) -> float:
    """J_h(π): probability of writing s*_{h:} given the prefix s*_{<h} (h = 0: the standard objective)."""
    return float(np.prod(right_token_probs(env, theta)[h:]))


def prefixed_objective(env: HiddenString, theta: np.ndarray, resets: list[int]) -> float:
    """The PrefixRL objective (Eq. 3.1) on this MDP: mean success over the unprefixed problem and the
    prefixed problems that reset to positions `resets` on the correct trace."""
    return float(np.mean([success(env, theta, 0)] + [success(env, theta, h) for h in resets]))


def kl_along_path(env: HiddenString, mu: np.ndarray, pi0: np.ndarray) -> float:
    """Σ_h KL(μ(·|h) ‖ π₀(·|h)) for probability tables [H, V] (0·log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(mu > 0, mu * (np.log(mu) - np.log(pi0)), 0.0)
    return float(terms.sum())


def conditioned_on_success(env: HiddenString) -> np.ndarray:
    """μ = π₀ conditioned on success: all mass on the hidden string (whatever π₀ is)."""
    mu = np.zeros((env.H, env.V))
    mu[np.arange(env.H), env.secret] = 1.0
    return mu
