"""`prefixrl theory`: the paper's statements checked numerically on the hidden-string MDP.

Writes docs/theory/results.md (every number in it comes from this command) and four plots:
separation in H, suboptimality against T and N, the effect of KL(μ‖π₀), and Theorem 3.2.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from prefixrl.io.outputs import Output, claim
from prefixrl_lab.reports import save
from prefixrl_lab.reports.theory import ALGOS
from prefixrl_lab.theory.algos import learn
from prefixrl_lab.theory.mdp import (
    HiddenString,
    base_logits,
    conditioned_on_success,
    kl_along_path,
    prefixed_objective,
    softmax,
    success,
)



@dataclass(frozen=True)
class TheoryConfig:
    """Run the theory lab: exact hidden-string MDPs, standard NPG vs PrefixRL-NPG vs practical PrefixRL."""

    out: Path = Path("runs/theory")
    """Folder for results.md, results.json and the plots (files of those names there are replaced); the
    committed docs are regenerated with --out docs/theory."""
    quick: bool = False
    """Fewer horizons and seeds (about a minute)."""
    vocab: int = 3
    """V: tokens per position."""
    target: float = 0.5
    """Success that counts as solved."""
    episodes: int = 50
    """N: episodes per iteration."""
    eta: float = 1.0
    """Mirror-descent step size."""
    budget: int = 300_000
    """Most episodes per run; a run that has not reached the target by then is reported as censored."""
    seeds: int = 5


def _samples(env, theta0, algo, cfg, seed):
    run = learn(env, theta0, algo, iters=cfg.budget // cfg.episodes, n=cfg.episodes, eta=cfg.eta, seed=seed,
                band=(0.4, 0.8) if algo == "prefixrl" else (0.0, 1.0))
    return run.samples_to(cfg.target)


def separation(cfg: TheoryConfig, horizons: list[int]) -> dict:
    """Episodes to reach the target from a uniform base policy (pass rate V^−H), per algorithm and H."""
    out = {a: {} for a in ALGOS}
    for H in horizons:
        for algo in ALGOS:
            vals = []
            for seed in range(cfg.seeds):
                env = HiddenString.make(H, cfg.vocab, seed=seed)
                vals.append(_samples(env, base_logits(env, 1.0 / cfg.vocab), algo, cfg, seed))
            reached = [v for v in vals if v is not None]
            out[algo][H] = {"median": float(np.median(reached)) if len(reached) == len(vals) else None,
                            "reached": len(reached), "runs": len(vals)}
    return out


def fit_rates(sep: dict) -> dict:
    """Exponential fit log n = a + b·H (rate e^b per extra token) and power fit log n = a + c·log H."""
    fits = {}
    for algo, by_h in sep.items():
        hs = [h for h, v in by_h.items() if v["median"]]
        if len(hs) < 2:
            fits[algo] = None
            continue
        ys = np.log([by_h[h]["median"] for h in hs])
        b = np.polyfit(hs, ys, 1)[0]
        c = np.polyfit(np.log(hs), ys, 1)[0]
        fits[algo] = {"exp_rate_per_token": float(math.exp(b)), "power_degree": float(c), "horizons": hs}
    return fits


def suboptimality_curves(cfg: TheoryConfig, H: int) -> dict:
    """PrefixRL-NPG's 1 − J(mixture) against T (N fixed) and against N (T fixed), mean over seeds."""
    env = HiddenString.make(H, cfg.vocab, seed=0)
    theta0 = base_logits(env, 1.0 / cfg.vocab)
    Ts, Ns = [1, 2, 4, 8, 16, 32, 64, 128, 256], [1, 2, 4, 8, 16, 32, 64]
    n_for_t, t_for_n = 20, 64
    by_t = np.mean([learn(env, theta0, "prefixrl_npg", iters=max(Ts), n=n_for_t, eta=cfg.eta, seed=s).success
                    for s in range(cfg.seeds)], axis=0)
    by_n = [np.mean([learn(env, theta0, "prefixrl_npg", iters=t_for_n, n=n, eta=cfg.eta, seed=s).success[-1]
                     for s in range(cfg.seeds)]) for n in Ns]
    return {"H": H, "T": Ts, "subopt_T": [float(1 - by_t[t - 1]) for t in Ts], "N": Ns,
            "subopt_N": [float(1 - v) for v in by_n], "N_for_T": n_for_t, "T_for_N": t_for_n}


def kl_effect(cfg: TheoryConfig, H: int) -> dict:
    """Vary the base pass rate p^H: rejection-sampled traces have KL(μ‖π₀) = H·log(1/p) = log(1/pass rate)."""
    rows = []
    for p in (1.0 / cfg.vocab, 0.5, 0.7, 0.85):
        env = HiddenString.make(H, cfg.vocab, seed=0)
        theta0 = base_logits(env, p)
        kl = kl_along_path(env, conditioned_on_success(env), softmax(theta0))
        row = {"p": p, "pass_rate": success(env, theta0), "kl": kl}
        for algo in ("standard", "prefixrl_npg"):
            vals = [_samples(HiddenString.make(H, cfg.vocab, seed=s), base_logits(HiddenString.make(H, cfg.vocab, seed=s), p),
                             algo, cfg, s) for s in range(cfg.seeds)]
            row[algo] = float(np.median(vals)) if all(v is not None for v in vals) else None
        rows.append(row)
    return {"H": H, "rows": rows}


def consistency() -> dict:
    """Theorem 3.2 on s* = (0, 0, 0, 1), V = 2, resets at every position of the correct trace.

    Realizable (tabular: one distribution per position): both objectives are maximised by the policy that
    writes s*, so their maximisers agree (J = 1). Not realizable (one shared distribution for all
    positions, q = P(token 0)): J(q) = q³(1 − q) and the prefixed objective have different maximisers.
    """
    env = HiddenString(4, 2, (0, 0, 0, 1))
    resets = [1, 2, 3]
    qs = np.linspace(0.0, 1.0, 10_001)

    def shared(q):
        return np.log(np.array([[q, 1 - q]] * 4) + 1e-300)

    j = np.array([success(env, shared(q)) for q in qs])
    pre = np.array([prefixed_objective(env, shared(q), resets) for q in qs])
    q_j, q_pre = float(qs[j.argmax()]), float(qs[pre.argmax()])
    tab = np.log(conditioned_on_success(env) * (1 - 1e-9) + 1e-9 / 2)
    return {"realizable": {"J_at_prefixed_optimum": success(env, tab), "prefixed_at_optimum": prefixed_objective(env, tab, resets)},
            "shared": {"q_maximising_J": q_j, "q_maximising_prefixed": q_pre, "J_max": float(j.max()),
                       "J_at_prefixed_optimum": float(j[pre.argmax()])},
            "curves": {"q": qs[::100].tolist(), "J": j[::100].tolist(), "prefixed": pre[::100].tolist()}}


def run_theory(cfg: TheoryConfig) -> dict:
    with claim("theory", [Output(cfg.out, kind="folder", existing="replace")], {}):
        return _run_theory(cfg)


def _run_theory(cfg: TheoryConfig) -> dict:
    t0 = time.time()
    if cfg.quick:
        cfg = TheoryConfig(**{**cfg.__dict__, "seeds": 3, "budget": 100_000})
    horizons = [2, 3, 4, 5, 6, 7, 8] if cfg.quick else [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    sep = separation(cfg, horizons)
    res = {"kind": "theory", "config": {k: str(v) if isinstance(v, Path) else v for k, v in cfg.__dict__.items()},
           "separation": sep, "fits": fit_rates(sep),
           "suboptimality": suboptimality_curves(cfg, H=6 if cfg.quick else 8),
           "kl": kl_effect(cfg, H=6 if cfg.quick else 8), "consistency": consistency()}
    res["seconds"] = time.time() - t0
    cfg.out.mkdir(parents=True, exist_ok=True)
    _plots(res, cfg)
    save(cfg.out / "results.json", res)
    return res


def _save(fig, axes, path: Path) -> None:
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plots(res: dict, cfg: TheoryConfig) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=120)
    for algo, by_h in res["separation"].items():
        hs = [h for h, v in by_h.items() if v["median"]]
        ax.plot(hs, [by_h[h]["median"] for h in hs], marker="o", label=ALGOS[algo])
    ax.axhline(cfg.budget, color="gray", ls=":", lw=1, label="budget (censored above)")
    ax.set(yscale="log", xlabel="horizon H", ylabel=f"episodes to success ≥ {cfg.target}",
           title=f"Separation (hidden string, V = {cfg.vocab}, uniform π₀)")
    _save(fig, [ax], cfg.out / "separation.png")
    s = res["suboptimality"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    for ax, x, y, lab, shape in ((axes[0], s["T"], s["subopt_T"], "T (iterations)", lambda v: 1 / np.sqrt(v)),
                                 (axes[1], s["N"], s["subopt_N"], "N (episodes per iteration)", lambda v: 1 / np.sqrt(v))):
        ax.plot(x, y, marker="o", label="measured 1 − J(π̄_T)")
        ref = np.array(shape(np.array(x, dtype=float)))
        ax.plot(x, ref * y[0] / ref[0], ls="--", label="bound shape ∝ 1/√·")
        ax.set(xscale="log", yscale="log", xlabel=lab, ylabel="suboptimality")
    fig.suptitle(f"PrefixRL-NPG suboptimality, H = {s['H']}")
    _save(fig, axes, cfg.out / "suboptimality.png")
    rows = [r for r in res["kl"]["rows"]]
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=120)
    for algo in ("standard", "prefixrl_npg"):
        pts = [(r["kl"], r[algo]) for r in rows if r[algo]]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=ALGOS[algo])
    ax.set(yscale="log", xlabel="KL(μ‖π₀) = log(1 / pass rate of π₀)", ylabel="episodes to target",
           title=f"Effect of KL(μ‖π₀), H = {res['kl']['H']}")
    _save(fig, [ax], cfg.out / "kl.png")
    c = res["consistency"]["curves"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=120)
    ax.plot(c["q"], c["J"], label="standard objective J(q)")
    ax.plot(c["q"], c["prefixed"], label="prefixed objective (resets 1..3)")
    ax.set(xlabel="q = P(token 0), shared by all positions", ylabel="objective",
           title="Theorem 3.2 without realizability (s* = 0001)")
    _save(fig, [ax], cfg.out / "consistency.png")


