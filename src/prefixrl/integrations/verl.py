"""PrefixRL on verl (docs/verl.md).

verl's agent loops render each prompt with the chat template and generate from the start of the
assistant's turn. `PrefixAgentLoop`, registered as "prefixrl_agent", is verl's own single-turn loop with
one change: the row's `extra_info.prefix_ids` are appended to the rendered prompt ids, so generation
continues the off-policy prefix inside the assistant's turn (paper §3). The prefix ends up on the
*prompt* side of verl's prompt/response split, and verl trains only response tokens under its
`response_mask`, so the prefix is conditioned on and never trained — the same rule as
`prefixrl.rl.mask.trained_mask`. Unprefixed rows use verl's "single_turn_agent" (export sets agent_name
per row).

The reward is `prefixrl.integrations.verl_reward.compute_score` (a module of its own: verl loads
reward functions by file path, and that module does not import verl).

Everything else — GRPO/PPO losses, FSDP/Megatron workers, vLLM/SGLang rollout servers, Ray — is verl's.
"""

from __future__ import annotations

from verl.experimental.agent_loop.agent_loop import register
from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop

from prefixrl.rl.export import PREFIXED_AGENT


@register(PREFIXED_AGENT)
class PrefixAgentLoop(SingleTurnAgentLoop):
    """verl's single-turn agent loop, generating after `render(prompt) + extra_info.prefix_ids`.

    verl builds one instance per trajectory, so the row's prefix can live on the instance for the one
    hook that needs it (`ct_build_initial_tokens`)."""

    async def run(self, sampling_params, **kwargs):
        self.prefix_ids = [int(t) for t in kwargs["extra_info"]["prefix_ids"]]
        return await super().run(sampling_params, **kwargs)

    async def ct_build_initial_tokens(self, messages, *args, **kwargs) -> list[int]:
        prompt_ids = await super().ct_build_initial_tokens(messages, *args, **kwargs)
        ids = prompt_ids + self.prefix_ids
        if len(ids) > self.prompt_length:
            # Left-truncating here would cut the problem, not the prefix: refuse instead.
            raise ValueError(f"prompt + prefix is {len(ids)} tokens, over data.max_prompt_length="
                             f"{self.prompt_length}; raise it to cover the longest prefixed prompt "
                             "(`prefixrl export` prints it)")
        return ids
