"""verl's custom reward function for PrefixRL rows (docs/verl.md).

verl passes the decoded *response*; for a prefixed row that is only the policy's continuation, so the
row's prefix text is put back in front before the task judges it (paper §3: the reward is on the whole
trajectory, prefix + completion). Verification runs in a `VerifierPool` under a hard deadline, because
math-verify can hang on adversarial answers.

verl loads this file by path (`reward.custom_reward_function.path`), so it imports nothing from verl.
"""

from __future__ import annotations

import atexit
import json
import threading

from prefixrl.tasks import get_task
from prefixrl.tasks.base import Problem
from prefixrl.tasks.base import reward as verdict_reward
from prefixrl.verifier import VerifierPool

_pools: dict[str, tuple[VerifierPool, threading.Lock]] = {}
_pools_lock = threading.Lock()


def _pool(spec: str) -> tuple[VerifierPool, threading.Lock]:
    """One verifier pool per task per process (verl's reward workers call us from a thread pool)."""
    with _pools_lock:
        if spec not in _pools:
            task = get_task(**json.loads(spec))
            _pools[spec] = (VerifierPool(task, workers=1), threading.Lock())
        return _pools[spec]


@atexit.register
def _close_pools() -> None:
    for pool, _ in _pools.values():
        pool.close()


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **_) -> dict:
    """verl's custom_reward_function: reward 1 iff the task judges prefix text + response correct.

    extra_info is the row's (from `prefixrl export --format verl`): task (JSON spec), question,
    problem_id, prefix_text. Returns {"score", "prefixed"}; verl's reward manager keeps both in its
    reward_extra_info, so the reward on prefixed and unprefixed rows can be told apart."""
    info = extra_info or {}
    if "task" not in info or "question" not in info:
        raise ValueError("verl row without extra_info.task/question: export it with `prefixrl export --format verl`")
    pool, lock = _pool(info["task"])
    problem = Problem(info["problem_id"], "", info["question"], ground_truth)
    with lock:
        verdict = pool.verify_many([(problem, info["prefix_text"] + solution_str)])[0]
    return {"score": verdict_reward(verdict), "prefixed": float(bool(info["prefix_text"]))}
