"""One pipeline for every experiment (the demo, `bench paper`, `bench cross-family`, `train --preset`):
the base model, its traces, their prefixes and each method's run, each built once in a work folder and
reused when its key matches, so a killed experiment resumes piece by piece.

One key scheme: a piece is reused only if everything its result depends on is the same (for traces:
the sampler's weights, the problems, the cap, the seed and the sampling settings). The cost that
PrefixRL is charged for its traces travels inside the trace store, as the collection's FLOPs ledger
(`charged_flops`), never as a loose number.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from prefixrl.data.collect import Collection, rejection_sample
from prefixrl.data.prompt import tokenizer_fingerprint
from prefixrl.data.tasks.base import Problem
from prefixrl.data.traces import load_traces, save_traces
from prefixrl.embedded.config import PretrainConfig
from prefixrl.embedded.pretrain import ensure_pretrained
from prefixrl.io.errors import BadInput
from prefixrl.io.store import read_meta, write_json_atomic
from prefixrl.rl.settings import RLSettings
from prefixrl.rl.train import RunOptions, TrainingSet, result_settings, train_rl
from prefixrl.rollout.engine import Sampler, SamplingParams
from prefixrl.rollout.flops import Ledger
from prefixrl.rollout.model import load


def cached(path: Path, key: dict, compute):
    """A record reused when a previous (interrupted) run already computed it with the same key; otherwise
    computed and written atomically."""
    key = json.loads(json.dumps(key, default=str))
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return saved["record"]
    record = compute()
    write_json_atomic(path, {"key": key, "record": record})
    return record


# The embedded task's RL learning rate, per method (docs/regimes.md, pilot 2: each of prefixrl, rl and
# sft-rl ran at 3e-5, 1e-4 and 3e-4 at the demo's budget, seed 0, and got the lr whose final policy had
# the highest exact hard-heldout pass@1; the rule was written down before the runs). Methods not piloted
# take their family's: prefixrl-only PrefixRL's; offpolicy and luffy standard RL's, whose trainer they share.
PILOTED_LR = {"prefixrl": 3e-5, "rl": 3e-5, "sft-rl": 3e-5}  # each method's choice; at 3e-4 every one degraded
EMBEDDED_RL_LR = {**PILOTED_LR, "prefixrl-only": PILOTED_LR["prefixrl"], "offpolicy": PILOTED_LR["rl"],
                  "luffy": PILOTED_LR["rl"]}


def embedded_lr(method: str, override: float | None = None) -> float:
    """The RL lr a method trains at on the embedded task: `override` (--rl-lr) if given, else its own."""
    return EMBEDDED_RL_LR[method] if override is None else override


def base_config(folder: Path, cfg, **over) -> PretrainConfig:
    """The base a demo- or bench-shaped config (`pretrain_steps` and the `TaskShape` fields) pretrains into
    `folder`: easy chains up to the hard length."""
    return PretrainConfig(out=folder, steps=cfg.pretrain_steps, teacher_accuracy=cfg.teacher_accuracy,
                          easy_max_steps=cfg.hard_steps, hard_steps=cfg.hard_steps, rare_steps=cfg.rare_steps,
                          classes=cfg.classes, recurrences=cfg.recurrences, recur_operands=cfg.recur_operands,
                          copy_rate=cfg.copy_rate, **over)


def ensure_base(cfg: PretrainConfig, progress: bool = True, device="cpu"):
    """The calibrated base model of `cfg` (pretrained unless `cfg.out` already holds it), loaded on `device`."""
    ensure_pretrained(cfg, progress=progress)
    return load(cfg.out, device)


def weights_digest(model_dir: Path) -> str:
    """Identity of a model folder's weights: a re-pretrained base never reuses the old base's traces."""
    h = hashlib.sha256()
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def collection_key(model_dir: Path, tok, problems: list[Problem], params: SamplingParams, cap: int, per_round: int,
                   seed: int) -> dict:
    return {"model": str(model_dir), "weights": weights_digest(model_dir), "problems": [p.id for p in problems],
            "cap": cap, "per_round": per_round, "temperature": params.temperature, "top_p": params.top_p,
            "max_new_tokens": params.max_new_tokens, "seed": seed, "tokenizer": tokenizer_fingerprint(tok)}


def _same_collection(stored: dict | None, key: dict) -> bool:
    """Whether a stored collection was made as `key` asks. The model is identified by its weights and
    tokenizer, not by where its folder lies ("model" stays in the key as provenance only), so a copied or
    moved work folder reuses its collections, as a copied base is reused (pretrain.holds_base)."""
    def what(k):
        return {f: v for f, v in json.loads(json.dumps(k)).items() if f != "model"}
    return stored is not None and what(stored) == what(key)


def collect_traces(store: Path, model_dir: Path, task, problems: list[Problem], params: SamplingParams, cap: int,
                   seed: int, progress: bool = True, per_round: int = 32, model=None, tok=None,
                   source: str | None = None) -> Collection:
    """Rejection sampling with the model in `model_dir` (paper §3.2), or the same collection read back
    from `store` when it was made with the same key. The store carries the collection's ledger."""
    if model is None:
        model, tok = load(model_dir)
    key = {**collection_key(model_dir, tok, problems, params, cap, per_round, seed), "source": source}
    if store.is_file() and _same_collection(read_meta(store).get("collection", {}).get("key"), key):
        return read_collection(store, task, tok)
    engine = Sampler(model, tok.eos_token_id, tok.pad_token_id)
    col = rejection_sample(engine, tok, task, problems, params, source=source or str(model_dir), cap=cap, per_round=per_round,
                           seed=seed, progress=progress)
    save_traces(store, col.traces, {"collection": {"key": key, "finished": True,
                                                   "samples": col.samples, "flops": col.flops,
                                                   "ledger": col.ledger.to_dict()}}, tok, task)
    return col


def read_collection(store: Path, task, tok) -> Collection:
    """A finished collection from its trace store: the traces (re-verified) and what they cost."""
    state = read_meta(store).get("collection") or {}
    traces, rejected = load_traces(store, task, tok)
    if rejected:
        raise BadInput(f"{store}: {len(rejected)} stored trace(s) fail re-verification; delete it and rerun")
    return Collection(traces, state.get("samples", {}), state.get("flops", {}),
                      Ledger.from_dict(state.get("ledger", {})))


def run_method(out: Path, base_dir: Path, tok, task, settings: RLSettings, train_set: list[Problem], prefixes,
               charged: float, traces=None, eval_heldout=None, progress: bool = True, device="cpu"):
    """One method from the base model: (policy, train_rl's result). Resumes a run killed in `out`, and
    restarts one that was made with other settings (experiments own their work folders)."""
    policy, _ = load(base_dir, device)
    data = TrainingSet(task, train_set, prefixes, traces or [], charged_flops=charged, eval_heldout=eval_heldout)
    result = train_rl(policy, tok, data, settings, out, RunOptions(progress, resume=True, restart_if_changed=True))
    return policy, result


def record_key(settings: RLSettings, charged: float, **extra) -> dict:
    """The key of a method's cached record: what its result depends on."""
    return {"settings": result_settings(settings), "charged": charged, **extra}


def mechanism(steps: list[dict], settings: RLSettings, on_policy_flops: float) -> dict:
    """What the paper's mechanism moves, from a run's step log: the share of groups with signal (a group
    whose rewards are all equal trains nothing, §3.6) and the correct on-policy samples seen per TFLOP of
    the run's own compute (what the charged traces are not)."""
    per_step = settings.prompts_per_step * settings.samples_per_prompt
    correct = sum((s["reward_unprefixed"] or 0.0) * s["samples_unprefixed"]
                  + (s["reward_prefixed"] or 0.0) * (per_step - s["samples_unprefixed"]) for s in steps)
    share = sum(1.0 - s["zero_adv_groups"] for s in steps) / len(steps) if steps else None
    return {"signal_share": share, "correct_samples": correct,
            "correct_per_tflop": correct / (on_policy_flops / 1e12) if on_policy_flops > 0 else None}
