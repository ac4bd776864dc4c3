"""Wall-clock per stage of a run, for report.json's `stage_seconds` and report.md's table: where a user's
minutes go (docs/performance.md); and a bench's wall-clock summed over the invocations that built its work folder."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

from prefixrl.io.store import write_json_atomic


class Stopwatch:
    def __init__(self):
        self.seconds: dict[str, float] = {}  # stage → seconds, in the order the stages first ran
        self._start = time.perf_counter()

    @contextmanager
    def stage(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t

    def total(self) -> float:
        return time.perf_counter() - self._start

    def table(self) -> list[str]:
        return stage_table(self.seconds, self.total())


def stage_table(seconds: dict[str, float], total: float) -> list[str]:
    """Markdown rows: each stage, its seconds and share of the total, then the total."""
    rows = ["| stage | seconds | share |", "|---|---|---|"]
    rows += [f"| {name} | {s:.1f} | {s / total:.0%} |" for name, s in seconds.items()]
    other = total - sum(seconds.values())
    return rows + [f"| other | {other:.1f} | {other / total:.0%} |", f"| **total** | **{total:.1f}** | |"]


class WallClock:
    """Wall-clock seconds spent on one work folder, summed over every bench invocation (a resumed bench
    reports the time of all its parts, not only of the last one). Saved after every finished run."""

    def __init__(self, work: Path, which: str = "paper"):
        self.path = work / ("bench_seconds.json" if which == "paper" else f"bench_seconds_{which}.json")
        self.before = json.loads(self.path.read_text())["seconds"] if self.path.is_file() else 0.0
        self.t0 = time.time()

    def total(self) -> float:
        return self.before + time.time() - self.t0

    def save(self) -> None:
        write_json_atomic(self.path, {"seconds": self.total()})
