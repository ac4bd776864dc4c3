"""Task registry: plain dict of name -> factory. math and reasoning-gym import their libraries lazily."""

from __future__ import annotations

from prefixrl.data.tasks.base import Problem, Task, Verdict, reward
from prefixrl.data.tasks.chain import ChainTask
from prefixrl.data.tasks.math import MathTask
from prefixrl.data.tasks.reasoning_gym import ReasoningGymTask

TASKS = {"chain": ChainTask, "math": MathTask, "reasoning-gym": ReasoningGymTask}


def get_task(name: str, **kwargs) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(sorted(TASKS))}")
    return TASKS[name](**kwargs)


def task_spec(task) -> dict:
    """The spec `get_task(**spec)` rebuilds `task` from (a verifier-pool wrapper is seen through): saved
    with every policy folder, so `eval`, `collect` or `train` on a trained policy use its own task."""
    import dataclasses

    task = getattr(task, "inner", task)
    fields = {f.name: getattr(task, f.name) for f in dataclasses.fields(task) if f.name not in ("name", "splits")}
    return {"name": task.name, **fields}


__all__ = ["TASKS", "Problem", "Task", "Verdict", "get_task", "reward", "task_spec"]
