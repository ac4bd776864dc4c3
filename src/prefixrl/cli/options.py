"""What every stage shares: the task options, and loading a policy folder with its task and engine."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from prefixrl.device import of as device_of
from prefixrl.device import resolve as resolve_device
from prefixrl.engine import Sampler, SamplingParams
from prefixrl.io.errors import BadInput
from prefixrl.model import load, load_tokenizer, model_folder, user_file
from prefixrl.precision import autocast
from prefixrl.tasks import get_task
from prefixrl.verifier import check_timeout


def task_spec_of(model_dir: Path, spec: dict | None = None) -> dict:
    """The task spec given on the command line, else the one in the model folder's prefixrl.json."""
    if spec is None:
        meta = Path(model_dir) / "prefixrl.json"
        if not meta.is_file():
            return {"name": "chain"}
        saved = user_file(meta, "it", lambda: json.loads(meta.read_text()))
        spec = saved.get("task") if isinstance(saved, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise BadInput(f"{meta}: key task: missing, or not an object with a name")
    return dict(spec)


def task_of(model_dir: Path, spec: dict | None = None):
    """The task named by `spec` (from the command line), else by the model folder's prefixrl.json."""
    spec = task_spec_of(model_dir, spec)
    try:
        return get_task(**spec)
    except TypeError as e:  # a key the task does not have
        raise BadInput(f"{Path(model_dir) / 'prefixrl.json'}: key task: {e}") from None


def load_policy(model_dir: Path, task_spec: dict | None = None, weights: bool = True, device: str = "cpu"):
    """(model or None, tokenizer, task) of a folder from `model.model_folder`. weights=False: tokenizer
    and task only (stages that handle token ids, and engines such as vLLM that load the weights
    themselves). device: a `--device` value (`prefixrl.device.resolve`)."""
    model_dir = model_folder(model_dir, weights)
    model, tok = load(model_dir, resolve_device(device)) if weights else (None, load_tokenizer(model_dir, weights=False))
    return model, tok, task_of(model_dir, task_spec)


def check_engine(kind: str) -> None:
    if kind not in ("builtin", "vllm"):
        raise BadInput(f"unknown engine {kind!r}; choose from: builtin, vllm")


def make_engine(kind: str, model, model_dir: Path, tok, seed: int = 0):
    """builtin: `engine.Sampler` on the loaded HF model, on its device, in `--precision auto` (bf16
    autocast on a GPU that has it, float32 on every CPU); vllm: `vllm_engine.VLLMEngine` (docs/vllm.md)."""
    if kind == "builtin":
        return Sampler(model, tok.eos_token_id, tok.pad_token_id, autocast=autocast("auto", device_of(model)))
    if kind == "vllm":
        from prefixrl.vllm_engine import VLLMEngine

        return VLLMEngine(model_dir, seed=seed)
    raise BadInput(f"unknown engine {kind!r}; choose from: builtin, vllm")


def check_numbers(cfg) -> None:
    """The rule every number of every command obeys, before its own checks and before anything is
    written: it is finite and >= 0 (counts, sizes, seeds, rates, budgets, deadlines: no setting of any
    command is negative). Nested configs (RLSettings) and tuples are walked too."""
    for f in dataclasses.fields(cfg):
        value, name = getattr(cfg, f.name), f.name
        if dataclasses.is_dataclass(value):
            check_numbers(value)
            continue
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, bool):
                continue
            if isinstance(v, float) and not math.isfinite(v):
                raise BadInput(f"{name} must be finite, got {v}")
            if isinstance(v, (int, float)) and v < 0:
                raise BadInput(f"{name} must be >= 0, got {v}")


def check_sampling(cfg) -> None:
    """A stage's sampling settings (temperature, top_p, max_new_tokens), checked like RLSettings' own."""
    if not (math.isfinite(cfg.temperature) and cfg.temperature > 0):
        raise BadInput(f"temperature must be finite and > 0, got {cfg.temperature}")
    if not 0 < cfg.top_p <= 1:
        raise BadInput(f"top_p must be in (0, 1], got {cfg.top_p}")
    if cfg.max_new_tokens is not None and cfg.max_new_tokens < 1:
        raise BadInput(f"max_new_tokens must be >= 1, got {cfg.max_new_tokens}")


def _params(task, cfg) -> SamplingParams:
    """Sampling settings of a stage; response length: --max-new-tokens, else the task's own bound."""
    length = cfg.max_new_tokens or task.max_response_tokens
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
    gym_instruction: str = "default"
    """reasoning-gym: the answer-format instruction that opens each question, a key of reasoning-gym's
    SYSTEM_PROMPTS (default, simple, direct, DeepSeekZero, chain_of_draft) or none."""
    verifier_workers: int = 2
    """Verifier worker processes (each verification runs in one, under a hard deadline)."""
    verifier_timeout: float = 10.0
    """Seconds per verification; past it the worker is replaced and the verdict is timeout (reward 0)."""

    def check(self) -> None:
        """The task options' numbers, before anything is read or written (subclasses call it first)."""
        check_timeout(self.verifier_timeout, self.verifier_workers)
        if self.gym_size < 1:
            raise BadInput(f"gym_size must be >= 1, got {self.gym_size}")

    def inputs(self) -> dict:
        """The task's own input files (for `outputs.claim`)."""
        return {"--task-file": self.task_file}

    def task_spec(self) -> dict | None:
        if self.task is None:
            return None
        if self.task == "math":
            if self.task_file is None:
                raise BadInput("--task math needs --task-file (JSONL, Parquet or a datasets folder)")
            return {"name": "math", "path": str(self.task_file), "question_field": self.question_field,
                    "answer_field": self.answer_field}
        if self.task == "reasoning-gym":
            return {"name": "reasoning-gym", "dataset": self.gym_dataset, "size": self.gym_size,
                    "instruction": self.gym_instruction}
        return {"name": self.task}


@dataclass(frozen=True)
class ModelOptions(TaskOptions):
    """The options of a stage that runs the model (collect, train, eval); stages that only handle token
    ids (prefixes, export) load no weights."""

    device: str = "auto"
    """Where the model runs: auto (a CUDA GPU if torch sees one, else the CPU), cpu, cuda or cuda:N."""

    def check(self) -> None:
        super().check()
        resolve_device(self.device)
