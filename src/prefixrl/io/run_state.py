"""A training run's folder: its key, its resumable state, and the guard that it is never silently reused.

A run is a pure function of its key (settings, charged offline FLOPs, a hash of its data): batches and
sampling seeds are functions of (seed, step), so resuming needs the parameters, the optimizer, the
ledger, the eval curve, the non-finite skip count, the pool's state (adaptive ladders, harvested traces)
and torch's RNG state, and nothing else.

Its log, metrics.jsonl, is read again by later results (the regime gates, the benches' mechanism figures,
`prefixrl plot`), so it is sealed like the rest: each checkpoint stores the log's SHA-256 as of that step,
and result.json the finished log's; `read_log` checks a finished run's log against it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from prefixrl.io.checkpoint import checkpoints, discard, latest_checkpoint, load_checkpoint, save_checkpoint
from prefixrl.io.errors import BadInput
from prefixrl.io.store import atomic_write, read_sealed_json, write_json_atomic, write_sealed_json


def run_key(settings: dict, charged_flops: float, data_ids: list[str]) -> dict:
    """What a run's result is a function of; a resumed run must match it."""
    return {"settings": settings, "charged_flops": charged_flops,
            "data": hashlib.sha256("\n".join(data_ids).encode()).hexdigest()[:16]}


@dataclass
class RunState:
    """Everything a checkpoint restores besides parameters and optimizer state."""

    key: dict
    step: int = 0  # last completed step
    skips: int = 0  # consecutive non-finite steps
    curve: list[dict] = field(default_factory=list)
    ledger: dict = field(default_factory=dict)
    logp_base: dict = field(default_factory=dict)  # offpolicy: log π₀ of every trace token
    before_rl: dict = field(default_factory=dict)  # sft-rl: what SFT chose and measured (`sft.SFTChoice`)
    pool: dict = field(default_factory=dict)  # adaptive ladders and harvested traces (`prefixrl.rl.pool.Pool.state`)


def begin(out: Path, key: dict, resume: bool, restart_if_changed: bool) -> dict | None:
    """Make `out` this run's folder. Returns the saved result if the same run finished there before.

    A folder holding another run is an error (exit 2), or is discarded with `restart_if_changed` (the
    demo's and bench's own scratch folders). A folder holding this run needs `resume`.
    """
    out.mkdir(parents=True, exist_ok=True)
    if restart_if_changed and saved_key(out) not in (None, key):
        shutil.rmtree(out)
        out.mkdir(parents=True)
    if not ((out / "result.json").is_file() or checkpoints(out)):
        return None
    if not resume:
        raise BadInput(f"{out}: holds a run already; pass --resume to continue it, or choose another --out")
    if (out / "result.json").is_file():
        saved = read_sealed_json(out / "result.json")
        check_key(out, saved["key"], key)
        return saved["result"]
    return None


def restore(out: Path, key: dict, model, opt) -> RunState | None:
    """The newest valid checkpoint's state, loaded into `model` and `opt`; None to start fresh (a folder
    with no checkpoint). Checkpoints that are all corrupt are refused: starting again at step 0 would
    rewrite the log and replace them, and a resume must never lose what a run made."""
    ckpt, corrupt = latest_checkpoint(out)
    if ckpt is None and corrupt:
        raise BadInput(f"{out}: no usable checkpoint to resume from ({len(corrupt)} found, none verifies: "
                       f"{corrupt[0]}); move the folder aside to start again")
    for msg in corrupt:
        warnings.warn(f"skipping checkpoint: {msg}", stacklevel=2)
    if ckpt is None:
        return None
    saved = load_checkpoint(ckpt, model, opt)
    check_key(out, saved["key"], key)
    truncate_log(out / "metrics.jsonl", saved["step"], saved.get("log_sha256"))
    torch.set_rng_state(torch.tensor(saved["torch_rng"], dtype=torch.uint8))
    return RunState(saved["key"], saved["step"], saved["skips"], saved["curve"], saved["ledger"], saved["logp_base"],
                    saved.get("before_rl", {}), saved.get("pool", {}))


def save(out: Path, state: RunState, model, tokenizer, opt) -> None:
    save_checkpoint(out, state.step, model, tokenizer, opt, {
        "key": state.key, "skips": state.skips, "curve": state.curve, "ledger": state.ledger,
        "logp_base": state.logp_base, "before_rl": state.before_rl, "pool": state.pool,
        "torch_rng": torch.get_rng_state().tolist(), "log_sha256": log_digest(out / "metrics.jsonl")})


def saved_key(out: Path) -> dict | None:
    """The key of the run in `out` (finished or checkpointed), if any."""
    if (out / "result.json").is_file():
        return read_sealed_json(out / "result.json")["key"]
    ckpt, _ = latest_checkpoint(out)
    return json.loads((ckpt / "state.json").read_text())["key"] if ckpt else None


def check_key(out: Path, saved: dict, key: dict) -> None:
    if saved == key:
        return
    diff = [k for k in key["settings"] if saved["settings"].get(k) != key["settings"][k]]
    what = ", ".join(diff) if diff else ("charged FLOPs" if saved["charged_flops"] != key["charged_flops"] else "data")
    raise BadInput(f"{out}: the run there was started with different settings ({what}); resume it with the same "
                   "command, or choose another --out")


def log_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes() if path.is_file() else b"").hexdigest()


def truncate_log(path: Path, step: int, digest: str | None = None) -> None:
    """Drop log records written after the checkpoint being resumed (they will be written again). What is
    kept must be the log the checkpoint saw (`digest`, None from a checkpoint that stored none); a log
    changed since is refused before anything is written, so the run's later figures never rest on it."""
    keep = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut off by the kill
            continue
        if rec["step"] <= step:
            keep.append(line + "\n")
    text = "".join(keep).encode()
    if digest is not None and hashlib.sha256(text).hexdigest() != digest:
        raise BadInput(f"{path}: its records up to step {step} differ from those its checkpoint saw (edited or "
                       "corrupt); restore the log or move the folder aside to start again")
    atomic_write(path, lambda f: f.write(text))


def finish(out: Path, key: dict, result: dict) -> None:
    """Written last: once result.json exists the run is complete, and its checkpoints can go. It seals the
    finished log too (`read_log`)."""
    write_json_atomic(out / "ledger.json", result["ledger"])
    write_sealed_json(out / "result.json",
                      {"key": key, "result": result, "log_sha256": log_digest(out / "metrics.jsonl")})
    for c in checkpoints(out):
        discard(c)


def read_log(run: Path) -> list[dict]:
    """The records of a run's metrics.jsonl, each checked (file and line in the error). A finished run's log
    must be the one its result.json sealed; a run still going (or killed) has nothing to check it against."""
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        raise BadInput(f"{run}: no metrics.jsonl (a run folder of `prefixrl train`)")
    data = path.read_bytes()  # read once: the bytes checked are the bytes parsed
    if (Path(run) / "result.json").is_file():
        sealed = read_sealed_json(Path(run) / "result.json").get("log_sha256")
        if sealed is not None and sealed != hashlib.sha256(data).hexdigest():
            raise BadInput(f"{path}: differs from the log its run sealed in result.json (edited or corrupt)")
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise BadInput(f"{path}: byte {e.start}: not UTF-8 (corrupt)") from None
    records = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise BadInput(f"{path}: line {i}: not JSON ({e.msg})") from None
        if not isinstance(rec, dict) or rec.get("kind") not in ("eval", "step"):
            raise BadInput(f"{path}: line {i}: field kind: expected eval or step")
        records.append(rec)
    return records
