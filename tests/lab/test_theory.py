"""Exact quantities of the hidden-string MDP against hand computations, and the NPG closed form."""

import math

import numpy as np
import pytest

from prefixrl_lab.theory.algos import critic, learn, mirror_descent_step, sample_episodes
from prefixrl_lab.theory.mdp import (
    HiddenString,
    base_logits,
    conditioned_on_success,
    kl_along_path,
    prefixed_objective,
    right_token_probs,
    softmax,
    success,
)


def test_success_and_pass_rate_by_hand():
    env = HiddenString(3, 4, (1, 0, 3))
    theta = base_logits(env, 0.5)
    assert np.allclose(right_token_probs(env, theta), [0.5, 0.5, 0.5])
    assert math.isclose(success(env, theta), 0.125)
    assert math.isclose(success(env, theta, h=2), 0.5)
    assert math.isclose(prefixed_objective(env, theta, [1, 2]), (0.125 + 0.25 + 0.5) / 3)
    # uniform policy: (1/4)^3
    assert math.isclose(success(env, np.zeros((3, 4))), 1 / 64)


def test_kl_of_rejection_sampling_is_log_inverse_pass_rate():
    env = HiddenString(5, 3, (0, 1, 2, 0, 1))
    pi0 = softmax(base_logits(env, 0.6))
    mu = conditioned_on_success(env)
    assert math.isclose(kl_along_path(env, mu, pi0), -math.log(0.6**5), rel_tol=1e-12)
    # a hand case: μ = (1, 0), π₀ = (0.25, 0.75) at one position → log 4
    env1 = HiddenString(1, 2, (0,))
    assert math.isclose(kl_along_path(env1, np.array([[1.0, 0.0]]), np.array([[0.25, 0.75]])), math.log(4))


def test_npg_step_matches_closed_form_on_two_states():
    """H = 2 (two on-path states), V = 2, exact Q: π'(a|s) ∝ π(a|s)·exp(η Q(s, a))."""
    env = HiddenString(2, 2, (1, 0))
    theta = np.log(np.array([[0.5, 0.5], [0.8, 0.2]]))
    # exact Q^π: at s = 1 Q(1, a) = 1{a = 0}; at s = 0 Q(0, 1) = π(0|1) = 0.8, Q(0, 0) = 0
    q = np.array([[0.0, 0.8], [1.0, 0.0]])
    assert q[0, 1] == pytest.approx(success(env, theta, h=1)) and q[1, 0] == success(env, theta, h=2)
    eta = 0.7
    new = softmax(mirror_descent_step(theta, q, eta))
    z0 = 0.5 + 0.5 * math.exp(0.7 * 0.8)
    z1 = 0.8 * math.exp(0.7) + 0.2
    assert np.allclose(new, [[0.5 / z0, 0.5 * math.exp(0.56) / z0], [0.8 * math.exp(0.7) / z1, 0.2 / z1]])


def test_sampled_critic_converges_to_exact_q():
    env = HiddenString(2, 2, (1, 0))
    theta = np.log(np.array([[0.5, 0.5], [0.8, 0.2]]))
    rng = np.random.default_rng(0)
    h, a, g = sample_episodes(env, theta, np.zeros(200_000, dtype=int), rng)
    q = critic(env, h, a, g)
    assert abs(q[0, 1] - 0.8) < 0.01 and q[0, 0] == 0.0 and q[1, 0] == 1.0


def test_standard_rl_without_signal_does_not_move_prefixrl_does():
    env = HiddenString.make(10, 4, seed=1)
    theta0 = base_logits(env, 0.25)  # pass rate 4^-10: no success in a few thousand samples
    std = learn(env, theta0, "standard", iters=20, n=100, eta=1.0)
    assert std.success[-1] == pytest.approx(success(env, theta0))
    pre = learn(env, theta0, "prefixrl_npg", iters=20, n=100, eta=1.0)
    assert pre.success[-1] > 100 * success(env, theta0)


def test_lab_pieces_and_fits():
    from prefixrl_lab.theory.lab import TheoryConfig, consistency, fit_rates, separation

    cfg = TheoryConfig(seeds=2, budget=20_000, episodes=20)
    sep = separation(cfg, [2, 3, 4])
    assert all(sep[a][h]["reached"] == 2 for a in sep for h in (2, 3, 4))
    fits = fit_rates(sep)
    assert fits["standard"]["exp_rate_per_token"] > 1.0
    # exact fit check on synthetic medians: n = 10·2^H gives a rate of exactly 2
    fake = {"x": {h: {"median": 10 * 2.0**h, "reached": 1, "runs": 1} for h in (2, 3, 4, 5)}}
    assert fit_rates(fake)["x"]["exp_rate_per_token"] == pytest.approx(2.0)
    c = consistency()
    assert c["realizable"]["J_at_prefixed_optimum"] == pytest.approx(1.0, abs=1e-6)
    assert c["shared"]["q_maximising_J"] == pytest.approx(0.75, abs=1e-3)  # argmax of q³(1 − q)
    assert c["shared"]["J_at_prefixed_optimum"] < c["shared"]["J_max"]


@pytest.mark.slow
def test_theory_cli_quick(tmp_path):
    from prefixrl_lab.cli import main

    assert main(["theory", "--quick", "--out", str(tmp_path)]) == 0
    for f in ("results.md", "results.json", "separation.png", "suboptimality.png", "kl.png", "consistency.png"):
        assert (tmp_path / f).stat().st_size > 0
