"""Verification under a hard deadline, in worker processes that are replaced when they hang or crash.

A verifier is code that reads model output, so it can hang (math-verify on a deeply nested power) or
die (a C extension segfaults). Neither may stop an RL run: each item gets `timeout` seconds in a worker
process; past it the worker is killed and replaced and the item's verdict is TIMEOUT. A worker that dies
gives ERROR and is replaced; an exception inside `verify` gives ERROR and the worker lives on. Both earn
reward 0 (`tasks.base.reward`) and are counted in `counts`, which the trainer logs.

Workers are fresh interpreters in isolated mode (see `_Worker`): the working directory is not on their
import path, so a planted `ctypes.py` there is never imported. Each loads its task and warms up its
verifier (math-verify imports sympy, seconds of work) before it reports ready, so an import never eats
an answer's deadline, not even right after a hung worker was replaced.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import math
import os
import signal
import subprocess
import sys
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path

from prefixrl.data.tasks.base import Problem, Task, Verdict
from prefixrl.io.errors import BadInput

FLUSH_S = 0.005  # a worker reports finished verdicts at least this often (the deadline restarts on each)


def _die_with_parent() -> None:
    """Linux: ask the kernel to kill this worker when its parent dies (even by SIGKILL), so a hung
    worker never outlives the run that started it."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _serve(conn) -> None:
    """Worker loop: the first message is the task, then chunks of (index, problem, response) until None."""
    _die_with_parent()
    task = conn.recv()
    warm_up = getattr(task, "warm_up", None)
    if warm_up is not None:  # lazy imports happen here, before the first deadline starts
        warm_up()
    conn.send("ready")
    while True:
        try:
            msg = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if msg is None:
            return
        answers, last_flush = [], time.monotonic()
        for idx, problem, response in msg:  # a chunk; answers go back at least every FLUSH_S
            try:
                verdict = task.verify(problem, response).value
            except Exception:  # noqa: BLE001 - the verifier's own failure is a verdict, not a crash of the run
                verdict = Verdict.ERROR.value
            answers.append((idx, verdict))
            if time.monotonic() - last_flush > FLUSH_S:
                conn.send(answers)
                answers, last_flush = [], time.monotonic()
        conn.send(answers)


def _child(read_fd: int, write_fd: int) -> None:
    """Entry point of a worker interpreter: serve over the two pipe ends it inherited."""
    rx, tx = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    try:
        _serve(_Duplex(rx.recv, tx.send))
    except (BrokenPipeError, ConnectionResetError, EOFError):
        pass  # the run stopped (Ctrl-C, an error) and closed its end: nothing to answer, nothing to print


class _Duplex:
    def __init__(self, recv, send):
        self.recv, self.send = recv, send


class _Worker:
    """A fresh interpreter (not fork: the parent holds torch's threads; not multiprocessing's spawn: it
    re-imports the user's __main__), talking over a pipe pair wrapped as a multiprocessing Connection."""

    def __init__(self, task: Task):
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        boot = f"import sys; sys.path[:0] = {_import_path()!r}; from prefixrl.data.verifier import _child; " \
               f"_child({to_child}, {from_child})"
        # its own process group: a terminal's Ctrl-C goes to the run alone, which stops its workers itself,
        # instead of interrupting each worker mid-import with a traceback of its own
        self.proc = subprocess.Popen([sys.executable, "-I", "-c", boot], pass_fds=(to_child, from_child),
                                     stdin=subprocess.DEVNULL, process_group=0)
        os.close(to_child)
        os.close(from_child)
        self.send = Connection(from_parent, readable=False)
        self.conn = Connection(to_parent, writable=False)
        self.send.send(task)
        self.items: collections.deque[int] = collections.deque()  # sent, not yet answered; first = current
        self.deadline = 0.0

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until the worker has loaded the task; a worker that cannot is a setup error, not a verdict."""
        try:
            if self.conn.poll(timeout) and self.conn.recv() == "ready":
                return
        except (EOFError, OSError):
            pass
        self.kill()
        raise RuntimeError("a verifier worker could not load the task (is it picklable, and its module importable "
                           "in a fresh interpreter?); its traceback is above")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=5)
        self.send.close()
        self.conn.close()


def _import_path() -> list[str]:
    """The parent's import path without the working directory (isolated mode, `-I`, drops it and
    PYTHONPATH; they are put back here minus '' and the cwd), plus where prefixrl itself lives."""
    cwd = os.path.realpath(os.getcwd())
    own = str(Path(os.path.realpath(__file__)).parents[2])  # the folder holding prefixrl/ (this is prefixrl/data/)
    keep = [p for p in sys.path if p and os.path.realpath(p) != cwd]
    return [own] + [p for p in keep if p != own]


def check_timeout(timeout: float, workers: int = 1) -> None:
    """A deadline must be a finite, positive number of seconds (NaN never expires; inf never fires)."""
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise BadInput(f"verifier timeout must be a finite number of seconds > 0, got {timeout}")
    if workers < 1:
        raise BadInput(f"verifier workers must be >= 1, got {workers}")


class VerifierPool:
    """`verify_many(items)` → one verdict per (problem, response), each under `timeout` seconds.

    Use as a context manager, or call `close()`. Safe to reuse across many batches; the workers persist.
    """

    def __init__(self, task: Task, workers: int = 2, timeout: float = 10.0):
        check_timeout(timeout, workers)
        self.task, self.timeout = task, timeout
        self._workers = [_Worker(task) for _ in range(workers)]
        for w in self._workers:
            w.wait_ready()
        self.counts: collections.Counter[str] = collections.Counter()  # timeout, error, restarts, items

    def verify_many(self, items: list[tuple[Problem, str]]) -> list[Verdict]:
        """Items go to workers in chunks (pipe round trips dominate otherwise); the worker answers item by
        item, and each item's deadline starts when the previous answer arrives (within FLUSH_S). On a timeout or a crash
        only the item in progress is lost; the rest of its chunk goes back in the queue."""
        out: list[Verdict | None] = [None] * len(items)
        todo = collections.deque(range(len(items)))
        chunk = max(1, min(64, len(items) // (2 * len(self._workers)) or 1))
        while todo or any(w.items for w in self._workers):
            for w in self._workers:  # hand work to idle workers
                if not w.items and todo:
                    if w.proc.poll() is not None:  # died while idle (the OOM killer, say): a fresh one takes over
                        self._replace(w)
                    w.items = collections.deque(todo.popleft() for _ in range(min(chunk, len(todo))))
                    w.deadline = time.monotonic() + self.timeout
                    try:
                        w.send.send([(i, *items[i]) for i in w.items])
                    except OSError:  # it died between batches: nothing of this chunk was lost, resend it
                        todo.extendleft(reversed(w.items))
                        w.items.clear()
                        self._replace(w)
            busy = [w for w in self._workers if w.items]
            if not busy:  # every worker died while idle and was replaced; their chunks are queued again
                continue
            next_deadline = min(w.deadline for w in busy)
            for conn in wait([w.conn for w in busy], timeout=max(0.0, next_deadline - time.monotonic())):
                w = next(w for w in busy if w.conn is conn)
                try:
                    for idx, verdict in conn.recv():
                        out[idx] = Verdict(verdict)
                        w.items.remove(idx)
                    w.deadline = time.monotonic() + self.timeout
                except (EOFError, OSError):  # the worker died mid-item
                    self._lose_current(w, out, todo, Verdict.ERROR)
            now = time.monotonic()
            for w in self._workers:
                if w.items and now >= w.deadline:
                    self._lose_current(w, out, todo, Verdict.TIMEOUT)
        self.counts["items"] += len(items)
        for v in out:
            if v in (Verdict.TIMEOUT, Verdict.ERROR):
                self.counts[v.value] += 1
        return out  # type: ignore[return-value]

    def _lose_current(self, w: _Worker, out: list, todo: collections.deque, verdict: Verdict) -> None:
        """The item `w` was on gets `verdict`; the rest of its chunk is queued again; `w` is replaced."""
        out[w.items.popleft()] = verdict
        todo.extendleft(reversed(w.items))
        w.items.clear()
        self._replace(w)

    def _replace(self, w: _Worker) -> None:
        w.kill()
        fresh = _Worker(self.task)
        fresh.wait_ready()
        w.conn, w.send, w.proc = fresh.conn, fresh.send, fresh.proc
        self.counts["restarts"] += 1

    def close(self) -> None:
        for w in self._workers:
            try:
                w.send.send(None)
                w.proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
            w.kill()
        self._workers = []

    def __enter__(self) -> VerifierPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Deadlined:
    """A task whose verifications go through a `VerifierPool`; everything else is the inner task's.

    The pipeline calls `verify_all(task, items)`, so wrapping the task at the edge (CLI, demo, bench)
    puts every verification of a run under the deadline without the core knowing about processes.
    """

    def __init__(self, task: Task, pool: VerifierPool):
        self.inner, self.pool = task, pool

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def verify(self, problem: Problem, response: str) -> Verdict:
        return self.pool.verify_many([(problem, response)])[0]

    def verify_many(self, items: list[tuple[Problem, str]]) -> list[Verdict]:
        return self.pool.verify_many(items)


def verify_all(task: Task, items: list[tuple[Problem, str]]) -> list[Verdict]:
    """One verdict per (problem, response): through the task's pool when it has one, else inline."""
    many = getattr(task, "verify_many", None)
    return many(items) if many is not None else [task.verify(p, r) for p, r in items]


@contextlib.contextmanager
def deadlined(task: Task, workers: int = 2, timeout: float = 10.0):
    """`with deadlined(task) as task:` — the task, with every verification under the pool's deadline."""
    with VerifierPool(task, workers, timeout) as pool:
        yield Deadlined(task, pool)
