"""What every stage shares: the task options, and loading a policy folder with its task and engine."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from prefixrl.engine import Sampler, SamplingParams
from prefixrl.io.errors import BadInput
from prefixrl.model import load, load_tokenizer
from prefixrl.tasks import get_task


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
