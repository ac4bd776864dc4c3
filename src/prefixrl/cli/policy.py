"""Loading a policy folder with its task, and the engine that samples from it: what every stage that
reads a model shares."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from prefixrl.data.prompt import Rendering, check_rendering, with_rendering
from prefixrl.data.tasks import get_task
from prefixrl.io.errors import BadInput
from prefixrl.rollout import limits
from prefixrl.rollout.device import of as device_of
from prefixrl.rollout.device import resolve as resolve_device
from prefixrl.rollout.engine import Sampler, SamplingParams
from prefixrl.rollout.model import load, load_tokenizer, model_folder, user_file
from prefixrl.rollout.precision import autocast


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


def load_policy(model_dir: Path, task_spec: dict | None = None, weights: bool = True, device: str = "cpu",
                rendering=None, allow_rerender: bool = False):
    """(model or None, tokenizer, task) of a folder from `model.model_folder`. weights=False: tokenizer
    and task only (stages that handle token ids, and engines such as vLLM that load the weights
    themselves). device: a `--device` value (`prefixrl.rollout.device.resolve`). The tokenizer renders
    prompts as `rendering` says (the command's flags), else as the folder's prefixrl.json records (a policy
    trained under a rendering keeps it); flags that differ from the record are refused unless allowed."""
    model_dir = model_folder(model_dir, weights)
    model, tok = load(model_dir, resolve_device(device)) if weights else (None, load_tokenizer(model_dir, weights=False))
    task = task_of(model_dir, task_spec)
    recorded = _meta(model_dir).get("rendering")
    system = task.system_prompt() if hasattr(task, "system_prompt") else None
    if system is not None:  # the dataset's own system turn: part of the rendering, checked with it
        base = rendering or (_recorded(recorded) if recorded is not None else Rendering())
        if base.system_prompt not in (None, system):
            raise BadInput(f"--system-prompt {base.system_prompt!r}: the dataset's questions carry their own system "
                           f"turn ({system!r}); give none, or the same")
        rendering = replace(base, system_prompt=system)
    if recorded is not None and rendering is not None:
        check_rendering(recorded, with_rendering(tok, rendering), f"{model_dir} (the policy)", allow_rerender)
    elif recorded is not None:
        rendering = _recorded(recorded)
    with_rendering(tok, rendering or Rendering())
    return model, tok, task


def _recorded(record: dict) -> Rendering:
    return Rendering(record["system_prompt"], record["instruction"], record["chat_template_kwargs"])


def _meta(model_dir: Path) -> dict:
    path = Path(model_dir) / "prefixrl.json"
    saved = user_file(path, "it", lambda: json.loads(path.read_text())) if path.is_file() else {}
    return saved if isinstance(saved, dict) else {}


def make_engine(kind: str, model, model_dir: Path, tok, seed: int = 0, vllm_options: dict | None = None):
    """builtin: `engine.Sampler` on the loaded HF model, on its device, in `--precision auto` (bf16
    autocast on a GPU that has it, float32 on every CPU); vllm: `vllm_engine.VLLMEngine` (docs/vllm.md) with
    `vllm_options` (tensor_parallel_size, gpu_memory_utilization, max_model_len, dtype) passed to vllm.LLM."""
    if kind == "builtin":
        return Sampler(model, tok.eos_token_id, tok.pad_token_id, autocast=autocast("auto", device_of(model)))
    if kind == "vllm":
        from prefixrl.rollout.vllm_engine import VLLMEngine

        return VLLMEngine(model_dir, seed=seed, **{k: v for k, v in (vllm_options or {}).items() if v is not None})
    raise BadInput(f"unknown engine {kind!r}; choose from: builtin, vllm")


def _params(task, cfg) -> SamplingParams:
    """Sampling settings of a stage; response length: --max-new-tokens, else the task's own bound."""
    length = cfg.max_new_tokens or task.max_response_tokens
    name = next(k for k in ("per_round", "samples") if hasattr(cfg, k))  # a problem's samples in one call
    limits.check_call(getattr(cfg, name), length, name)
    return SamplingParams(cfg.temperature, cfg.top_p, max_new_tokens=length)


def check_length(model, folder: Path, tok, problems, max_new_tokens: int, prefixed=()) -> None:
    """The longest prompt (+ prefix) + completion must fit the model's positions, or sampling would fail late:
    checked by every stage that samples, before it samples. `prefixed`: (problem, prefix ids) pairs. `model`
    None (vLLM loads the weights itself): the positions are read from the folder's config."""
    from prefixrl.data.prefixes import PrefixedPrompt

    if model is not None:
        config = model.config
    else:
        from transformers import AutoConfig

        config = user_file(Path(folder), "its config", lambda: AutoConfig.from_pretrained(folder))
    limit = getattr(config, "max_position_embeddings", None)
    if limit is None:
        return
    longest = max([len(PrefixedPrompt.of(tok, p).ids) for p in problems]
                  + [len(PrefixedPrompt.of(tok, p, ids).ids) for p, ids in prefixed], default=0)
    if longest + max_new_tokens > limit:
        raise BadInput(f"the longest prompt + prefix ({longest} tokens) + --max-new-tokens ({max_new_tokens}) exceeds "
                       f"the model's {limit} positions (max_position_embeddings); lower --max-new-tokens")
