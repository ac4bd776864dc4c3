"""The CLI's stage configs and runners: `collect`, `prefixes`, `train`, `eval`.

Each config is flat; its field docstrings are the command's --help. Runners do the I/O around the pure
pieces in the other modules. The task of a model folder is read from its prefixrl.json (written by
`prefixrl pretrain`), so every stage agrees on the task without repeating its knobs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch

from prefixrl import regime
from prefixrl.collect import Collection, import_traces, rejection_sample
from prefixrl.engine import Sampler, SamplingParams
from prefixrl.evaluate import evaluate
from prefixrl.experiments.demo import DemoConfig
from prefixrl.flops import Ledger
from prefixrl.io.errors import BadInput
from prefixrl.io.store import read_meta, write_json_atomic
from prefixrl.io.tracking import BACKENDS, Tracker
from prefixrl.model import load, load_tokenizer
from prefixrl.prefixes import check_cut_rule, cut_prefixes, load_prefixes, save_prefixes
from prefixrl.pretrain import PretrainConfig, ensure_pretrained
from prefixrl.render import render_prompt, tokenizer_fingerprint
from prefixrl.tasks import get_task
from prefixrl.traces import load_traces, save_traces
from prefixrl.train import METHODS, RLSettings, train_rl
from prefixrl.verifier import deadlined


def task_spec_of(model_dir: Path, spec: dict | None = None) -> dict:
    """The task spec given on the command line, else the one in the model folder's prefixrl.json."""
    if spec is None:
        meta = Path(model_dir) / "prefixrl.json"
        spec = json.loads(meta.read_text())["task"] if meta.is_file() else {"name": "chain"}
    return dict(spec)


def task_of(model_dir: Path, spec: dict | None = None):
    """The task named by `spec` (from the command line), else by the model folder's prefixrl.json."""
    return get_task(**task_spec_of(model_dir, spec))


def load_policy(model_dir: Path, task_spec: dict | None = None, weights: bool = True):
    """(model or None, tokenizer, task). weights=False: tokenizer and task only (an engine such as vLLM
    loads the weights itself)."""
    if not Path(model_dir).is_dir():
        raise BadInput(f"{model_dir}: model folder not found (run `prefixrl pretrain` or pass --model)")
    model, tok = load(model_dir) if weights else (None, load_tokenizer(model_dir))
    return model, tok, task_of(model_dir, task_spec)


def check_engine(kind: str) -> None:
    if kind not in ("builtin", "vllm"):
        raise BadInput(f"unknown engine {kind!r}; choose from: builtin, vllm")


def make_engine(kind: str, model, model_dir: Path, tok, seed: int = 0):
    """builtin: `engine.Sampler` on the loaded HF model; vllm: `vllm_engine.VLLMEngine` (docs/vllm.md)."""
    if kind == "builtin":
        return Sampler(model, tok.eos_token_id, tok.pad_token_id)
    if kind == "vllm":
        from prefixrl.vllm_engine import VLLMEngine

        return VLLMEngine(model_dir, seed=seed)
    raise BadInput(f"unknown engine {kind!r}; choose from: builtin, vllm")


def _params(task, cfg) -> SamplingParams:
    """Sampling settings of a stage; response length: --max-new-tokens, else the task's own bound."""
    length = cfg.max_new_tokens or (2 * task.slots + 4 if hasattr(task, "slots") else 1024)
    return SamplingParams(cfg.temperature, cfg.top_p, max_new_tokens=length)


@dataclass(frozen=True)
class TaskOptions:
    task: str | None = None
    """chain, math or reasoning-gym (default: the task recorded in the model folder's prefixrl.json)."""
    task_file: Path | None = None
    """math: problems as JSONL, Parquet or a `datasets` folder saved with save_to_disk."""
    question_field: str = "problem"
    """math: the question column of --task-file."""
    answer_field: str = "answer"
    """math: the reference-answer column of --task-file."""
    gym_dataset: str = "basic_arithmetic"
    """reasoning-gym: the dataset name (generated locally)."""
    gym_size: int = 1000
    """reasoning-gym: problems generated (split 90/10 into hard_train / hard_heldout)."""
    max_new_tokens: int | None = None
    """Longest response sampled (default: the task's bound; chain: 2 per step + 4, others 1024)."""
    verifier_workers: int = 2
    """Verifier worker processes (each verification runs in one, under a hard deadline)."""
    verifier_timeout: float = 10.0
    """Seconds per verification; past it the worker is replaced and the verdict is timeout (reward 0)."""

    def task_spec(self) -> dict | None:
        if self.task is None:
            return None
        if self.task == "math":
            if self.task_file is None:
                raise BadInput("--task math needs --task-file (JSONL, Parquet or a datasets folder)")
            return {"name": "math", "path": str(self.task_file), "question_field": self.question_field,
                    "answer_field": self.answer_field}
        if self.task == "reasoning-gym":
            return {"name": "reasoning-gym", "dataset": self.gym_dataset, "size": self.gym_size}
        return {"name": self.task}


@dataclass(frozen=True)
class CollectConfig(TaskOptions):
    """Rejection sampling with the base model: one verified-correct trace per hard-train problem."""

    model: Path = Path("runs/base")
    """Base model folder (the sampler of rejection sampling)."""
    out: Path = Path("runs/traces.parquet")
    """Trace store to write (saved after every round); a summary with the FLOPs spent goes next to it as .json."""
    resume: bool = False
    """Continue an interrupted collection in --out: solved problems are not sampled again, nothing is lost."""
    engine: str = "builtin"
    """builtin (KV-cache sampler on the HF model) or vllm (token-id prompts, prefix caching; docs/vllm.md)."""
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
    min_yield: float = 0.25
    """Refuse to sample when the share of problems rejection sampling is expected to solve at --cap,
    measured exactly before any sampling (built-in tasks), is below this; 0 turns the gate off."""

    def check(self) -> None:
        check_engine(self.engine)
        if not 0.0 <= self.min_yield <= 1.0:
            raise BadInput(f"min_yield must be in [0, 1], got {self.min_yield}")


def run_collect(cfg: CollectConfig) -> dict:
    model, tok, task = load_policy(cfg.model, cfg.task_spec(), weights=cfg.engine == "builtin" and not cfg.import_file)
    problems = task.problems("hard_train", cfg.problems, cfg.data_seed)
    key = {"model": str(cfg.model), "problems": [p.id for p in problems], "cap": cfg.cap, "per_round": cfg.per_round,
           "temperature": cfg.temperature, "top_p": cfg.top_p, "seed": cfg.seed, "tokenizer": tokenizer_fingerprint(tok),
           "import_file": None if cfg.import_file is None else str(cfg.import_file)}
    with deadlined(task, cfg.verifier_workers, cfg.verifier_timeout) as task:
        resume_from = _resumable_collection(cfg, key, task, tok)
        if resume_from is not None and resume_from[1]:  # finished before
            return json.loads(cfg.out.with_suffix(".json").read_text())
        if cfg.import_file is not None:
            traces, rejected = import_traces(cfg.import_file, task, tok, problems)
            summary = {"problems": len(problems), "solved": len(traces), "samples": 0, "flops": 0.0,
                       "imported_from": str(cfg.import_file), "rejected": rejected}
            save_traces(cfg.out, traces, {"collection": {"key": key, "finished": True}})
        else:
            if regime.supports_exact(task) and resume_from is None:
                regime_gate(model, cfg.model, tok, task, problems, cfg.cap, cfg.min_yield)
            engine = make_engine(cfg.engine, model, cfg.model, tok, cfg.seed)

            def save(col: Collection, finished: bool) -> None:
                save_traces(cfg.out, col.traces, {"collection": {
                    "key": key, "finished": finished, "rounds": col.rounds, "samples": col.samples,
                    "flops": col.flops, "ledger": col.ledger.to_dict()}})

            col = rejection_sample(engine, tok, task, problems, _params(task, cfg),
                                   source=str(cfg.model), cap=cfg.cap, per_round=cfg.per_round, seed=cfg.seed,
                                   resume_from=resume_from[0] if resume_from else None, on_round=save)
            save(col, True)
            summary = {**col.summary(), "ledger": col.ledger.to_dict(),
                       "verifier": dict(task.pool.counts)}
    write_json_atomic(cfg.out.with_suffix(".json"), summary)
    return summary


def regime_gate(model, model_dir: Path, tok, task, problems, cap: int, min_yield: float) -> dict:
    """Measure the base's regime exactly on the problems about to be sampled and stop (exit 2) before
    any sampling if it is outside its calibration window or the expected yield is below the floor."""
    if model is None:  # an engine such as vLLM loads its own weights; the measurement needs them here
        model, _ = load(model_dir)
    g = regime.gates(regime.measure(model, tok, task, problems, cap=cap), regime.base_target(model_dir), min_yield)
    regime.check_gates(g, str(model_dir))
    return g


def _resumable_collection(cfg: CollectConfig, key: dict, task, tok) -> tuple[Collection, bool] | None:
    """(the collection saved in --out, whether it finished), or None for a new store. Never overwrites."""
    if not cfg.out.exists():
        return None
    if not cfg.resume:
        raise BadInput(f"{cfg.out}: already exists and a trace store is never overwritten; pass --resume to "
                       "continue an interrupted collection, or choose another --out")
    state = read_meta(cfg.out).get("collection")
    if state is None:
        raise BadInput(f"{cfg.out}: not a store written by `prefixrl collect`; it cannot be resumed")
    if state["key"] != key:
        diff = [k for k in key if state["key"].get(k) != key[k]]
        raise BadInput(f"{cfg.out}: was collected with different settings ({', '.join(diff)}); resume with the "
                       "same command, or choose another --out")
    traces, rejected = load_traces(cfg.out, task, tok)
    if rejected:
        raise BadInput(f"{cfg.out}: {rejected[0]}")
    if "rounds" not in state:  # an import
        return Collection(traces, {}, {}), True
    return Collection(traces, state["samples"], state["flops"], Ledger.from_dict(state["ledger"]),
                      state["rounds"]), state["finished"]


@dataclass(frozen=True)
class PrefixesConfig(TaskOptions):
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

    def check(self) -> None:
        """Called by the CLI before anything is read or written."""
        check_cut_rule(self.k, self.low, self.high)


def run_prefixes(cfg: PrefixesConfig) -> dict:
    _, tok, task = load_policy(cfg.model, cfg.task_spec())
    with deadlined(task, cfg.verifier_workers, cfg.verifier_timeout) as task:
        traces, rejected = load_traces(cfg.traces, task, tok)
    prefixes = cut_prefixes(traces, task, tok, k=cfg.k, low=cfg.low, high=cfg.high, seed=cfg.seed)
    save_prefixes(cfg.out, prefixes)
    return {"traces": len(traces), "rejected": rejected, "prefixes": len(prefixes)}


@dataclass(frozen=True)
class TrainConfig(TaskOptions):
    """On-policy RL: PrefixRL, or one of the paper's baselines on the same trainer (docs/baselines.md)."""

    model: Path = Path("runs/base")
    """Starting policy folder (Hugging Face format)."""
    out: Path = Path("runs/train")
    """Run folder: metrics.jsonl, ledger.json, config.json, checkpoints, and the final policy in final/."""
    resume: bool = False
    """Continue the run in --out from its newest valid checkpoint, exactly as if it had never stopped."""
    preset: str | None = None
    """quick: the demo's quick configuration (base model, traces, prefixes built once in --preset-dir);
    replaces --model, --prefixes, --traces, --problems and --data-seed (the other flags still apply)."""
    preset_dir: Path | None = None
    """Where a preset's base model, traces and prefixes live (default runs/presets/NAME)."""
    log_to: tuple[str, ...] = ()
    """Also log to: tensorboard, wandb (offline unless WANDB_MODE is set), trackio. metrics.jsonl is always written."""
    deterministic: bool = False
    """torch.use_deterministic_algorithms: a resumed run ends bit-identical to an uninterrupted one."""
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
    eval_problems: int = RLSettings.eval_problems
    """Problems in each of those evaluations."""
    eval_samples: int = RLSettings.eval_samples
    """Samples per problem in each of those evaluations."""
    checkpoint_every: int = RLSettings.checkpoint_every
    """Full checkpoint (policy, optimizer, ledger, RNG) every this many steps, for --resume."""
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
    precision: str = RLSettings.precision
    """auto | bf16 | fp32. auto: bf16 autocast on a GPU with native bf16; float32 on every CPU, so the
    default computes alike on CPUs with and without native bf16 (bf16 opts in)."""
    compile: bool = RLSettings.compile
    """torch.compile the model's backbone for the training forward (first steps pay the compile)."""
    micro_batch_tokens: int = RLSettings.micro_batch_tokens
    """Padded tokens per training micro-batch; rows are length-bucketed and gradients accumulated."""
    seed: int = 0

    def check(self) -> None:
        """Called by the CLI before anything is read or written: inconsistent values fail here."""
        self.settings()
        for b in self.log_to:
            if b not in BACKENDS:
                raise BadInput(f"unknown tracker {b!r}; choose from {', '.join(BACKENDS)}")

    def settings(self, max_new_tokens: int = RLSettings.max_new_tokens) -> RLSettings:
        names = [f.name for f in fields(RLSettings) if hasattr(self, f.name) and f.name != "max_new_tokens"]
        return RLSettings(max_new_tokens=max_new_tokens, **{n: getattr(self, n) for n in names})


def run_train(cfg: TrainConfig) -> dict:
    if cfg.preset is not None:
        cfg = apply_preset(cfg)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    model, tok, task = load_policy(cfg.model, cfg.task_spec())
    problems = task.problems("hard_train", cfg.problems, cfg.data_seed)
    method = METHODS[cfg.method]
    uses_traces = cfg.method != "rl"
    settings = cfg.settings(max_new_tokens=_params(task, cfg).max_new_tokens)
    with deadlined(task, cfg.verifier_workers, cfg.verifier_timeout) as task:
        prefixes = load_prefixes(cfg.prefixes, task, tok) if method.mix != 0.0 and cfg.prefixes else []
        traces = []
        if (method.offpolicy or method.sft_first) and cfg.traces is not None:
            traces, rejected = load_traces(cfg.traces, task, tok)
            for msg in rejected:
                print(f"excluded: {msg}", file=sys.stderr)
        charged = 0.0
        if uses_traces and cfg.traces is not None and cfg.traces.with_suffix(".json").is_file():
            charged = float(json.loads(cfg.traces.with_suffix(".json").read_text())["flops"])
        cfg.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cfg.out / "config.json", json.loads(json.dumps(asdict(cfg), default=str)))
        tracker = Tracker(cfg.log_to, cfg.out, asdict(cfg), name=cfg.out.name) if cfg.log_to else None
        try:
            result = train_rl(model, tok, task, settings, problems, prefixes, cfg.out, charged_flops=charged,
                              traces=traces, resume=cfg.resume, tracker=tracker)
        finally:
            if tracker is not None:
                tracker.close()
        counts = task.pool.counts
        if counts["timeout"] or counts["error"]:
            print(f"verifier: {counts['timeout']} timeouts, {counts['error']} errors (reward 0) in "
                  f"{counts['items']} verifications", file=sys.stderr)
        return result


def apply_preset(cfg: TrainConfig) -> TrainConfig:
    """Build the preset's ingredients once (resumable, reused afterwards) and point the config at them."""
    if cfg.preset != "quick":
        raise BadInput(f"unknown preset {cfg.preset!r}; choose from: quick")
    folder = cfg.preset_dir or Path("runs/presets") / cfg.preset
    d = DemoConfig(quick=True).resolved()
    ensure_pretrained(PretrainConfig(out=folder / "base", steps=d.pretrain_steps, teacher_accuracy=d.teacher_accuracy,
                                     easy_max_steps=d.hard_steps, hard_steps=d.hard_steps, seed=d.seed), progress=False)
    traces = folder / "traces.parquet"
    if not traces.with_suffix(".json").is_file():
        run_collect(CollectConfig(model=folder / "base", out=traces, resume=True, problems=d.train_problems,
                                  data_seed=d.seed, cap=d.collect_cap, seed=d.seed))
    if not (folder / "prefixes.parquet").is_file():
        run_prefixes(PrefixesConfig(traces=traces, model=folder / "base", out=folder / "prefixes.parquet", seed=d.seed))
    return replace(cfg, model=folder / "base", traces=traces, prefixes=folder / "prefixes.parquet",
                   problems=d.train_problems, data_seed=d.seed)


@dataclass(frozen=True)
class EvalConfig(TaskOptions):
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
    engine: str = "builtin"
    """builtin (KV-cache sampler on the HF model) or vllm (token-id prompts, prefix caching; docs/vllm.md)."""

    def check(self) -> None:
        check_engine(self.engine)


def run_eval(cfg: EvalConfig) -> dict:
    if any(k > cfg.samples or k < 1 for k in cfg.k):
        raise BadInput(f"pass@k needs 1 <= k <= samples; got k={list(cfg.k)} with samples={cfg.samples}")
    model, tok, task = load_policy(cfg.model, cfg.task_spec(), weights=cfg.engine == "builtin")
    problems = task.problems(cfg.split, cfg.problems, cfg.data_seed)
    with deadlined(task, cfg.verifier_workers, cfg.verifier_timeout) as task:
        r = evaluate(make_engine(cfg.engine, model, cfg.model, tok, cfg.seed), tok, task, problems, cfg.samples,
                     _params(task, cfg), seed=cfg.seed, progress=True)
    res = {"split": cfg.split, "problems": len(problems), "samples": cfg.samples, "verdicts": r.verdicts,
           **{f"pass@{k}": r.pass_at(k) for k in cfg.k}}
    if cfg.out is not None:
        cfg.out.write_text(json.dumps(res, indent=2))
    return res


@dataclass(frozen=True)
class ExportConfig(TaskOptions):
    """Write the PrefixRL training pool (prefixed + unprefixed rows, prefix token ids included) for TRL or verl."""

    format: str = "trl"
    """trl (docs/trl.md) or verl (docs/verl.md)."""
    prefixes: Path = Path("runs/prefixes.parquet")
    """Prefix file from `prefixrl prefixes`."""
    model: Path = Path("runs/base")
    """Policy folder: its tokenizer decodes prefix_text, its prefixrl.json names the task."""
    out: Path = Path("runs/train_rows.parquet")
    """Parquet file to write."""
    problems: int = 64
    """Hard-train problems for the unprefixed rows (same as `collect`)."""
    data_seed: int = 0
    mix: float = RLSettings.mix
    """Share of prefixed rows in the pool (paper: 0.75; 1 = prefixrl-only)."""
    seed: int = 0
    data_source: str = "prefixrl"
    """verl: the data_source column (selects the reward function; docs/verl.md)."""
    ability: str = "math"
    """verl: the ability column."""

    def check(self) -> None:
        if self.format not in ("trl", "verl"):
            raise BadInput(f"unknown export format {self.format!r}; choose from: trl, verl")
        if not 0.0 <= self.mix <= 1.0:
            raise BadInput(f"mix must be in [0, 1], got {self.mix}")


def run_export(cfg: ExportConfig) -> dict:
    from prefixrl import export

    spec = task_spec_of(cfg.model, cfg.task_spec())
    _, tok, task = load_policy(cfg.model, spec)
    prefixes = load_prefixes(cfg.prefixes, task, tok) if cfg.mix > 0 else []
    rows = export.training_pool(prefixes, task.problems("hard_train", cfg.problems, cfg.data_seed), tok, cfg.mix, cfg.seed)
    if cfg.format == "trl":
        export.write_rows(cfg.out, export.trl_records(rows), export.TRL_SCHEMA)
    else:
        export.write_rows(cfg.out, export.verl_records(rows, cfg.data_source, cfg.ability, spec), export.VERL_SCHEMA)
    # Both frameworks cap the prompt length; prompt + prefix must fit (docs/trl.md, docs/verl.md).
    longest = max((len(render_prompt(tok, r.question)) + len(r.prefix_ids) for r in rows), default=0)
    return {"rows": len(rows), "prefixed": sum(r.kind == "prefixed" for r in rows), "max_prompt_tokens": longest}
