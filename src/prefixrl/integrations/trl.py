"""PrefixRL on TRL's GRPOTrainer (docs/trl.md).

TRL renders each prompt with the chat template and generates from there; it cannot start generation in
the middle of the assistant's turn. `PrefixGRPOTrainer` adds exactly that: rows of the training pool
(`prefixrl.rl.export.training_pool` → `trl_dataset`) carry `prefix_ids`, which are appended to the row's
rendered prompt ids before generation. TRL treats prompt ids as context, so the prefix tokens are
conditioned on and never trained (the same rule as `prefixrl.rl.mask.trained_mask`). Rewards score the
whole response, prefix text + completion, with our task's verifier under the pool's deadline.

Everything else — GRPO's loss, accelerate / DeepSpeed / FSDP, vLLM server mode — is TRL's own.
"""

from __future__ import annotations

import functools
import json
import textwrap
from pathlib import Path

from trl import GRPOTrainer

from prefixrl.data.tasks.base import Problem, Task
from prefixrl.data.tasks.base import reward as verdict_reward
from prefixrl.data.verifier import verify_all
from prefixrl.io.errors import BadInput
from prefixrl.rl.export import ROWS_METADATA, Row, trl_records

# The paper's objective (§3.6), as GRPOConfig values: the advantage is the reward minus the group mean,
# not divided by the group's std; every token weighs the same whatever its sequence's length (a constant
# normaliser, max_completion_length); no KL term; and the per-kind rewards are logged, not trained on.
PAPER_CONFIG = {"scale_rewards": "none", "loss_type": "dr_grpo", "beta": 0.0, "reward_weights": [1.0, 0.0, 0.0]}

PAPER = {
    "title": "Reuse your FLOPs: Scaling RL on Hard Problems by Conditioning on Very Off-Policy Prefixes",
    "id": "2601.18795",
    "citation": textwrap.dedent("""\
        @article{setlur2026prefixrl,
            title        = {{Reuse your FLOPs: Scaling RL on Hard Problems by Conditioning on Very Off-Policy Prefixes}},
            author       = {Amrith Setlur and Zijian Wang and Andrew Cohen and Paria Rashidinejad and Sang Michael Xie},
            year         = 2026,
            eprint       = {arXiv:2601.18795},
        }"""),
}


# The two private GRPOTrainer methods the override hooks, and the TRL releases it was checked against (their
# code is unchanged from 1.10 to 1.16). A release that renamed either would leave the prefixes unapplied while
# rewards are still scored on prefix + completion: training on wrong data with no error. So both are checked
# when the trainer is built, and every batch checks that its prefixes were applied.
HOOKS = ("_tokenize_prompts", "_generate_and_score_completions")
TESTED = ((1, 10), (2, 0))  # [from, to)


def check_trl(version: str | None = None) -> None:
    """Refuse a TRL this coupling was not checked against, or one whose GRPOTrainer lacks a hooked method."""
    import trl

    version = version or trl.__version__
    parts = tuple(int(x) for x in version.split(".")[:2] if x.isdigit())
    if not TESTED[0] <= parts < TESTED[1]:
        raise BadInput(f"PrefixGRPOTrainer hooks private methods of TRL's GRPOTrainer and was checked on TRL "
                           f">=1.10,<2; this is TRL {version}: pip install 'trl>=1.10,<2'")
    missing = [name for name in HOOKS if not callable(getattr(GRPOTrainer, name, None))]
    if missing:
        raise BadInput(f"TRL {version}'s GRPOTrainer has no {', '.join(missing)}: PrefixGRPOTrainer could not "
                           "apply the prefixes; pip install 'trl>=1.10,<2'")


class PrefixGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose rows may carry `prefix_ids` (empty for an unprefixed row). Its model card says
    PrefixRL and cites the paper (TRL writes it from these three attributes)."""

    _tag_names = ["trl", "grpo", "prefixrl"]
    _name = "PrefixRL (on TRL's GRPO)"
    _paper = PAPER

    def __init__(self, *args, **kwargs):
        check_trl()
        super().__init__(*args, **kwargs)

    def _generate_and_score_completions(self, inputs):
        inputs = self._mixed_groups(inputs)
        # The rows of this batch, in the order `_tokenize_prompts` will see their prompts.
        self._batch_prefix_ids = [list(x.get("prefix_ids") or []) for x in inputs]
        self._prefixes_applied = False
        try:
            out = super()._generate_and_score_completions(inputs)
        finally:
            prefixed, self._batch_prefix_ids = any(self._batch_prefix_ids), None
        if prefixed and not self._prefixes_applied:
            import trl

            raise BadInput(f"TRL {trl.__version__} generated this batch without calling _tokenize_prompts, so its "
                           "prefixes were not applied; PrefixGRPOTrainer does not support this TRL (pip install "
                           "'trl>=1.10,<2')")
        return out

    def _mixed_groups(self, inputs: list[dict]) -> list[dict]:
        """Rows exported with --prefixed-samples M: of each group of a prefixed row, the copies past the first
        M lose their prefix here, before TRL tokenizes and scores them, so the group holds M prefixed and n − M
        plain samples and TRL's group mean is their one baseline. A copy's place in its group is TRL's own
        layout, the one GRPOTrainer computes advantages with: the processes' local batches, in order, make the
        global batch, whose rows taken num_generations at a time are the groups."""
        if not any(row.get("prefixed_samples") is not None for row in inputs):
            return inputs
        n = self.num_generations if self.model.training else self.num_generations_eval
        start = self.accelerator.process_index * len(inputs)
        groups: dict[int, set] = {}
        for i, row in enumerate(inputs):
            groups.setdefault((start + i) // n, set()).add(row.get("problem_id"))
        if any(len(ids) > 1 for ids in groups.values()):  # the layout read here is not TRL's: refuse, never guess
            import trl

            raise BadInput(f"TRL {trl.__version__} batches a group's copies otherwise than num_generations "
                           "consecutive rows, so --prefixed-samples cannot tell which copies carry the prefix; "
                           "export without it, or pip install 'trl>=1.10,<2'")
        out = []
        for i, row in enumerate(inputs):
            m = row.get("prefixed_samples")
            if m is not None and m > n:
                raise BadInput(f"rows ask for {m} prefixed samples per group, more than TRL's num_generations {n}")
            if m is not None and (start + i) % n >= m:
                row = {**row, "prefix_ids": [], "prefix_text": "", "kind": "unprefixed"}
            out.append(row)
        return out

    def _tokenize_prompts(self, prompts):
        prompt_ids, images, multimodal = super()._tokenize_prompts(prompts)
        prefixes = getattr(self, "_batch_prefix_ids", None)
        if prefixes:
            if len(prefixes) != len(prompt_ids):
                raise RuntimeError("PrefixGRPOTrainer: prompts and rows are out of step")
            prompt_ids = [list(ids) + pre for ids, pre in zip(prompt_ids, prefixes)]
            self._prefixes_applied = True
        return prompt_ids, images, multimodal


def trl_dataset(rows: list[Row]):
    """A `datasets.Dataset` of the pool, in the columns `PrefixGRPOTrainer` and `reward_functions` use."""
    import datasets

    return datasets.Dataset.from_list(trl_records(rows))


def _text(completion) -> str:
    return completion[-1]["content"] if isinstance(completion, list) else completion


def reward_functions(task: Task) -> list:
    """[reward, reward_prefixed, reward_unprefixed]. Pass them with reward_weights [1, 0, 0]: the first
    is the training reward (verdict on prefix text + completion); the other two return it only on rows of
    their kind (None elsewhere, which TRL leaves out of their means), so TRL logs the reward on prefixed
    and unprefixed rows separately."""
    last: dict = {}

    def rewards(prompts, completions, prefix_text, answer, problem_id) -> list[float]:
        key = (tuple(problem_id), tuple(_text(c) for c in completions))
        if last.get("key") != key:
            items = [(Problem(pid, "", _question(p), a), pre + _text(c))
                     for p, c, pre, a, pid in zip(prompts, completions, prefix_text, answer, problem_id)]
            last.update(key=key, values=[verdict_reward(v) for v in verify_all(task, items)])
        return last["values"]

    def reward(prompts, completions, prefix_text, answer, problem_id, **_) -> list[float]:
        return rewards(prompts, completions, prefix_text, answer, problem_id)

    def by_kind(want: str):
        def f(prompts, completions, prefix_text, answer, problem_id, kind, **_) -> list[float | None]:
            values = rewards(prompts, completions, prefix_text, answer, problem_id)
            return [v if k == want else None for v, k in zip(values, kind)]

        f.__name__ = f"reward_{want}"
        return f

    reward.__name__ = "reward"
    return [reward, by_kind("prefixed"), by_kind("unprefixed")]


def with_prefix(reward_func):
    """Any TRL reward function, made to score prefix + completion: on a prefixed row the policy wrote only
    the completion, and the answer it reaches depends on the prefix it continued (paper §3). The wrapped
    function gets each completion with the row's `prefix_text` in front (for a conversational completion,
    in front of its last message's content) and every other argument unchanged. Its name is kept, so TRL
    logs it under the same key."""

    @functools.wraps(reward_func)
    def scored_with_prefix(prompts, completions, prefix_text, **kwargs):
        whole = [_prepend(pre, c) for pre, c in zip(prefix_text, completions)]
        return reward_func(prompts=prompts, completions=whole, prefix_text=prefix_text, **kwargs)

    return scored_with_prefix


def _prepend(prefix: str, completion):
    if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}]
        return completion[:-1] + [{**completion[-1], "content": prefix + completion[-1]["content"]}]
    return prefix + completion


def task_of_rows(path: Path, spec: dict | None = None):
    """The task that scores a rows file: `spec` (from --task) when given, else the one `prefixrl export`
    recorded in the file. Neither is an error: a wrong task would score every row 0, silently."""
    import pyarrow.parquet as pq

    from prefixrl.data.tasks import get_task

    if spec is None:
        meta = pq.read_schema(path).metadata or {}
        if ROWS_METADATA not in meta:
            raise BadInput(f"{path}: records no task (not written by this `prefixrl export`?) and --task was not "
                           "given; without the task every reward would be 0. Re-export, or pass --task")
        spec = json.loads(meta[ROWS_METADATA])["task"]
    return get_task(**spec)


def _question(prompt) -> str:
    if isinstance(prompt, list):
        return next(m["content"] for m in reversed(prompt) if m["role"] == "user")
    return prompt
