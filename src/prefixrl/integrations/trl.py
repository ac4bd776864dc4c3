"""PrefixRL on TRL's GRPOTrainer (docs/trl.md).

TRL renders each prompt with the chat template and generates from there; it cannot start generation in
the middle of the assistant's turn. `PrefixGRPOTrainer` adds exactly that: rows of the training pool
(`prefixrl.export.training_pool` → `trl_dataset`) carry `prefix_ids`, which are appended to the row's
rendered prompt ids before generation. TRL treats prompt ids as context, so the prefix tokens are
conditioned on and never trained (the same rule as `prefixrl.mask.trained_mask`). Rewards score the
whole response, prefix text + completion, with our task's verifier under the pool's deadline.

Everything else — GRPO's loss, accelerate / DeepSpeed / FSDP, vLLM server mode — is TRL's own.
"""

from __future__ import annotations

from trl import GRPOTrainer

from prefixrl.export import Row, trl_records
from prefixrl.tasks.base import Problem, Task
from prefixrl.tasks.base import reward as verdict_reward
from prefixrl.verifier import verify_all


class PrefixGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose rows may carry `prefix_ids` (empty for an unprefixed row)."""

    def _generate_and_score_completions(self, inputs):
        # The rows of this batch, in the order `_tokenize_prompts` will see their prompts.
        self._batch_prefix_ids = [list(x.get("prefix_ids") or []) for x in inputs]
        try:
            return super()._generate_and_score_completions(inputs)
        finally:
            self._batch_prefix_ids = None

    def _tokenize_prompts(self, prompts):
        prompt_ids, images, multimodal = super()._tokenize_prompts(prompts)
        prefixes = getattr(self, "_batch_prefix_ids", None)
        if prefixes:
            if len(prefixes) != len(prompt_ids):
                raise RuntimeError("PrefixGRPOTrainer: prompts and rows are out of step")
            prompt_ids = [list(ids) + pre for ids, pre in zip(prompt_ids, prefixes)]
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


def _question(prompt) -> str:
    if isinstance(prompt, list):
        return next(m["content"] for m in reversed(prompt) if m["role"] == "user")
    return prompt
