"""Task registry: plain dict of name -> factory. math and reasoning-gym import their libraries lazily."""

from __future__ import annotations

from prefixrl.tasks.base import Problem, Task, Verdict, reward
from prefixrl.tasks.chain import ChainTask
from prefixrl.tasks.math import MathTask
from prefixrl.tasks.reasoning_gym import ReasoningGymTask

TASKS = {"chain": ChainTask, "math": MathTask, "reasoning-gym": ReasoningGymTask}


def get_task(name: str, **kwargs) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(sorted(TASKS))}")
    return TASKS[name](**kwargs)


__all__ = ["TASKS", "Problem", "Task", "Verdict", "get_task", "reward"]
