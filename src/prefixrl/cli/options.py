"""Every stage's options, as the flat dataclasses whose field docstrings are `prefixrl COMMAND --help`:
the task options all stages share, the model options of stages that run the model, and the configs of
collect, prefixes, eval, export and train (`RLSettings` composed in once).

This module imports no torch, transformers or pyarrow: a check imports what it needs when it runs, so
that --help answers at once (tests/cli/test_cli.py). Loading a policy folder is `prefixrl.cli.policy`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import tyro

from prefixrl.io.errors import BadInput
from prefixrl.io.outputs import Output
from prefixrl.io.tracking import BACKENDS
from prefixrl.rl.settings import RLSettings

Count = int | Literal["all", "auto"]  # --problems


def problem_count(problems: Count, task_name: str, generated: int) -> int | None:
    """How many problems a stage takes (None: all of the split): a number; `all`; or `auto`, the default,
    which is all of a dataset's problems and `generated` of the built-in chain task, which has no end."""
    if problems == "auto":
        return generated if task_name == "chain" else None
    if problems == "all":
        if task_name == "chain":
            raise BadInput("--problems all: the chain task generates problems without end; give a number")
        return None
    return problems


def check_count(problems: Count) -> None:
    if isinstance(problems, int) and problems < 1:
        raise BadInput(f"problems must be >= 1, got {problems}")


def check_engine(kind: str) -> None:
    import importlib.util

    if kind not in ("builtin", "vllm"):
        raise BadInput(f"unknown engine {kind!r}; choose from: builtin, vllm")
    if kind == "vllm" and importlib.util.find_spec("vllm") is None:  # found, not imported: that takes seconds
        raise BadInput("--engine vllm: vLLM is not installed in this environment; install it beside prefixrl "
                       "(docs/vllm.md gives the versions each path needs), or use --engine builtin")


def check_numbers(cfg) -> None:
    """The rules every number of every command obeys, before its own checks and before anything is
    written: it is finite and >= 0 (counts, sizes, seeds, rates, budgets, deadlines: no setting of any
    command is negative), an integer fits 64 bits, and a number of a kind with a range of its own
    (seeds, temperatures, top-p, samples of one problem: `prefixrl.rollout.limits`) lies in it, whatever
    the command. Nested configs (RLSettings) and tuples are walked too."""
    from prefixrl.rollout import limits

    for f in dataclasses.fields(cfg):
        value, name = getattr(cfg, f.name), f.name
        if dataclasses.is_dataclass(value):
            check_numbers(value)
            continue
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if isinstance(v, float) and not math.isfinite(v):
                raise BadInput(f"{name} must be finite, got {v}")
            if v < 0:
                raise BadInput(f"{name} must be >= 0, got {v}")
            if isinstance(v, int):
                limits.check_int(v, name)
            if name in limits.SEEDS:
                limits.check_seed(v, name)
            elif name == "temperature":
                limits.check_temperature(v)
            elif name == "top_p":
                limits.check_top_p(v)
            elif name in limits.SAMPLE_COUNTS:
                limits.check_samples(v, name)


def parse_shard(spec: str) -> tuple[int, int]:
    """`--shard I/N` as (I, N): shard I of N, counted from 0."""
    m = re.fullmatch(r"(\d+)/(\d+)", spec.strip())
    if m is None or not 0 <= int(m[1]) < int(m[2]) <= 2**20:
        raise BadInput(f"shard must be I/N with 0 <= I < N (shard I of N, from 0), got {spec!r}")
    return int(m[1]), int(m[2])


def check_sampling(cfg) -> None:
    """A stage's sampling settings (temperature, top_p, max_new_tokens), checked like RLSettings' own."""
    from prefixrl.rollout import limits

    limits.check_temperature(cfg.temperature)
    limits.check_top_p(cfg.top_p)
    if cfg.max_new_tokens is not None and cfg.max_new_tokens < 1:
        raise BadInput(f"max_new_tokens must be >= 1, got {cfg.max_new_tokens}")


@dataclass(frozen=True)
class TaskOptions:
    task: str | None = None
    """chain, math or reasoning-gym (default: the task recorded in the model folder's prefixrl.json)."""
    dataset: Annotated[str | None, tyro.conf.arg(aliases=("--task-file",))] = None
    """math: the problems: a local .jsonl/.json/.parquet/.csv file, a folder saved with save_to_disk, or a
    Hugging Face Hub id (read through `datasets`, from the local cache when HF_HUB_OFFLINE=1)."""
    subset: str | None = None
    """math: the Hub dataset's configuration (load_dataset's second argument)."""
    dataset_split: str | None = None
    """math: the dataset's own split to read (default: train, or a folder's only split); hard_train and
    hard_heldout are then cut from it by a hash of each question."""
    question_field: str = "problem"
    """math: the question field, a dotted path (e.g. prompt); a chat-message list's last user turn is the
    question."""
    answer_field: str = "answer"
    """math: the reference-answer field, a dotted path (e.g. reward_model.ground_truth)."""
    id_field: str | None = None
    """math: a field that names each problem (default: a hash of the question text, so filtering or
    shuffling the dataset never moves an id)."""
    answer_format: str = "boxed"
    """math: how a response states its final answer, declared, never guessed: boxed (the final \\boxed{…}),
    answer-line (the last line starting `Answer:`, DAPO) or gsm8k (the last line starting `####`). The gold
    answer is read the same way when the answer field holds the marker."""
    gym_dataset: str = "basic_arithmetic"
    """reasoning-gym: the dataset name (generated locally)."""
    gym_size: int = 1000
    """reasoning-gym: problems generated (split 90/10 into hard_train / hard_heldout)."""
    gym_instruction: str = "default"
    """reasoning-gym: the answer-format instruction that opens each question, a key of reasoning-gym's
    SYSTEM_PROMPTS (default, simple, direct, DeepSeekZero, chain_of_draft) or none."""
    verifier_workers: int = 2
    """Verifier worker processes (each verification runs in one, under a hard deadline)."""
    verifier_timeout: float = 10.0
    """Seconds per verification; past it the worker is replaced and the verdict is timeout (reward 0)."""

    def check(self) -> None:
        """The task options' numbers, before anything is read or written (subclasses call it first)."""
        from prefixrl.data.verifier import check_timeout

        check_timeout(self.verifier_timeout, self.verifier_workers)
        from prefixrl.data.tasks.answers import ANSWER_FORMATS

        if self.answer_format not in ANSWER_FORMATS:
            raise BadInput(f"unknown answer format {self.answer_format!r}; choose from {', '.join(ANSWER_FORMATS)}")
        if self.gym_size < 1:
            raise BadInput(f"gym_size must be >= 1, got {self.gym_size}")

    def inputs(self) -> dict:
        """The task's own input files (for `outputs.claim`)."""
        local = self.dataset is not None and Path(self.dataset).exists()
        return {"--dataset": Path(self.dataset) if local else None}

    def task_spec(self) -> dict | None:
        if self.task is None:
            return None
        if self.task == "math":
            if self.dataset is None:
                raise BadInput("--task math needs --dataset (a local file or folder, or a Hub id)")
            spec = {"name": "math", "path": str(self.dataset), "question_field": self.question_field,
                    "answer_field": self.answer_field}
            optional = {"subset": self.subset, "dataset_split": self.dataset_split, "id_field": self.id_field,
                        "answer_format": None if self.answer_format == "boxed" else self.answer_format}
            return {**spec, **{k: v for k, v in optional.items() if v is not None}}
        if self.task == "reasoning-gym":
            return {"name": "reasoning-gym", "dataset": self.gym_dataset, "size": self.gym_size,
                    "instruction": self.gym_instruction}
        return {"name": self.task}


@dataclass(frozen=True)
class StageOptions(TaskOptions):
    """The options of a stage that renders prompts (every stage but pretrain): the task, and how a question
    becomes a prompt (`prefixrl.data.prompt.Rendering`), the same from collection to training."""

    system_prompt: str | None = None
    """A system turn before every question (default: none, or the one the policy folder records)."""
    instruction: str = "auto"
    """The user turn, a template with {question} where the problem's text goes (literal braces doubled). auto:
    for --task math, a line that asks for the declared --answer-format (`prefixrl.data.tasks.answers.INSTRUCTIONS`);
    otherwise, or '{question}', the question as it is (a trained policy's recorded template applies then)."""
    chat_template_kwargs: str = "{}"
    """JSON object passed to the chat template, e.g. '{"enable_thinking": false}' for Qwen3."""
    allow_rerender: bool = False
    """Use traces, prefixes or a policy whose prompts were rendered otherwise (another system prompt,
    instruction, template or its arguments): prompts are rendered anew around the stored token ids."""

    def rendering(self):
        """The rendering the flags ask for (`prefixrl.data.prompt.Rendering`), or None when they ask for none
        (the policy folder's recorded one, if any, then applies)."""
        import json

        from prefixrl.data.prompt import Rendering

        try:
            kwargs = json.loads(self.chat_template_kwargs)
        except json.JSONDecodeError as e:
            raise BadInput(f"--chat-template-kwargs: not JSON ({e.msg})") from None
        if not isinstance(kwargs, dict):
            raise BadInput("--chat-template-kwargs: expected a JSON object, e.g. '{\"enable_thinking\": false}'")
        instruction = self.instruction
        if instruction == "auto":
            from prefixrl.data.tasks.answers import INSTRUCTIONS

            instruction = INSTRUCTIONS.get(self.answer_format, "{question}") if self.task == "math" else "{question}"
        r = Rendering(self.system_prompt, instruction, kwargs)
        return None if r.plain else r

    def check(self) -> None:
        super().check()
        self.rendering()


@dataclass(frozen=True)
class ModelOptions(StageOptions):
    """The options of a stage that runs the model (collect, train, eval); stages that only handle token
    ids (prefixes, export) load no weights."""

    device: str = "auto"
    """Where the model runs: auto (a CUDA GPU if torch sees one, else the CPU), cpu, cuda or cuda:N."""

    def check(self) -> None:
        super().check()
        from prefixrl.rollout.device import resolve

        resolve(self.device)


@dataclass(frozen=True)
class EngineOptions(ModelOptions):
    """The options of a stage that samples with an engine of its choice (collect, select, eval): the engine,
    and how it samples."""

    engine: str = "builtin"
    """builtin (KV-cache sampler on the HF model) or vllm (token-id prompts, prefix caching; docs/vllm.md)."""
    tensor_parallel_size: int = 1
    """--engine vllm: GPUs one model is split across (vLLM's tensor_parallel_size)."""
    gpu_memory_utilization: float = 0.9
    """--engine vllm: the share of each GPU's memory vLLM may take for weights and KV cache."""
    max_model_len: int | None = None
    """--engine vllm: the longest prompt + response vLLM plans its KV cache for (default: the model's)."""
    dtype: str = "auto"
    """--engine vllm: auto (the model's), bfloat16, float16 or float32."""
    enforce_eager: bool = False
    """--engine vllm: no torch.compile or CUDA graphs: starts in seconds instead of about a minute on a CPU
    (measured on SmolLM2-135M), for short runs and debugging; long collections want the compiled default."""

    temperature: float = 1.0
    """Sampling temperature (> 0; 1 samples the policy as it is, the paper's setting)."""
    top_p: float = 1.0
    """Nucleus sampling: sample only from the smallest set of tokens holding this much probability (1 = off)."""
    max_new_tokens: int | None = None
    """Longest response sampled (default: the task's bound; chain: 2 per step + 4, others 1024)."""

    def check(self) -> None:
        super().check()
        check_engine(self.engine)
        if self.tensor_parallel_size < 1:
            raise BadInput(f"tensor_parallel_size must be >= 1, got {self.tensor_parallel_size}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise BadInput(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise BadInput(f"max_model_len must be >= 1, got {self.max_model_len}")
        if self.dtype not in ("auto", "bfloat16", "float16", "float32"):
            raise BadInput(f"unknown dtype {self.dtype!r}; choose from auto, bfloat16, float16, float32")
        check_sampling(self)

    def engine_options(self) -> dict:
        """vLLM's own settings (passed to vllm.LLM as they are; the built-in engine takes none)."""
        return {"tensor_parallel_size": self.tensor_parallel_size, "gpu_memory_utilization": self.gpu_memory_utilization,
                "max_model_len": self.max_model_len, "dtype": self.dtype, "enforce_eager": self.enforce_eager}


@dataclass(frozen=True)
class CollectConfig(EngineOptions):
    """Rejection sampling with the base model: one verified-correct trace per hard-train problem."""

    resume_hint = "rerun the same command with --resume to continue the collection"  # not a field
    model: Path = Path("runs/base")
    """Base model folder (the sampler of rejection sampling)."""
    out: Path = Path("runs/traces.parquet")
    """Trace store to write (saved after every request of --chunk-size problems); a summary with the FLOPs
    spent goes next to it as .json."""
    resume: bool = False
    """Continue an interrupted collection in --out: solved problems are not sampled again, nothing is lost."""
    problems: Count = "auto"
    """How many hard-train problems: a number, all, or auto (all of a dataset's problems; 64 of the chain task)."""
    generated: ClassVar[int] = 64  # --problems auto on the chain task
    data_seed: int = 0
    """Seed of the problem set (use the same one for `train`)."""
    cap: int = 1024
    """Most samples drawn per problem."""
    per_round: int = 32
    """Samples per unsolved problem per round."""
    chunk_size: int = 64
    """Problems per engine request; the store is saved after each, so a kill loses at most one request.
    What a problem draws does not depend on it (each request's seed is (--seed, problem id, attempt))."""
    shard: str | None = None
    """I/N: collect only shard I (0 .. N-1) of the problems, every N-th from the I-th, to merge later with
    the other shards' stores (`prefixrl merge`); the merge equals the unsharded collection."""
    seed: int = 0
    """Sampling seed."""
    import_file: Path | None = None
    """Instead of sampling, import traces made elsewhere: JSONL of {"problem_id", "trace"}."""
    min_yield: float = 0.25
    """Refuse to sample when the share of problems rejection sampling is expected to solve at --cap,
    measured exactly before any sampling (built-in tasks), is below this; 0 turns the gate off."""

    def check(self) -> None:
        super().check()
        if not 0.0 <= self.min_yield <= 1.0:
            raise BadInput(f"min_yield must be in [0, 1], got {self.min_yield}")
        check_count(self.problems)
        for name in ("cap", "per_round", "chunk_size"):
            if getattr(self, name) < 1:
                raise BadInput(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.shard is not None:
            parse_shard(self.shard)
        if self.shard is not None and self.import_file is not None:
            raise BadInput("--shard splits a sampled collection; an --import-file is imported whole")

    def outputs(self) -> list[Output]:
        existing = "resume" if self.resume else "refuse"
        return [Output(self.out, "--out", existing=existing),
                Output(self.out.with_suffix(".json"), "--out's summary (.json)", existing=existing)]


@dataclass(frozen=True)
class PrefixesConfig(StageOptions):
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

    overwrite: bool = False
    """Replace an existing --out (never one of the inputs)."""

    def check(self) -> None:
        """Called by the CLI before anything is read or written."""
        super().check()
        from prefixrl.data.prefixes import check_cut_rule

        check_cut_rule(self.k, self.low, self.high)


@dataclass(frozen=True)
class EvalConfig(EngineOptions):
    """Unbiased pass@k of a policy on unprefixed problems."""

    model: Path = Path("runs/base")
    """Policy folder to evaluate."""
    split: str = "hard_heldout"
    """easy, hard_train or hard_heldout (always unprefixed)."""
    problems: Count = "auto"
    """How many problems of --split: a number, all, or auto (all of a dataset's problems; 128 of the chain task)."""
    generated: ClassVar[int] = 128  # --problems auto on the chain task
    data_seed: int = 0
    samples: int = 64
    """Samples per problem (n); every k must be <= n."""
    k: tuple[int, ...] = (1, 8, 64)
    """pass@k values to report."""
    seed: int = 0
    out: Path | None = None
    """Optional JSON file for the results."""
    per_problem: Path | None = None
    """Also write one JSON line per problem (id, samples, correct, pass@k for each --k) to this file (with
    --fractions: one per problem and fraction)."""
    fractions: tuple[float, ...] = ()
    """Success against prefix length, per problem (the paper's Fig. 3): for every trace in --traces, pass@k
    after its first f of tokens for each f here (each cut moved back before the final answer), e.g. 0 0.2
    0.4 0.6 0.8; shows where a trace's strategy-revealing state lies before training."""
    traces: Path | None = None
    """With --fractions: the trace store whose traces are cut."""
    plot: Path | None = None
    """With --fractions: a PNG of pass@1 against the fraction, one line per problem and their mean."""

    overwrite: bool = False
    """Replace an existing --out or --per-problem (never one of the inputs)."""

    def check(self) -> None:
        super().check()
        check_count(self.problems)
        for name in ("samples",):
            if getattr(self, name) < 1:
                raise BadInput(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.fractions and self.traces is None:
            raise BadInput("--fractions cuts traces: give the trace store with --traces")
        if any(not (math.isfinite(f) and 0 <= f < 1) for f in self.fractions):
            raise BadInput(f"fractions must be in [0, 1), got {list(self.fractions)}")
        if any(k > self.samples or k < 1 for k in self.k):
            raise BadInput(f"pass@k needs 1 <= k <= samples; got k={list(self.k)} with samples={self.samples}")


@dataclass(frozen=True)
class ExportConfig(StageOptions):
    """Write the PrefixRL training pool (prefixed + unprefixed rows, prefix token ids included) for TRL or verl."""

    format: str = "trl"
    """trl (docs/trl.md) or verl (docs/verl.md)."""
    prefixes: Path = Path("runs/prefixes.parquet")
    """Prefix file from `prefixrl prefixes`."""
    model: Path = Path("runs/base")
    """Policy folder: its tokenizer decodes prefix_text, its prefixrl.json names the task."""
    out: Path = Path("runs/train_rows.parquet")
    """Parquet file to write."""
    problems: Count = "auto"
    """How many hard-train problems for the unprefixed rows (the same as `collect`): a number, all, or auto (all of a dataset's problems; 64 of the chain task)."""
    generated: ClassVar[int] = 64  # --problems auto on the chain task
    data_seed: int = 0
    mix: float = RLSettings.mix
    """Share of prefixed rows in the pool (paper: 0.75; 1 = prefixrl-only)."""
    prefixed_samples: int | None = None
    """trl: of each prefixed row's group (TRL's --num_generations), how many samples carry the prefix; the
    rest are drawn from its plain problem, one baseline over the group (as `train --prefixed-samples`).
    Default: all, the paper's. Not available for verl (docs/verl.md)."""
    seed: int = 0
    data_source: str = "prefixrl"
    """verl: the data_source column (selects the reward function; docs/verl.md)."""
    ability: str = "math"
    """verl: the ability column."""
    ladder_rungs: int = 0
    """Instead of the paper's cuts in --prefixes, every rung of each trace's ladder (no prefix, then cuts at
    1/R … (R − 1)/R of its tokens, as `--prefix-schedule adaptive` uses), read from --traces, plus one plain
    row per problem without a trace; --mix does not apply (the sampler that reads them decides). 0: off."""
    traces: Path = Path("runs/traces.parquet")
    """--ladder-rungs: the trace store the ladders are cut from."""
    max_prompt_tokens: int | None = None
    """Drop (and count) rows whose rendered prompt plus prefix is longer than this: verl's
    data.max_prompt_length, which refuses longer ones mid-run; for TRL (whose GRPOConfig has no prompt limit),
    the model's context, or vllm_max_model_length, minus max_completion_length. Default: keep every row and
    report the longest."""

    overwrite: bool = False
    """Replace an existing --out (never one of the inputs)."""

    def check(self) -> None:
        super().check()
        if self.format not in ("trl", "verl"):
            raise BadInput(f"unknown export format {self.format!r}; choose from: trl, verl")
        if not 0.0 <= self.mix <= 1.0:
            raise BadInput(f"mix must be in [0, 1], got {self.mix}")
        check_count(self.problems)
        if self.ladder_rungs == 1:
            raise BadInput("ladder_rungs must be 0 (off) or >= 2 (no prefix and one cut)")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise BadInput(f"max_prompt_tokens must be >= 1, got {self.max_prompt_tokens}")
        if self.prefixed_samples is not None and self.prefixed_samples < 1:
            raise BadInput(f"prefixed_samples must be >= 1, got {self.prefixed_samples}")
        if self.prefixed_samples is not None and self.format == "verl":
            raise BadInput("--prefixed-samples: verl's agent loop is not told a sample's place in its group, so "
                           "the rows cannot ask for M prefixed samples of n there (docs/verl.md); use --format trl")


@dataclass(frozen=True)
class TrainConfig(ModelOptions):
    """On-policy RL: PrefixRL, or one of the paper's baselines on the same trainer (docs/baselines.md)."""

    resume_hint = "rerun the same command with --resume to continue from the last checkpoint"  # not a field
    model: Path = Path("runs/base")
    """Starting policy folder (Hugging Face format)."""
    out: Path = Path("runs/train")
    """Run folder: metrics.jsonl, ledger.json, config.json, checkpoints, and the final policy in final/."""
    resume: bool = False
    """Continue the run in --out from its newest valid checkpoint, exactly as if it had never stopped."""
    log_to: tuple[str, ...] = ()
    """Also log to: tensorboard, wandb (offline unless WANDB_MODE is set), trackio. metrics.jsonl is always written."""
    deterministic: bool = False
    """torch.use_deterministic_algorithms: a resumed run ends bit-identical to an uninterrupted one."""
    prefixes: Path | None = Path("runs/prefixes.parquet")
    """Prefix file from `prefixrl prefixes` (not needed by --method rl)."""
    traces: Path | None = Path("runs/traces.parquet")
    """Trace store whose collection FLOPs are charged to methods that use it."""
    problems: Count = "auto"
    """How many hard-train problems (the same as `collect`): a number, all, or auto (all of a dataset's problems; 64 of the chain task)."""
    generated: ClassVar[int] = 64  # --problems auto on the chain task
    data_seed: int = 0
    rl: Annotated[RLSettings, tyro.conf.OmitArgPrefixes] = field(default_factory=RLSettings)
    """The trainer's settings (`prefixrl.rl.settings.RLSettings`): flags without a prefix, e.g. --lr, --steps."""

    def check(self) -> None:
        """Called by the CLI before anything is read or written: inconsistent values fail here."""
        super().check()
        self.rl.check()
        check_count(self.problems)
        for b in self.log_to:
            if b not in BACKENDS:
                raise BadInput(f"unknown tracker {b!r}; choose from {', '.join(BACKENDS)}")


@dataclass(frozen=True)
class MergeConfig:
    """Join the trace stores of a sharded collection (`collect --shard I/N`) into the unsharded one."""

    shards: tyro.conf.Positional[tuple[Path, ...]] = ()
    """The N shard stores, in any order: every shard of one collection, each finished."""
    out: Path = Path("runs/traces.parquet")
    """Trace store to write, as `collect` would have without --shard; its summary goes next to it as .json."""

    def check(self) -> None:
        if not self.shards:
            raise BadInput("merge needs the shard stores: prefixrl merge SHARD [SHARD ...] --out FILE")

    def outputs(self) -> list[Output]:
        return [Output(self.out, "--out"), Output(self.out.with_suffix(".json"), "--out's summary (.json)")]


@dataclass(frozen=True)
class PlotConfig:
    """The curves of one or more training runs in one PNG (accuracy against FLOPs, per-step reward)."""

    runs: tyro.conf.Positional[tuple[Path, ...]] = ()
    """Run folders of `prefixrl train` (each holds metrics.jsonl)."""
    out: Path = Path("runs/plot.png")
    """The PNG to write."""
    overwrite: bool = False
    """Replace an existing --out (never one of the inputs)."""

    def check(self) -> None:
        if not self.runs:
            raise BadInput("plot needs at least one run folder: prefixrl plot RUN [RUN ...]")


@dataclass(frozen=True)
class SelectConfig(EngineOptions):
    """The paper's hard set: sample each problem up to --budget times, stop it at its first verified success,
    and keep the problems that never succeed (the paper: no success in 512)."""

    resume_hint = "rerun the same command with --resume to continue the selection"  # not a field
    model: Path = Path("runs/base")
    """The base policy whose failures define "hard" (a folder or a Hub id)."""
    out: Path = Path("runs/select")
    """Folder: selected.jsonl (the kept problems, in the dataset's own columns plus the measured figures),
    per_problem.jsonl (every problem's figures), sampling.parquet (resumable state), summary.json."""
    resume: bool = False
    """Continue an interrupted selection in --out: no problem is sampled again."""
    split: str = "hard_train"
    """The split the hard set is selected from."""
    problems: Count = "auto"
    """How many problems: a number, all, or auto (all of a dataset's problems; 64 of the chain task)."""
    generated: ClassVar[int] = 64  # --problems auto on the chain task
    data_seed: int = 0
    budget: int = 512
    """Most samples per problem (k); a problem with no verified success in k is selected as hard."""
    per_round: int = 64
    """Samples per open problem per round (a solved problem stops at the end of its round)."""
    chunk_size: int = 64
    """Problems per engine request; the state is saved after each, so a kill loses at most one request."""
    seed: int = 0

    def check(self) -> None:
        super().check()
        check_count(self.problems)
        from prefixrl.rollout.limits import check_samples

        check_samples(self.budget, "budget")  # (per_round: by check_numbers, as in collect)
        if self.chunk_size < 1:
            raise BadInput(f"chunk_size must be >= 1, got {self.chunk_size}")
