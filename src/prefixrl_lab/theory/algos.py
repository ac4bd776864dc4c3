"""Three learners on the hidden-string MDP, all the same mirror-descent (NPG) step on a sampled critic:

    θ_{t+1}[h, a] = θ_t[h, a] + η · Q̂_t(h, a)      ⇔      π_{t+1}(a|h) ∝ π_t(a|h) · exp(η Q̂_t(h, a))

where Q̂_t(h, a) is the tabular least-squares critic — the mean return of the samples that took action a
at position h on the hidden path (0 where there is none). They differ only in where an episode starts
and how its first action is drawn:

* `standard`        start at h = 0, every action from π_t (on-policy NPG with sampled returns);
* `prefixrl_npg`    reset to h ~ U{0..H−1} on the correct trace, first action from ½μ + ½π_t, then π_t;
                    the output is the mixture of the iterates (the analysed algorithm, paper App. Alg. 1);
* `prefixrl`        the practical method: 3 of 4 episodes reset to a cut h of the correct trace in the
                    band (a prefix), 1 of 4 starts unprefixed at h = 0 (the paper's 3 : 1 pool); every
                    action from π_t; only positions ≥ h are updated (the prefix is masked); last iterate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prefixrl_lab.theory.mdp import HiddenString, softmax, success


def mirror_descent_step(theta: np.ndarray, q_hat: np.ndarray, eta: float) -> np.ndarray:
    """One NPG / mirror-descent step for a tabular softmax policy: θ + η·Q̂ (closed form above)."""
    return theta + eta * q_hat


def sample_episodes(env: HiddenString, theta: np.ndarray, starts: np.ndarray, rng: np.random.Generator,
                    mu_mix: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Roll out one episode per start position. Returns, for every on-path visit, (h, a, return).

    With mu_mix, the first action of each episode is drawn from ½μ + ½π (μ = the correct trace).
    """
    probs = softmax(theta)
    secret = np.array(env.secret)
    n = len(starts)
    hs, acts, alive_at = [], [], []
    alive = np.ones(n, dtype=bool)
    for h in range(env.H):
        active = alive & (starts <= h)
        if not active.any():
            continue
        idx = np.nonzero(active)[0]
        a = (rng.random((len(idx), 1)) > probs[h].cumsum()[None, :]).sum(1)  # sample from π(·|h)
        if mu_mix:
            first = starts[idx] == h
            use_mu = first & (rng.random(len(idx)) < 0.5)
            a = np.where(use_mu, secret[h], a)
        hs.append(np.full(len(idx), h))
        acts.append(a)
        alive_at.append(idx)
        alive[idx[a != secret[h]]] = False  # off the hidden path: the return is already 0
    ret = alive.astype(float)  # reward 1 iff every written token was right
    if not hs:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    return np.concatenate(hs), np.concatenate(acts), np.concatenate([ret[i] for i in alive_at])


def critic(env: HiddenString, h: np.ndarray, a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Tabular least squares: the mean return per (h, a); 0 where nothing was sampled."""
    total = np.zeros((env.H, env.V))
    count = np.zeros((env.H, env.V))
    np.add.at(total, (h, a), g)
    np.add.at(count, (h, a), 1.0)
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


@dataclass
class Run:
    samples: list[int]  # cumulative episodes after each iteration
    success: list[float]  # J of the output policy after each iteration (mixture or last iterate)

    def samples_to(self, target: float) -> int | None:
        for n, j in zip(self.samples, self.success):
            if j >= target:
                return n
        return None


def learn(env: HiddenString, theta0: np.ndarray, algo: str, iters: int, n: int, eta: float, seed: int = 0,
          band: tuple[float, float] = (0.0, 1.0)) -> Run:
    """Run `algo` for `iters` iterations of `n` episodes each, tracking the exact success of its output."""
    if algo not in ("standard", "prefixrl_npg", "prefixrl"):
        raise ValueError(f"unknown algorithm {algo!r}")
    rng = np.random.default_rng(seed)
    theta = theta0.copy()
    run, mix_sum = Run([], []), 0.0
    lo, hi = int(band[0] * env.H), max(int(band[0] * env.H) + 1, int(np.ceil(band[1] * env.H)))
    for t in range(1, iters + 1):
        if algo == "standard":
            starts = np.zeros(n, dtype=int)
        elif algo == "prefixrl_npg":
            starts = rng.integers(0, env.H, size=n)
        else:
            starts = rng.integers(lo, min(hi, env.H), size=n)
            starts[rng.random(n) < 0.25] = 0  # unprefixed problems in the pool
        h, a, g = sample_episodes(env, theta, starts, rng, mu_mix=(algo == "prefixrl_npg"))
        theta = mirror_descent_step(theta, critic(env, h, a, g), eta)
        j = success(env, theta)
        mix_sum += j
        run.samples.append(t * n)
        run.success.append(mix_sum / t if algo == "prefixrl_npg" else j)
    return run
