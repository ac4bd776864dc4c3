"""`prefixrl bench WHICH`: claims the work and report folders, then runs one bench (paper, cross-family,
regimes, last-word, in-context, perf); each lives in a module of its own."""

from __future__ import annotations

from prefixrl.data.verifier import deadlined
from prefixrl.io.outputs import Output, claim
from prefixrl_lab import pipeline
from prefixrl_lab.configs import BENCHES, BenchConfig
from prefixrl_lab.cross_family import run_cross_family
from prefixrl_lab.in_context import run_in_context
from prefixrl_lab.last_word import run_last_word
from prefixrl_lab.paper import run_paper
from prefixrl_lab.perf import run_perf
from prefixrl_lab.regime_map import run_regimes


def run_bench(cfg: BenchConfig) -> dict:
    if cfg.which not in BENCHES:
        raise ValueError(f"unknown bench {cfg.which!r}; choose from: {', '.join(BENCHES)}")
    outputs = [Output(cfg.work, "--work", kind="folder", existing="owned")]
    if cfg.out.resolve() != cfg.work.resolve():  # the reports: files of the same names in --out are replaced
        outputs.append(Output(cfg.out, "--out", kind="folder", existing="replace"))
    if cfg.json is not None:
        outputs.append(Output(cfg.json, "--json", existing="replace"))
    with claim("bench", outputs, {}):
        return _bench(cfg)


def _bench(cfg: BenchConfig) -> dict:
    if cfg.which == "regimes":  # one task (and verifier pool) per setting of the knob
        return run_regimes(cfg.resolved())
    if cfg.which == "last-word":  # likewise, per class count
        return run_last_word(cfg.resolved())
    if cfg.which == "in-context":
        return run_in_context(cfg.resolved())
    with deadlined(pipeline.base_config(cfg.work / "base", cfg).task()) as task:
        if cfg.which == "perf":
            return run_perf(cfg, task)  # --quick there means fewer prompts, not the paper bench's settings
        return (run_cross_family if cfg.which == "cross-family" else run_paper)(cfg.resolved(), task)
