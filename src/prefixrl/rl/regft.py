"""The examples of the ReGFT-style baseline (`--method regft-rl`; arXiv 2603.01223, in spirit): the
policy's own verified completions of PrefixRL's prefixed problems.

PrefixRL trains on-policy tokens written after an off-policy prefix, by RL (paper §3, Eq. 3.1). This
baseline fits the same kind of tokens by SFT before plain RL: for every prefix, `samples` completions from
the policy with the prefix in context; the ones whose whole response (prefix + completion) verifies are
kept; the prefix stays context (masked, as in PrefixRL's update) and only the completion is trained
(`prefixrl.rl.sft`). If it matches PrefixRL, the gain is the on-policy tokens; if PrefixRL wins, it is the
RL on them. The sampling is charged to the method (2N per token, "regft/"), as rejection sampling is.
"""

from __future__ import annotations

from prefixrl.data.prefixes import Prefix, PrefixedPrompt
from prefixrl.data.tasks.base import Task, Verdict
from prefixrl.data.verifier import verify_all
from prefixrl.rl.sft import Examples
from prefixrl.rollout.engine import Engine, SamplingParams
from prefixrl.rollout.flops import Ledger
from prefixrl.rollout.seeds import derive


def own_completions(engine: Engine, tokenizer, task: Task, prefixes: list[Prefix], samples: int,
                    params: SamplingParams, seed: int, ledger: Ledger) -> tuple[Examples, dict]:
    """(examples, counts): per verified completion, context = rendered problem + prefix and trained = the
    completion's ids (EOS included where the policy stopped). One engine call over every prefix."""
    prompts = [PrefixedPrompt.of(tokenizer, p.problem, p.prefix_ids, p.fraction) for p in prefixes]
    # the stream of "step 0": RL's steps are 1, 2, …, so no step draws these again
    gens = engine.generate([p.ids for p in prompts], samples, params, seed=derive(seed, 0))
    ledger.add("regft/prefill", gens.prefill_flops)
    ledger.add("regft/decode", gens.decode_flops)
    items = [(p.problem, p.response(tokenizer, s.tokens)) for p, group in zip(prompts, gens.samples) for s in group]
    verdicts = iter(verify_all(task, items))
    examples = Examples()
    for p, group in zip(prompts, gens.samples):
        for s in group:
            if next(verdicts) is Verdict.CORRECT and s.tokens:
                examples.context.append(p.ids)
                examples.trained.append(list(s.tokens))
                examples.problems.append(p.problem.id)
    counts = {"prefixes": len(prefixes), "sampled": len(items), "kept": len(examples),
              "problems": len(set(examples.problems))}
    return examples, counts
