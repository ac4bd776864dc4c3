"""What a stage writes, claimed before it writes anything, so that no output destroys an input.

Every stage names its inputs and its outputs, side files included, before it reads or writes a byte.
`claim` resolves them all and refuses with one line (BadInput: exit 2)

* an output that is an input, lies inside one, or contains one (`prefixes --traces T --out T`,
  `train --model base --out base`), whatever flag is passed;
* two outputs of one stage that are the same path (`collect --out T.json`: its summary is T.json);
* an output that already exists, unless the stage resumes it or the user passed --overwrite;
* an output under a regular file (found now, not after the first round of sampling);
* an output that another process is writing: each output is held under an exclusive lock (flock on a
  hidden `.NAME.lock` beside it) for as long as the claim lasts.

Once it holds the lock it removes the temporary files a killed writer left beside the output (and,
for a folder, inside it): `.NAME.*.tmp` from `store.atomic_write` and `checkpoint.write_folder`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from prefixrl.io.errors import BadInput


@dataclass(frozen=True)
class Output:
    """One path a stage writes. `flag` names it in messages; `kind` is "file" or "folder"; `existing`
    says what an existing one means: "refuse", or "replace" (--overwrite: written anew, atomically), or
    "resume" (the stage continues what is there), or "owned" (a work folder the command reuses piece by
    piece: allowed only if this command made it, as its OWNER file says)."""

    path: Path
    flag: str = "--out"
    kind: str = "file"
    existing: str = "refuse"


OWNER = ".prefixrl-owner"  # in a work folder: the command that made it, and so may reuse it


def owner(folder: Path) -> str | None:
    try:
        return (folder / OWNER).read_text().strip()
    except OSError:
        return None


def _inside(a: Path, b: Path) -> bool:
    """a is b or lies under it (both resolved)."""
    return a == b or b in a.parents


def check(command: str, outputs: list[Output], inputs: dict[str, Path | None], hint: str = "--overwrite") -> None:
    """Every refusal of the module docstring but the lock, on resolved paths; nothing is touched."""
    ins = {flag: Path(p).resolve() for flag, p in inputs.items() if p is not None}
    seen: dict[Path, str] = {}
    for out in outputs:
        o = Path(out.path).resolve()
        for flag, i in ins.items():
            if _inside(o, i) or _inside(i, o):
                where = "is" if o == i else "is inside" if _inside(o, i) else "contains"
                raise BadInput(f"{command}: {out.flag} {out.path} {where} the input {flag} {inputs[flag]}; "
                               f"an output never replaces an input: choose another {out.flag}")
        if o in seen:
            raise BadInput(f"{command}: {out.flag} {out.path} is also {seen[o]}; choose another {out.flag}")
        seen[o] = out.flag
        for parent in o.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise BadInput(f"{command}: {out.flag} {out.path}: {parent} is a file, not a folder")
                break
        if o.exists():
            if out.kind == "file" and o.is_dir():
                raise BadInput(f"{command}: {out.flag} {out.path} is a folder; it needs a file name")
            if out.kind == "folder" and not o.is_dir():
                raise BadInput(f"{command}: {out.flag} {out.path} is a file; it needs a folder")
            empty = o.is_dir() and not any(o.iterdir())
            if out.existing == "refuse" and not empty:
                raise BadInput(f"{command}: {out.flag} {out.path} already exists and is never overwritten silently; "
                               f"pass {hint} to replace it, or choose another {out.flag}")
            if out.existing == "owned" and not empty and owner(o) != command:
                raise BadInput(f"{command}: {out.flag} {out.path} already exists and was not made by `prefixrl "
                               f"{command}` (no {OWNER} naming it); choose another {out.flag}")


def _lock(path: Path, flag: str):
    """An exclusive, non-blocking flock on `.NAME.lock` beside `path`; refused if another process holds it.
    The lock file is unlinked on release; a taker re-checks that it locked the file still at that name."""
    lock = path.parent / f".{path.name}.lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise BadInput(f"{flag} {path} is being written by another prefixrl process; wait for it, or "
                               f"choose another {flag}") from None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return lock, fd
        os.close(fd)  # the holder released and unlinked it between our open and flock: take the new one


def clean_temporaries(path: Path, kind: str) -> list[Path]:
    """Remove what a killed atomic writer left: `.NAME.*.tmp` (and `.NAME.old`) beside `path`, and for a
    folder every `.*.tmp` directly inside it. Call only while holding the lock."""
    found = list(path.parent.glob(f".{path.name}.*.tmp")) + list(path.parent.glob(f".{path.name}.old"))
    if kind == "folder" and path.is_dir():
        found += list(path.glob(".*.tmp"))
    for p in found:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return found


@contextlib.contextmanager
def claim(command: str, outputs: list[Output], inputs: dict[str, Path | None], hint: str = "--overwrite"):
    """`with claim(...):` — the stage's outputs, checked, locked and cleaned, for the life of the block."""
    check(command, outputs, inputs, hint)
    held, made, ok = [], [], False
    try:
        for out in outputs:
            path = Path(out.path).resolve()
            made += [p for p in reversed(path.parents) if not p.exists()]
            path.parent.mkdir(parents=True, exist_ok=True)
            held.append(_lock(path, out.flag))
            clean_temporaries(path, out.kind)
            if out.existing == "owned":
                path.mkdir(parents=True, exist_ok=True)
                (path / OWNER).write_text(command + "\n")
        yield
        ok = True
    finally:
        for lock, fd in held:
            with contextlib.suppress(OSError):
                lock.unlink()
            os.close(fd)
        if not ok:  # a stage that failed leaves no folder it created (empty ones; anything in them stays)
            for p in reversed(made):
                with contextlib.suppress(OSError):
                    p.rmdir()
