"""Wall-clock per stage of a run, for report.json's `stage_seconds` and report.md's table: where a user's
minutes go (docs/performance.md)."""

from __future__ import annotations

import time
from contextlib import contextmanager


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
        """Markdown rows: each stage, its seconds and share of the total, then the total."""
        total = self.total()
        rows = ["| stage | seconds | share |", "|---|---|---|"]
        rows += [f"| {name} | {s:.1f} | {s / total:.0%} |" for name, s in self.seconds.items()]
        other = total - sum(self.seconds.values())
        return rows + [f"| other | {other:.1f} | {other / total:.0%} |", f"| **total** | **{total:.1f}** | |"]
