"""Task registry: plain dict of name -> factory (issue 5 adds math and reasoning-gym tasks)."""

from __future__ import annotations

from prefixrl.tasks.base import Problem, Task, Verdict, reward
from prefixrl.tasks.chain import ChainTask

TASKS = {"chain": ChainTask}


def get_task(name: str, **kwargs) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(sorted(TASKS))}")
    return TASKS[name](**kwargs)


__all__ = ["TASKS", "Problem", "Task", "Verdict", "get_task", "reward"]
