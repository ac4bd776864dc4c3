"""Exact pass@1 of a policy on a task that can list its correct responses, by teacher forcing.

Sampled pass@1 on hard problems is a poor instrument: at pass@1 ≈ 1e-3 a few thousand samples give a
relative error of tens of percent, and hard pass@1 ≈ p^H turns a small change in the per-step skill p
(from float rounding, a CPU's kernels, the thread count) into a large one. A task that can list its
correct responses lets us measure instead of sample:

* exact pass@1 of a problem = Σ over its correct responses of π(response + EOS | prompt), by teacher
  forcing (one forward pass, deterministic);
* greedy pass@1: argmax decoding is correct iff, along one correct response, every argmax is that
  response's next token (the greedy path is unique, so this is exact);
* per-step probability: pass@1^(1/steps), the per-step skill that would give that pass rate;
* the expected share of problems that rejection sampling solves within `cap` samples:
  mean_i 1 − (1 − p_i)^cap (paper §3.2: the cost PrefixRL is charged).

Token paths that decode to the same text (a special token the decoder drops, whitespace the verifier
strips) are not counted, so the exact figure is a lower bound on the true one; the sampled pass@1
reported beside it checks the gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prefixrl.data.prompt import encode_response, render_prompt
from prefixrl.data.tasks.base import Problem
from prefixrl.io.errors import BadInput
from prefixrl.rl.mask import make_batch
from prefixrl.rollout.device import of as device_of


def supports_exact(task) -> bool:
    """True for tasks that can list every correct response of a problem (the built-in `chain`)."""
    return callable(getattr(task, "correct_responses", None))


@dataclass
class Forced:
    """Teacher-forced logits along every correct response of every problem, at logit scale 1."""

    logits: torch.Tensor  # [N, V] float32, N = response tokens (EOS included) over all rows
    targets: torch.Tensor  # [N]
    row_of_token: torch.Tensor  # [N] which row each token belongs to
    problem_of_row: torch.Tensor  # [R] which problem each row (one correct response) belongs to
    steps: list[int]  # per problem

    def pass1(self, scale: float = 1.0) -> torch.Tensor:
        """Exact pass@1 per problem [P] at logit scale `scale`."""
        logp = torch.log_softmax(self.logits.double() * scale, dim=-1)
        tok = logp.gather(-1, self.targets[:, None]).squeeze(-1)
        return self._per_problem(self._per_row(tok).exp())

    def greedy(self) -> torch.Tensor:
        """Greedy correctness per problem [P] as 0/1 (no scale changes an argmax). A row is greedy-correct
        iff no position has a token it prefers strictly to the target."""
        wrong = (self.logits.gather(-1, self.targets[:, None]) < self.logits).any(-1).double()
        return self._per_problem((self._per_row(wrong) == 0).double())

    def per_problem(self, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pass1(scale), self.greedy()

    def _per_row(self, per_token: torch.Tensor) -> torch.Tensor:
        rows = int(self.problem_of_row.numel())
        return torch.zeros(rows, dtype=torch.float64).index_add_(0, self.row_of_token, per_token)

    def _per_problem(self, per_row: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(self.steps), dtype=torch.float64).index_add_(0, self.problem_of_row, per_row)
        return out.clamp(max=1.0)


@torch.no_grad()
def teacher_force(model, tokenizer, task, problems: list[Problem], batch_size: int = 256,
                  prefixes: list[str] | None = None) -> Forced:
    """One forward pass over every correct response (+ EOS) of every problem. With `prefixes` (texts, one
    per problem), each prompt is followed by its prefix and only the correct responses that begin with it
    are forced, from there on: exact success after the prefix."""
    if not supports_exact(task):
        raise BadInput(f"task {task.name!r} cannot list its correct responses; exact regime measurement needs a "
                       "task that can")
    model.eval()
    prefixes = prefixes or [""] * len(problems)
    rows = [(i, encode_response(tokenizer, r[len(prefixes[i]):])) for i, p in enumerate(problems)
            for r in task.correct_responses(p) if r.startswith(prefixes[i])]
    prompts = [render_prompt(tokenizer, p.question) + encode_response(tokenizer, pre, eos=False) if pre else
               render_prompt(tokenizer, p.question) for p, pre in zip(problems, prefixes)]
    logits, targets, row_of_token = [], [], []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        batch = make_batch([prompts[i] for i, _ in chunk], [r for _, r in chunk], tokenizer.pad_token_id,
                           device_of(model))
        sel = batch.mask.bool()
        out = model(input_ids=batch.ids).logits[:, :-1][sel].float()
        # the figures are summed on the host, in float64, whatever device computed the logits
        logits.append(out.cpu())
        targets.append(batch.ids[:, 1:][sel].cpu())
        sel = sel.cpu()
        row_of_token.append((torch.arange(len(chunk))[:, None].expand_as(sel)[sel]) + start)
    return Forced(torch.cat(logits), torch.cat(targets), torch.cat(row_of_token),
                  torch.tensor([i for i, _ in rows]), [task.steps(p) for p in problems])


def summarize(p: torch.Tensor, greedy: torch.Tensor, steps: list[int], cap: int | None = None) -> dict:
    """The regime figures of one split from per-problem exact pass@1 and greedy correctness."""
    step_p = [float(pi) ** (1.0 / s) if s > 0 else 1.0 for pi, s in zip(p.tolist(), steps)]
    out = {"problems": len(steps), "exact_pass@1": float(p.mean()), "greedy_pass@1": float(greedy.mean()),
           "step_prob": sum(step_p) / max(1, len(step_p))}
    if cap is not None:
        out.update(expected_collection(p, cap))
    return out


def expected_collection(p: torch.Tensor, cap: int) -> dict:
    """What rejection sampling with `cap` samples per problem is expected to buy, from exact pass@1."""
    # 1 − (1 − p)^cap, computed as −expm1(cap · log1p(−p)) so that p ≈ 1e-6 loses nothing to rounding.
    solved = -torch.expm1(cap * torch.log1p(-p.clamp(max=1 - 1e-12)))
    return {"cap": cap, "expected_yield": float(solved.mean()),
            # the chance that the whole collection finds nothing (the failure a gate exists to prevent)
            "p_no_trace": float(torch.exp(torch.log1p(-solved.clamp(max=1 - 1e-300)).sum()))}


def measure(model, tokenizer, task, problems: list[Problem], cap: int | None = None) -> dict:
    forced = teacher_force(model, tokenizer, task, problems)
    p, greedy = forced.per_problem()
    return summarize(p, greedy, forced.steps, cap)


LEARNED_AT = 0.01  # a problem counted as learned: exact pass@1 ten times the regime's target (1.0e-3)


def problem_pass1(model, tokenizer, task, problems: list[Problem]) -> torch.Tensor:
    """Exact pass@1 of each problem [P]."""
    return teacher_force(model, tokenizer, task, problems).pass1()


def spread(p: torch.Tensor) -> dict:
    """How per-problem exact pass@1 is spread over problems. Pass@1 is their mean, and at pass rates near
    1e-3 a policy can raise it by making one problem likely while most get less likely: the median problem,
    the count of problems at or above LEARNED_AT and the largest problem's share of the sum say which
    happened (the mean alone cannot)."""
    total = float(p.sum())
    return {"mean": float(p.mean()), "median": float(torch.quantile(p.double(), 0.5)), "learned": int((p >= LEARNED_AT).sum()),
            "top_share": float(p.max()) / total if total > 0 else None}


@torch.no_grad()
def rare_knowledge(model, tokenizer, task, problems: list[Problem]) -> float | None:
    """Mean probability of an admissible value at a rare step, teacher-forced along the reference
    response: 0.2 for a base that guesses the rare operations, 1 for a policy that knows them. A dense
    measure of the knowledge a trace carries (hard pass@1 moves only once all K steps are known), so a
    method that is learning the tables shows it before pass@1 does. None when the task has no rare steps."""
    targets = {p.id: task.rare_targets(p) for p in problems} if hasattr(task, "rare_targets") else {}
    if not any(targets.values()):
        return None
    model.eval()
    digit = torch.tensor([tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)])
    texts = [task.solution(p) for p in problems]
    responses = [encode_response(tokenizer, t, eos=False) for t in texts]
    if any(len(r) != len(t) for r, t in zip(responses, texts)):
        raise BadInput(f"rare_knowledge needs one token per character; {type(tokenizer).__name__} is not")
    prompts = [render_prompt(tokenizer, p.question) for p in problems]
    batch = make_batch(prompts, responses, tokenizer.pad_token_id, device_of(model))
    probs = torch.softmax(model(input_ids=batch.ids).logits.float(), dim=-1)[..., digit.to(batch.ids.device)].cpu()
    # the logits at position len(prompt) + offset - 1 predict response character `offset`
    mass = [float(probs[i, len(prompts[i]) + offset - 1, list(admissible)].sum())
            for i, p in enumerate(problems) for offset, admissible in targets[p.id]]
    return sum(mass) / len(mass)


def after_prefix(model, tokenizer, task, problems: list[Problem], fraction: float) -> torch.Tensor:
    """Exact success [P] of each problem after the first `fraction` of the characters of its reference
    response (`task.solution`) as the start of the model's own response (one token per character)."""
    texts = [task.solution(p) for p in problems]
    prefixes = [t[: int(fraction * len(t))] for t in texts]
    if any(len(encode_response(tokenizer, t, eos=False)) != len(t) for t in prefixes):
        raise BadInput(f"after_prefix needs one token per character; {type(tokenizer).__name__} is not")
    return teacher_force(model, tokenizer, task, problems, prefixes=prefixes).pass1()


@torch.no_grad()
def reuse_margin(model, tokenizer, task, problems: list[Problem]) -> float | None:
    """Mean, over the recurrences of the reference responses, of the model's probability of the value the
    reference writes there minus that of the other admissible value (teacher-forced). In the reuse switch
    the first is a copy of the operand's first use: the margin says whether copying works (near 1: always,
    leaving no gradient) and whether there is something to learn. In the control nothing before a
    recurrence names either value, so it should be about 0. None for a task without recurrences."""
    targets = {p.id: task.recurrence_targets(p) for p in problems} if hasattr(task, "recurrence_targets") else {}
    if not any(targets.values()):
        return None
    model.eval()
    texts = [task.solution(p) for p in problems]
    responses = [encode_response(tokenizer, t, eos=False) for t in texts]
    if any(len(r) != len(t) for r, t in zip(responses, texts)):
        raise BadInput(f"reuse_margin needs one token per character; {type(tokenizer).__name__} is not")
    digit = torch.tensor([tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)])
    prompts = [render_prompt(tokenizer, p.question) for p in problems]
    batch = make_batch(prompts, responses, tokenizer.pad_token_id, device_of(model))
    probs = torch.softmax(model(input_ids=batch.ids).logits.float(), dim=-1)[..., digit.to(batch.ids.device)].cpu()
    margins = [float(probs[i, len(prompts[i]) + offset - 1, copied] - probs[i, len(prompts[i]) + offset - 1, other])
               for i, p in enumerate(problems) for offset, copied, other in targets[p.id]]
    return sum(margins) / len(margins)
