"""Checkpoints that survive a kill at any instant: complete, hashed, and swapped in by rename.

A checkpoint is a folder: the policy in Hugging Face format, the optimizer state, and `state.json` (step,
ledger, curve, RNG states, whatever the trainer needs to continue exactly), plus `manifest.json` with
the SHA-256 of every file, written last. It is built under a temporary name, fsynced, and renamed into
place; only then are older checkpoints removed. Loading verifies the manifest and falls back to the
newest older checkpoint that verifies, so a kill during a save leaves the previous one loadable.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from prefixrl.io.errors import BadInput
from prefixrl.io.store import current_umask, disk_full, fsync_dir

MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _seal(folder: Path) -> None:
    """fsync every file, then write the manifest (hashes of everything else) and fsync it and the folder."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    mode = 0o666 & ~current_umask()
    for p in files:
        os.chmod(p, mode)  # a library may write through mkstemp (0600): every file gets the mode any file would
        with p.open("rb") as f:
            os.fsync(f.fileno())
    manifest = {str(p.relative_to(folder)): _sha256(p) for p in files}
    with (folder / MANIFEST).open("w") as f:
        json.dump({"files": manifest}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(folder)


def verify_folder(folder: Path, weights: bool = True) -> None:
    """Raise BadInput unless `folder` has a well-formed, non-empty manifest, every file it lists matches
    its hash, and every file in the folder is listed (an unlisted weights file could be loaded instead).
    A manifest is untrusted input: a name that leaves the folder ('../x', '/etc/x') is corrupt.
    weights=False: safetensors files may be absent (a Hub snapshot fetched for its tokenizer only);
    those present are still checked."""
    man = folder / MANIFEST
    if not man.is_file():
        raise BadInput(f"{folder}: no {MANIFEST} (incomplete or not written by prefixrl)")
    try:
        files = json.loads(man.read_text())["files"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise BadInput(f"{man}: unreadable manifest (corrupt)") from None
    if not isinstance(files, dict) or not files or not all(isinstance(v, str) for v in files.values()):
        raise BadInput(f"{man}: the manifest lists no files, or lists them wrongly (corrupt)")
    root = folder.resolve()
    for name, digest in files.items():
        p = (folder / name).resolve()
        if root not in p.parents:
            raise BadInput(f"{man}: lists {name!r}, outside the folder (corrupt)")
        if not p.is_file() and not weights and name.endswith(".safetensors"):
            continue
        if not p.is_file():
            raise BadInput(f"{folder}: file {name} listed in the manifest is missing")
        if _sha256(p) != digest:
            raise BadInput(f"{folder}: file {name} does not match its hash in the manifest (corrupt)")
    unlisted = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                      if p.is_file() and p.name != MANIFEST and str(p.relative_to(folder)) not in files)
    if unlisted:
        raise BadInput(f"{folder}: {unlisted[0]} is not in the manifest (added after the folder was sealed)")


def write_folder(dest: Path, fill) -> None:
    """Build a folder with fill(tmp_folder), seal it, and put it at `dest` by rename. An existing `dest`
    is moved aside first and removed only after the new one is in place."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700
        fill(tmp)
        _seal(tmp)
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as e:
        full = disk_full(dest.parent, e)
        shutil.rmtree(tmp, ignore_errors=True)
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dest)) from e
        raise


def save_policy(dest: Path, model, tokenizer, meta: dict | None = None) -> None:
    """The policy in Hugging Face format, atomically, with a manifest that `model.load` verifies, and
    `meta` as its prefixrl.json (the task it was trained on, so later stages read the same task)."""

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if meta is not None:
            (tmp / "prefixrl.json").write_text(json.dumps(meta, indent=2))

    write_folder(dest, fill)


def save_checkpoint(run: Path, step: int, model, tokenizer, optimizer, state: dict, keep: int = 2) -> Path:
    """run/ckpt-NNNNNN: policy + optimizer + state; keeps the newest `keep` checkpoints."""

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp / "policy")
        tokenizer.save_pretrained(tmp / "policy")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, **state}))

    dest = run / f"ckpt-{step:06d}"
    write_folder(dest, fill)
    for old in checkpoints(run)[:-keep]:
        discard(old)
    return dest


def discard(folder: Path) -> None:
    """Remove a checkpoint so that a kill part-way leaves no half-deleted `ckpt-*` behind: it is renamed
    to a hidden temporary first (one atomic step), which the next claim of the run folder removes."""
    hidden = folder.with_name(f".{folder.name}.discarded.tmp")
    shutil.rmtree(hidden, ignore_errors=True)  # one an earlier kill left
    os.replace(folder, hidden)
    shutil.rmtree(hidden, ignore_errors=True)


def checkpoints(run: Path) -> list[Path]:
    """Checkpoint folders of a run, oldest first (by step)."""
    return sorted(p for p in Path(run).glob("ckpt-*") if p.is_dir() and p.name[5:].isdigit())


def latest_checkpoint(run: Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint whose manifest verifies, and a message per newer one that did not."""
    skipped = []
    for ckpt in reversed(checkpoints(run)):
        try:
            verify_folder(ckpt)
            return ckpt, skipped
        except BadInput as e:
            skipped.append(str(e))
    return None, skipped


def load_checkpoint(ckpt: Path, model, optimizer) -> dict:
    """Restore parameters and optimizer state in place; return the saved trainer state."""
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(ckpt / "policy", dtype=torch.float32)  # verified by the caller
    model.load_state_dict(saved.state_dict())  # strict: every parameter restored, bit for bit
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    return json.loads((ckpt / "state.json").read_text())
