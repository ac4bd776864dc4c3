"""One setting's comparison under docs/last_word.md's rules (§1–3, §6): `Setting` tunes every method
alike, runs each at its chosen values over the reported seeds, and words the verdict. Used by
`prefixrl bench last-word` (`prefixrl_lab.last_word`) at each class count and by the reuse setting
(`prefixrl_lab.reuse`).

At a setting, with its calibrated base:

1. **Equal tuning.** Every method gets the same search, 5 candidate learning rates (`rl.sft.LR_FACTORS`
   around a centre), each a full-budget run at the tuning seed, chosen by exact pass@1 on validation
   problems (hard-heldout problems of another data seed; ties to the smaller lr). PrefixRL and standard RL
   tune the RL lr; SFT→RL and ReGFT tune their SFT lr (epochs early-stopped inside the run) with RL at
   standard RL's choice. The search is charged to no method.
2. **SFT depth.** SFT→RL also at 1, 3 and 10 epochs (at its chosen SFT lr); the depth PrefixRL is compared
   against is the one with the best validation exact pass@1. For each: the entropy on held-out traces after
   SFT and the hard-train exact pass@1 before RL (`sft_probe`).
3. **ReGFT** (`--method regft-rl`): SFT on the policy's own verified completions of the prefixed
   problems, then RL.

Every piece is cached in the setting's folder by what it depends on, so a killed bench resumes run by run.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np

from prefixrl.data.evaluate import evaluate
from prefixrl.data.prefixes import cut_prefixes
from prefixrl.data.prompt import encode_response
from prefixrl.data.tasks.base import Problem
from prefixrl.data.traces import Trace
from prefixrl.io.errors import BadInput
from prefixrl.io.run_state import read_log
from prefixrl.rl import exact
from prefixrl.rl.methods import METHODS
from prefixrl.rl.settings import RLSettings
from prefixrl.rl.sft import LR_FACTORS, Examples, nll_and_entropy
from prefixrl.rl.train import before_rl
from prefixrl.rollout.engine import Sampler, SamplingParams
from prefixrl.rollout.flops import Ledger
from prefixrl.rollout.model import load
from prefixrl_lab import gates, pipeline
from prefixrl_lab.paper import bench_key, collection, strategy_change
from prefixrl_lab.perf import machine
from prefixrl_lab.regime_map import base_gates
from prefixrl_lab.stopwatch import WallClock

RL_CENTRE, SFT_CENTRE = 1e-4, 3e-4  # docs/last_word.md §1: the RL grid 1e-5 … 1e-3, SFT's 3e-5 … 3e-3
DEPTHS = (1, 3, 10)  # §2: SFT epochs beside the early-stopped rule
TUNING_SEED = 100  # §1: the candidates' seed; the reported runs use seeds 0 … seeds − 1
VALIDATION_DATA_SEED = 1  # §1: validation problems are hard-heldout problems of this data seed


def grid(centre: float) -> list[float]:
    return [centre * f for f in LR_FACTORS]


def validation_problems(task, n: int, avoid: list[Problem]) -> list[Problem]:
    """§1's validation set: n hard-heldout problems drawn with VALIDATION_DATA_SEED, less any whose question
    is among `avoid` (the reported hard-heldout problems, and the hard-train ones the runs train on)."""
    seen = {p.question for p in avoid}
    return [replace(p, id=f"validation-{p.id}") for p in task.problems("hard_heldout", n, VALIDATION_DATA_SEED)
            if p.question not in seen]


def choose(scores: dict[float, float]) -> float:
    """The candidate with the highest validation exact pass@1; a tie goes to the smaller value."""
    return min(scores, key=lambda v: (-scores[v], v))


class Setting:
    """One setting's tuning, depth study, reported runs and verdict."""

    def __init__(self, cfg, task):
        self.cfg, self.task = cfg, task
        self.clock = WallClock(cfg.work, "last_word")
        pcfg = pipeline.base_config(cfg.work / "base", cfg, calibration=cfg.calibration)
        self.base, self.tok = pipeline.ensure_base(pcfg, progress=cfg.progress)
        # in every record's key: a base pretrained again (another CPU, another pretraining setting) is another
        # base, and standard RL's records (nothing charged) would otherwise not know it
        self.base_digest = pipeline.weights_digest(cfg.work / "base")
        self.params = SamplingParams(max_new_tokens=task.max_response_tokens)
        self.rl = RLSettings(max_new_tokens=self.params.max_new_tokens, eval_every=25)
        self.train_set = task.problems("hard_train", cfg.train_problems, 0)
        self.heldout = task.problems("hard_heldout", cfg.heldout_problems, 0)
        self.validation = validation_problems(task, cfg.heldout_problems, self.train_set + self.heldout)
        self._seeds: dict[int, tuple] = {}

    def seed_data(self, seed: int):
        """(collection, prefixes) of one seed: rejection sampling with the base, cut by the paper's rule."""
        if seed not in self._seeds:
            col = collection(self.cfg, self.cfg.work / "base", self.task, self.train_set, self.params, seed,
                             self.cfg.work / f"seed{seed}", model=self.base, tok=self.tok)
            self._seeds[seed] = (col, cut_prefixes(col.traces, self.task, self.tok, seed=seed))
        return self._seeds[seed]

    def run(self) -> dict:
        tuning, chosen = self.tune_all()
        return {**self.report(chosen, depths=DEPTHS), "validation_problems": len(self.validation), "tuning": tuning}

    def tune_all(self) -> tuple[dict, dict]:
        """§1 and §2's search, in the order the rules need: standard RL's lr first (SFT→RL and ReGFT train
        their RL at it), then PrefixRL's, the SFT lrs, and the depths at SFT→RL's chosen SFT lr."""
        lr, sft_lr = {}, {}
        tuning = {"rl": self.tune("rl", "lr", grid(RL_CENTRE), {})}
        lr["rl"] = choose(_scores(tuning["rl"]))
        tuning["prefixrl"] = self.tune("prefixrl", "lr", grid(RL_CENTRE), {})
        lr["prefixrl"] = choose(_scores(tuning["prefixrl"]))
        for method in ("sft-rl", "regft-rl"):
            tuning[method] = self.tune(method, "sft_lr", grid(SFT_CENTRE), {"lr": lr["rl"], "sft_rule": "early-stop"})
            sft_lr[method] = choose(_scores(tuning[method]))
        tuning["sft-rl depth"] = self.tune("sft-rl", "sft_epochs", list(DEPTHS), _depth_over(lr, sft_lr))
        depth_scores = {depth_name(d): r["validation_exact"] for d, r in zip(DEPTHS, tuning["sft-rl depth"]["candidates"])}
        depth_scores["early-stopped"] = _scores(tuning["sft-rl"])[sft_lr["sft-rl"]]
        best_depth = max(depth_scores, key=lambda d: (depth_scores[d], d == "early-stopped"))
        return tuning, {"lr": lr, "sft_lr": sft_lr, "sft_depth": best_depth, "depth_scores": depth_scores}

    def report(self, chosen: dict, depths=(), strategy: bool = False, gates: dict | None = None) -> dict:
        """Every method at its chosen values over the reported seeds (SFT→RL also at each of `depths`), the
        verdict, and the gates (the map's, plus any the caller measured)."""
        lr, sft_lr, best = chosen["lr"], chosen["sft_lr"], chosen["sft_depth"]
        sft_label = "sft-rl" if best == "early-stopped" else f"sft-rl-{best.split()[0]}ep"
        sft = {"sft-rl": ("sft-rl", {"lr": lr["rl"], "sft_lr": sft_lr["sft-rl"], "sft_rule": "early-stop"}),
               **{f"sft-rl-{d}ep": ("sft-rl", {**_depth_over(lr, sft_lr), "sft_epochs": d}) for d in DEPTHS}}
        reported = {
            "prefixrl": ("prefixrl", {"lr": lr["prefixrl"]}),
            "rl": ("rl", {"lr": lr["rl"]}),
            # every depth of `depths` (and the early-stopped rule with them), or only the chosen one
            **{label: run for label, run in sft.items() if label == sft_label
               or (depths and (label == "sft-rl" or label in {f"sft-rl-{d}ep" for d in depths}))},
            "regft-rl": ("regft-rl", {"lr": lr["rl"], "sft_lr": sft_lr["regft-rl"], "sft_rule": "early-stop"}),
        }
        runs = {label: [self.reported_run(label, method, over, seed, strategy) for seed in range(self.cfg.seeds)]
                for label, (method, over) in reported.items()}
        return {"rare_steps": self.cfg.rare_steps, "classes": self.cfg.classes,
                "pretrain_steps": self.cfg.pretrain_steps, "chosen": chosen,
                "runs": runs, "table": {label: summary(rs) for label, rs in runs.items()},
                "verdict": {name: verdict(runs["prefixrl"], runs[label]) for name, label in
                            (("standard RL", "rl"), (f"SFT→RL ({best})", sft_label), ("ReGFT→RL", "regft-rl"))},
                "gates": {**self.gates(runs), **(gates or {})},
                "collections": [self.seed_data(s)[0].summary() for s in range(self.cfg.seeds)],
                "seconds": self.clock.total()}

    def settings(self, method: str, over: dict, seed: int) -> RLSettings:
        return replace(self.rl, method=method, seed=seed, steps=100_000, flops_budget=self.cfg.flops_budget, **over)

    def tune(self, method: str, field: str, values: list, over: dict) -> dict:
        """One full-budget run per candidate value at TUNING_SEED, each scored on the validation problems."""
        records = []
        for v in values:
            label = f"{method}-{field}{v:g}"
            settings = self.settings(method, {**over, field: v}, TUNING_SEED)
            rec = self.one(self.cfg.work / "tune" / label, settings, TUNING_SEED, self.validation, None)
            records.append({"value": v, "validation_exact": rec["exact"], "rare_knowledge": rec["rare_knowledge"],
                            "steps": rec["steps"], "sft": rec["sft"]})
        return {"method": method, "field": field, "fixed": over, "candidates": records}

    def reported_run(self, label: str, method: str, over: dict, seed: int, strategy: bool = False) -> dict:
        settings = self.settings(method, over, seed)
        folder = self.cfg.work / f"seed{seed}" / label
        rec = self.one(folder, settings, seed, self.heldout, self.heldout[:64], strategy)
        if label == "rl" and seed == 0:
            self.starved()  # read off the run's log now: git keeps the record, not the log (bench/.gitignore)
        if METHODS[method].before_rl:
            rec = {**rec, "probe": self.sft_probe(folder, settings, seed)}
        return {"seed": seed, **rec}

    def one(self, folder, settings: RLSettings, seed: int, scored: list[Problem], curve_heldout,
            strategy: bool = False) -> dict:
        """A run from the base, cached by its settings, its charge and the problems it is scored on. With
        `strategy`, also whether its hard-train solves follow their trace's choices (the paper's Fig. 5)."""
        col, prefixes = self.seed_data(seed)
        charged = col.ledger.total() if settings.method != "rl" else 0.0

        def compute():
            policy, r = pipeline.run_method(folder, self.cfg.work / "base", self.tok, self.task, settings,
                                            self.train_set, prefixes, charged, traces=col.traces,
                                            eval_heldout=curve_heldout, progress=self.cfg.progress)
            steps = [s for s in read_log(folder) if s["kind"] == "step"]
            return {"exact": exact.measure(policy, self.tok, self.task, scored)["exact_pass@1"],
                    "rare_knowledge": exact.rare_knowledge(policy, self.tok, self.task, scored),
                    "steps": len(steps), "charged": charged, "sft": r.get("sft"),
                    "flops": r["curve"][-1]["flops"], "curve": r["curve"] if curve_heldout else None,
                    **pipeline.mechanism(steps, settings, r["curve"][-1]["flops"] - charged),
                    "machine": machine(),  # a bench spread over sessions may run on several CPUs
                    **({"strategy": self.strategy(policy, seed, col.traces)} if strategy else {})}

        key = pipeline.record_key(settings, charged, bench=bench_key(self.cfg), base=self.base_digest,
                                  scored=[[p.question, p.answer] for p in scored], **({"strategy": 1} if strategy else {}))
        record = pipeline.cached(folder / "bench_record.json", key, compute)
        self.clock.save()
        return record

    def strategy(self, policy, seed: int, traces) -> dict | None:
        """Of the final policy's solves of hard-train problems that have a trace (16 samples each), the share
        whose rare-step choices differ from the trace's (`paper.strategy_change`)."""
        eng = Sampler(policy, self.tok.eos_token_id, self.tok.pad_token_id)
        solved = evaluate(eng, self.tok, self.task, self.train_set, 16, self.params, seed=seed + 3)
        return strategy_change(self.task, self.train_set, solved, traces)

    def sft_probe(self, folder, settings: RLSettings, seed: int) -> dict:
        """§2's figures of an SFT phase, measured on a copy of it from the base (the same rule, seed and data,
        so the same choice): the mean entropy on held-out traces (the reference solutions of the hard-heldout
        problems) and the hard-train exact pass@1, after SFT and before any RL step."""
        col, prefixes = self.seed_data(seed)

        def compute():
            model, _ = load(self.cfg.work / "base")
            engine = Sampler(model, self.tok.eos_token_id, self.tok.pad_token_id)
            choice = before_rl(model, self.tok, self.task, settings, METHODS[settings.method], col.traces, prefixes,
                               engine, Ledger())
            held = [reference_trace(self.task, self.tok, p) for p in self.heldout]
            _, entropy = nll_and_entropy(model, self.tok, Examples.of_traces(self.tok, held), Ledger(), "eval/")
            return {"epochs": choice.get("epochs"), "lr": choice.get("lr"), "heldout_trace_entropy": entropy,
                    "hard_train_exact_before_rl": exact.measure(model, self.tok, self.task, self.train_set)["exact_pass@1"]}

        key = pipeline.record_key(settings, 0.0, bench=bench_key(self.cfg), base=self.base_digest, probe=1)
        return pipeline.cached(folder / "sft_probe.json", key, compute)

    def base_gates(self) -> dict:
        """The map's gates 1 and 4 at this setting (docs/regimes.md), from the base and seed 0's traces."""
        return base_gates(self.base, self.tok, self.task, self.train_set, self.seed_data(0)[0].traces,
                          self.cfg.collect_cap)

    def gates(self, runs: dict) -> dict:
        """The map's gates 1, 2 and 4 at this setting, gate 2 from seed 0's standard RL."""
        return {**self.base_gates(), "rl_starved": self.starved()}

    def starved(self) -> dict:
        """Gate 2 from seed 0's standard RL, cached beside its record (a work folder kept without its runs'
        logs still words the gate)."""
        col, run = self.seed_data(0)[0], self.cfg.work / "seed0" / "rl"
        key = {"run": json.loads((run / "bench_record.json").read_text())["key"], "charged": col.ledger.total(),
               "traces": len(col.traces)}

        def compute():
            if not (run / "metrics.jsonl").is_file():
                raise BadInput(f"{run}: gate 2 reads this run's metrics.jsonl, which is gone; delete "
                               f"{run / 'bench_record.json'} to run it again")
            return gates.rl_starvation(run, col.ledger.total(), len(col.traces))

        return pipeline.cached(run / "rl_starved.json", key, compute)


def reference_trace(task, tok, problem: Problem):
    """The task's reference solution of `problem` as a trace (for entropy on held-out traces)."""
    return Trace(problem.id, problem.question, problem.answer, "", encode_response(tok, task.solution(problem)),
                 "reference", "task", 1.0, 1.0, 1, 0.0)


def depth_name(epochs: int) -> str:
    return f"{epochs} epoch{'s' * (epochs > 1)}"


def _depth_over(lr: dict, sft_lr: dict) -> dict:
    """The fixed settings of the SFT-depth runs: RL at standard RL's lr, SFT at SFT→RL's chosen lr."""
    return {"lr": lr["rl"], "sft_lr": sft_lr["sft-rl"], "sft_rule": "epochs"}


def _scores(tuned: dict) -> dict[float, float]:
    return {r["value"]: r["validation_exact"] for r in tuned["candidates"]}


def summary(runs: list[dict]) -> dict:
    def mean(key):
        xs = [r[key] for r in runs if r.get(key) is not None]
        return float(np.mean(xs)) if xs else None

    return {"exact_mean": mean("exact"), "exact_std": float(np.std([r["exact"] for r in runs])),
            "exact_seeds": [r["exact"] for r in runs], "rare_knowledge": mean("rare_knowledge"),
            "signal_share": mean("signal_share"), "correct_per_tflop": mean("correct_per_tflop"),
            "steps": [r["steps"] for r in runs]}


def verdict(prefixrl: list[dict], other: list[dict]) -> dict:
    """§6: per seed PrefixRL's exact hard-heldout pass@1 ÷ the other method's (same seed). Ahead: every
    ratio above 1 and their geometric mean at least 1.25; behind: every ratio below 1 and the geometric mean
    at most 0.8; otherwise no clear order."""
    ratios = [_ratio(p["exact"], o["exact"]) for p, o in zip(prefixrl, other)]
    if any(math.isinf(r) for r in ratios):
        geo = None  # PrefixRL above a method at exactly 0: every such seed is above 1, no mean to take
    elif any(r == 0 for r in ratios):
        geo = 0.0  # PrefixRL at exactly 0 where the other is not
    else:
        geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    if all(r > 1 for r in ratios) and (geo is None or geo >= 1.25):
        words = "PrefixRL is ahead"
    elif all(r < 1 for r in ratios) and geo is not None and geo <= 0.8:
        words = "PrefixRL is behind"
    else:
        words = f"no clear order at {len(ratios)} seeds"
    return {"ratios": [r if math.isfinite(r) else None for r in ratios], "geo_mean": geo, "words": words}


def _ratio(p: float, o: float) -> float:
    """PrefixRL ÷ the other method at one seed; both at exactly 0 is no order (1), not a win."""
    if o > 0:
        return p / o
    return 1.0 if p == 0 else math.inf
