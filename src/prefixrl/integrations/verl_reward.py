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
import sys
import threading
from pathlib import Path

from prefixrl.data.tasks import get_task
from prefixrl.data.tasks.base import Problem
from prefixrl.data.tasks.base import reward as verdict_reward
from prefixrl.data.verifier import VerifierPool
from prefixrl.io.errors import BadInput

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


def rewards_by_kind(rollout_dir: Path) -> list[dict]:
    """The training reward per step on prefixed and on unprefixed rows, from verl's rollout dumps.

    verl 0.9.1 logs one training score over both kinds of row (`critic/score/mean`) and averages the
    reward function's extra keys only in validation, so the per-kind training reward is read from the
    files `trainer.rollout_data_dir=DIR` makes it write: DIR/<step>.jsonl, one sample per line with its
    `score` and the `prefixed` flag `compute_score` returned (its legacy trainer, `trainer.use_v1=false`;
    the v1 trainer leaves the flag out). Steps in order; a kind absent from a step has mean None."""
    rows = []
    # verl names each dump by its step; any other file there is not a training dump
    files = sorted((f for f in Path(rollout_dir).glob("*.jsonl") if f.stem.isdigit()), key=lambda f: int(f.stem))
    for f in files:
        seen = {0.0: [], 1.0: []}
        for i, line in enumerate(f.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                sample = json.loads(line)
                kind, score = (float(sample["prefixed"]), float(sample["score"])) if "prefixed" in sample else (None, 0)
            except (ValueError, KeyError, TypeError) as e:
                raise BadInput(f"{f}:{i}: not a verl rollout sample with 'score' and 'prefixed' ({e})") from None
            if kind is None:
                raise BadInput(f"{f}:{i}: no 'prefixed' in this sample: verl's default (v1) trainer dumps only uid and "
                               "score; run with trainer.use_v1=false, and prefixrl.integrations.verl_reward.compute_score "
                               "as the reward")
            if kind not in seen:
                raise BadInput(f"{f}:{i}: field prefixed: {kind} is neither 0 nor 1")
            seen[kind].append(score)
        rows.append({"step": int(f.stem),
                     **{f"{kind}_mean": (sum(v) / len(v) if v else None) for kind, v in
                        (("prefixed", seen[1.0]), ("unprefixed", seen[0.0]))},
                     "prefixed_n": len(seen[1.0]), "unprefixed_n": len(seen[0.0])})
    if not rows:
        raise BadInput(f"{rollout_dir}: no <step>.jsonl rollout dumps; run verl with trainer.rollout_data_dir")
    return rows


def main(argv: list[str] | None = None) -> int:
    """`python -m prefixrl.integrations.verl_reward DIR`: print the per-kind training reward per step."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m prefixrl.integrations.verl_reward ROLLOUT_DATA_DIR", file=sys.stderr)
        return 2
    try:
        rows = rewards_by_kind(Path(args[0]))
    except BadInput as e:
        print(f"prefixrl: {e}", file=sys.stderr)
        return 2

    def cell(mean, n):
        return f"{mean:.3f} ({n})" if mean is not None else f"– ({n})"
    print("step  prefixed reward (samples)  unprefixed reward (samples)")
    for r in rows:
        print(f"{r['step']:>4}  {cell(r['prefixed_mean'], r['prefixed_n']):>25}  "
              f"{cell(r['unprefixed_mean'], r['unprefixed_n']):>27}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
