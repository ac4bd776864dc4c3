"""The CLI's stage configs and runners: `collect`, `prefixes`, `train`, `eval`.

Each config is flat; its field docstrings are the command's --help. Runners do the I/O around the pure
pieces in the other modules. The task of a model folder is read from its prefixrl.json (written by
`prefixrl pretrain`), so every stage agrees on the task without repeating its knobs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from prefixrl.collect import import_traces, rejection_sample
from prefixrl.engine import Sampler, SamplingParams
from prefixrl.evaluate import evaluate
from prefixrl.model import load
from prefixrl.prefixes import cut_prefixes, load_prefixes, save_prefixes
from prefixrl.store import BadInput
from prefixrl.tasks import get_task
from prefixrl.traces import load_traces, save_traces
from prefixrl.train import METHODS, RLSettings, train_rl


def task_of(model_dir: Path):
    meta = Path(model_dir) / "prefixrl.json"
    spec = json.loads(meta.read_text())["task"] if meta.is_file() else {"name": "chain"}
    return get_task(spec.pop("name"), **spec)


def load_policy(model_dir: Path):
    if not Path(model_dir).is_dir():
        raise BadInput(f"{model_dir}: model folder not found (run `prefixrl pretrain` or pass --model)")
    model, tok = load(model_dir)
    return model, tok, task_of(model_dir)


def _params(task, temperature: float, top_p: float) -> SamplingParams:
    return SamplingParams(temperature, top_p, max_new_tokens=2 * task.slots + 4)


@dataclass(frozen=True)
class CollectConfig:
    """Rejection sampling with the base model: one verified-correct trace per hard-train problem."""

    model: Path = Path("runs/base")
    """Base model folder (the sampler of rejection sampling)."""
    out: Path = Path("runs/traces.parquet")
    """Trace store to write; a summary with the FLOPs spent goes next to it as .json."""
    problems: int = 64
    """How many hard-train problems."""
    data_seed: int = 0
    """Seed of the problem set (use the same one for `train`)."""
    cap: int = 1024
    """Most samples drawn per problem."""
    per_round: int = 32
    """Samples per unsolved problem per round."""
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    """Sampling seed."""
    import_file: Path | None = None
    """Instead of sampling, import traces made elsewhere: JSONL of {"problem_id", "trace"}."""


def run_collect(cfg: CollectConfig) -> dict:
    model, tok, task = load_policy(cfg.model)
    problems = task.problems("hard_train", cfg.problems, cfg.data_seed)
    if cfg.import_file is not None:
        traces, rejected = import_traces(cfg.import_file, task, tok, problems)
        summary = {"problems": len(problems), "solved": len(traces), "samples": 0, "flops": 0.0,
                   "imported_from": str(cfg.import_file), "rejected": rejected}
    else:
        engine = Sampler(model, tok.eos_token_id, tok.pad_token_id)
        col = rejection_sample(engine, tok, task, problems, _params(task, cfg.temperature, cfg.top_p),
                               source=str(cfg.model), cap=cfg.cap, per_round=cfg.per_round, seed=cfg.seed)
        traces, summary = col.traces, {**col.summary(), "ledger": col.ledger.to_dict()}
    save_traces(cfg.out, traces)
    cfg.out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    return summary


@dataclass(frozen=True)
class PrefixesConfig:
    """Cut prefixes from the traces (paper rule: 3 per trace at U[0.4, 0.8] of its tokens)."""

    traces: Path = Path("runs/traces.parquet")
    """Trace store from `prefixrl collect`."""
    model: Path = Path("runs/base")
    """Policy folder: its tokenizer must be the traces' tokenizer."""
    out: Path = Path("runs/prefixes.parquet")
    """Prefix file to write."""
    k: int = 3
    """Prefixes per trace (paper: 3)."""
    low: float = 0.4
    """Smallest cut, as a fraction of the trace's tokens (paper: 0.4)."""
    high: float = 0.8
    """Largest cut (paper: 0.8)."""
    seed: int = 0
    """Seed of the cut points (drawn once per trace and stored)."""


def run_prefixes(cfg: PrefixesConfig) -> dict:
    _, tok, task = load_policy(cfg.model)
    traces, rejected = load_traces(cfg.traces, task, tok)
    prefixes = cut_prefixes(traces, task, tok, k=cfg.k, low=cfg.low, high=cfg.high, seed=cfg.seed)
    save_prefixes(cfg.out, prefixes)
    return {"traces": len(traces), "rejected": rejected, "prefixes": len(prefixes)}


@dataclass(frozen=True)
class TrainConfig:
    """On-policy RL: PrefixRL, or one of the paper's baselines on the same trainer (docs/baselines.md)."""

    model: Path = Path("runs/base")
    """Starting policy folder (Hugging Face format)."""
    out: Path = Path("runs/train")
    """Run folder: metrics.jsonl, ledger.json, config.json and the final policy in final/."""
    method: str = "prefixrl"
    """prefixrl, prefixrl-only (prefixed problems only), rl (standard RL), sft-rl (SFT on the traces,
    then RL), offpolicy (traces in the group, clipped importance weights) or luffy (traces in the group,
    policy shaping)."""
    prefixes: Path | None = Path("runs/prefixes.parquet")
    """Prefix file from `prefixrl prefixes` (not needed by --method rl)."""
    traces: Path | None = Path("runs/traces.parquet")
    """Trace store whose collection FLOPs are charged to methods that use it."""
    problems: int = 64
    """How many hard-train problems (same as `collect`)."""
    data_seed: int = 0
    steps: int = RLSettings.steps
    """RL steps."""
    flops_budget: float = 0.0
    """Stop once total FLOPs reach this (0 = no budget)."""
    prompts_per_step: int = RLSettings.prompts_per_step
    """Prompts per step (each gets its own group)."""
    samples_per_prompt: int = RLSettings.samples_per_prompt
    """Group size n."""
    mix: float = RLSettings.mix
    """Share of prefixed prompts per batch for --method prefixrl (paper: 3 prefixed : 1 unprefixed)."""
    lr: float = RLSettings.lr
    """AdamW learning rate."""
    temperature: float = RLSettings.temperature
    top_p: float = RLSettings.top_p
    eval_every: int = RLSettings.eval_every
    """Evaluate unprefixed (and prefixed) hard-train accuracy every this many steps."""
    save_every: int = 0
    """Save the policy in HF format to OUT/step-NNNNNN every this many steps (0: only OUT/final)."""
    sft_epochs: int = RLSettings.sft_epochs
    """sft-rl: passes over the traces before RL."""
    sft_lr: float = RLSettings.sft_lr
    """sft-rl: SFT learning rate."""
    is_clip: float = RLSettings.is_clip
    """offpolicy: upper clip of the token-level importance weights."""
    shaping_gamma: float = RLSettings.shaping_gamma
    """luffy: γ of the policy shaping p/(p+γ)."""
    seed: int = 0


def run_train(cfg: TrainConfig) -> dict:
    if cfg.method not in METHODS:
        raise BadInput(f"unknown method {cfg.method!r}; choose from {', '.join(METHODS)}")
    model, tok, task = load_policy(cfg.model)
    problems = task.problems("hard_train", cfg.problems, cfg.data_seed)
    method = METHODS[cfg.method]
    uses_traces = cfg.method != "rl"
    prefixes = load_prefixes(cfg.prefixes, task, tok) if method.mix != 0.0 and cfg.prefixes else []
    traces = []
    if (method.offpolicy or method.sft_first) and cfg.traces is not None:
        traces, rejected = load_traces(cfg.traces, task, tok)
        for msg in rejected:
            print(f"excluded: {msg}", file=sys.stderr)
    charged = 0.0
    if uses_traces and cfg.traces is not None and cfg.traces.with_suffix(".json").is_file():
        charged = float(json.loads(cfg.traces.with_suffix(".json").read_text())["flops"])
    params = _params(task, cfg.temperature, cfg.top_p)
    settings = RLSettings(method=cfg.method, steps=cfg.steps, flops_budget=cfg.flops_budget,
                          prompts_per_step=cfg.prompts_per_step, samples_per_prompt=cfg.samples_per_prompt,
                          mix=cfg.mix, lr=cfg.lr, temperature=cfg.temperature, top_p=cfg.top_p,
                          max_new_tokens=params.max_new_tokens, eval_every=cfg.eval_every,
                          save_every=cfg.save_every, sft_epochs=cfg.sft_epochs, sft_lr=cfg.sft_lr,
                          is_clip=cfg.is_clip, shaping_gamma=cfg.shaping_gamma, seed=cfg.seed)
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "config.json").write_text(json.dumps(asdict(cfg), indent=2, default=str))
    return train_rl(model, tok, task, settings, problems, prefixes, cfg.out, charged_flops=charged, traces=traces)


@dataclass(frozen=True)
class EvalConfig:
    """Unbiased pass@k of a policy on unprefixed problems."""

    model: Path = Path("runs/base")
    """Policy folder to evaluate."""
    split: str = "hard_heldout"
    """easy, hard_train or hard_heldout (always unprefixed)."""
    problems: int = 128
    data_seed: int = 0
    samples: int = 64
    """Samples per problem (n); every k must be <= n."""
    k: tuple[int, ...] = (1, 8, 64)
    """pass@k values to report."""
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    out: Path | None = None
    """Optional JSON file for the results."""


def run_eval(cfg: EvalConfig) -> dict:
    if any(k > cfg.samples or k < 1 for k in cfg.k):
        raise BadInput(f"pass@k needs 1 <= k <= samples; got k={list(cfg.k)} with samples={cfg.samples}")
    model, tok, task = load_policy(cfg.model)
    problems = task.problems(cfg.split, cfg.problems, cfg.data_seed)
    r = evaluate(Sampler(model, tok.eos_token_id, tok.pad_token_id), tok, task, problems, cfg.samples,
                 _params(task, cfg.temperature, cfg.top_p), seed=cfg.seed, progress=True)
    res = {"split": cfg.split, "problems": len(problems), "samples": cfg.samples, "verdicts": r.verdicts,
           **{f"pass@{k}": r.pass_at(k) for k in cfg.k}}
    if cfg.out is not None:
        cfg.out.write_text(json.dumps(res, indent=2))
    return res
