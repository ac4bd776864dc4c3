"""Task registry: plain dict of name -> factory. math and reasoning-gym import their libraries lazily."""

from __future__ import annotations

from prefixrl.data.tasks.base import Problem, Task, Verdict, reward
from prefixrl.io.errors import BadInput
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
    inert = getattr(task, "inert", {})  # settings added later, left out at their defaults: old specs stay equal
    fields = {f.name: getattr(task, f.name) for f in dataclasses.fields(task) if f.name not in ("name", "splits")
              and not (f.name in inert and getattr(task, f.name) == inert[f.name])}
    return {"name": task.name, **fields}


# where a dataset is read from, not what it holds: two copies of one dataset are one task
DATA_LOCATION = ("path", "subset", "dataset_split", "question_field", "answer_field", "id_field")


def task_identity(task) -> dict | None:
    """What a task is, apart from where its dataset lies: its spec without the dataset's location (its
    problems are identified by content, `base.problems_digest`). None for a task that is not a dataclass."""
    try:
        return {k: v for k, v in task_spec(task).items() if k not in DATA_LOCATION}
    except TypeError:
        return None


def check_same_task(stored: dict | None, task, what: str) -> None:
    """Refuse, in one line naming both, an input made for another task (another step count, answer format,
    generated dataset); an input that records no task (made before tasks were recorded) is not checked."""
    ours = task_identity(task)
    if stored is None or ours is None or stored == ours:
        return
    import json

    diff = sorted(k for k in set(stored) | set(ours) if stored.get(k) != ours.get(k))
    raise BadInput(f"{what}: made for task {json.dumps(stored, sort_keys=True)}, this stage's task is "
                   f"{json.dumps(ours, sort_keys=True)} (they differ in {', '.join(diff)}); make it again for this task")


__all__ = ["TASKS", "Problem", "Task", "Verdict", "check_same_task", "get_task", "reward", "task_identity",
           "task_spec"]
