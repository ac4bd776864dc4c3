"""pass@k by the unbiased estimator of Chen et al. (2021), on unprefixed or prefixed problems (the CLI's
`prefixrl eval` is `cli.stages.run_eval`). Evaluation FLOPs go to the ledger under "eval/" and never
into a method's curve.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tqdm import tqdm

from prefixrl.data.prefixes import PrefixedPrompt
from prefixrl.data.tasks.base import Problem, Task, Verdict
from prefixrl.data.verifier import verify_all
from prefixrl.rollout.engine import Engine, SamplingParams
from prefixrl.rollout.flops import Ledger
from prefixrl.rollout.seeds import derive


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with c correct out of n samples: 1 − C(n−c, k) / C(n, k).

    Computed as a running product to avoid huge binomials; equals 1 when n − c < k.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


@dataclass
class EvalResult:
    n: int  # samples per problem
    correct: list[int]  # per problem
    verdicts: dict[str, int]  # verdict name -> count
    solves: list[list[str]] = field(default_factory=list)  # per problem: its correct responses (prefix included)

    def pass_at(self, k: int) -> float:
        return sum(pass_at_k(self.n, c, k) for c in self.correct) / max(1, len(self.correct))


def evaluate(
    engine: Engine, tokenizer, task: Task, problems: list[Problem], n: int, params: SamplingParams, seed: int,
    ledger: Ledger | None = None, prefixes: list[list[int]] | None = None, category: str = "eval",
    progress: bool = False, desc: str = "eval",
) -> EvalResult:
    """Sample n completions per problem (after an optional prefix) and verify prefix + completion.

    Problems go to the engine in chunks of about 2,048 samples, each chunk seeded from (seed, chunk).
    """
    prefixes = prefixes or [[] for _ in problems]
    prompts = [PrefixedPrompt.of(tokenizer, p, pre) for p, pre in zip(problems, prefixes)]
    per_chunk = max(1, 2048 // n)
    correct, solves, counts = [], [], {v.value: 0 for v in Verdict}
    chunks = range(0, len(problems), per_chunk)
    for c_idx, start in enumerate(tqdm(chunks, desc=desc, disable=not progress)):
        gens = engine.generate([p.ids for p in prompts[start : start + per_chunk]], n, params, derive(seed, c_idx))
        if ledger is not None:
            ledger.add(f"{category}/prefill", gens.prefill_flops)
            ledger.add(f"{category}/decode", gens.decode_flops)
        chunk = list(zip(prompts[start:], gens.samples))
        responses = [[prompt.response(tokenizer, s.tokens) for s in group] for prompt, group in chunk]
        verdicts = iter(verify_all(task, [(prompt.problem, r) for (prompt, _), rs in zip(chunk, responses) for r in rs]))
        for rs in responses:
            right = []
            for r in rs:
                v = next(verdicts)
                counts[v.value] += 1
                if v is Verdict.CORRECT:
                    right.append(r)
            correct.append(len(right))
            solves.append(right)
    return EvalResult(n, correct, counts, solves)
