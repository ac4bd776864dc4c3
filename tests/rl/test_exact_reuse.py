"""Exact success after a prefix and the reuse margin (`prefixrl.rl.exact`), the reuse setting's gates'
instruments (docs/last_word.md §4), checked against a direct computation on a tiny model."""

import torch

from prefixrl.data.prompt import encode_response, render_prompt
from prefixrl.data.tasks.chain import ChainTask
from prefixrl.rl import exact
from prefixrl.rl.losses import token_logprobs
from prefixrl.rl.mask import make_batch

TASK = ChainTask(easy_max_steps=6, hard_steps=6, rare_steps=2, classes=1, recurrences=1)


def direct(model, tok, problem, prefix: str) -> float:
    """Σ over the correct responses that begin with `prefix` of π(rest + EOS | prompt + prefix)."""
    total = 0.0
    for r in TASK.correct_responses(problem):
        if not r.startswith(prefix):
            continue
        context = render_prompt(tok, problem.question) + encode_response(tok, prefix, eos=False)
        batch = make_batch([context], [encode_response(tok, r[len(prefix):])], tok.pad_token_id)
        with torch.no_grad():
            logp, _ = token_logprobs(model, batch)
        total += float((logp * batch.mask).sum().exp())
    return total


def test_success_after_a_prefix_is_the_sum_over_the_correct_completions(tiny_model, tok):
    problems = TASK.problems("hard_train", 3, 0)
    for fraction in (0.0, 0.5, 0.8):
        got = exact.after_prefix(tiny_model, tok, TASK, problems, fraction)
        for p, g in zip(problems, got.tolist()):
            text = TASK.solution(p)
            assert abs(g - direct(tiny_model, tok, p, text[: int(fraction * len(text))])) < 1e-6
    whole = exact.after_prefix(tiny_model, tok, TASK, problems, 0.0)
    assert torch.allclose(whole, exact.problem_pass1(tiny_model, tok, TASK, problems))


def test_the_reuse_margin_reads_the_recurrence_position(tiny_model, tok):
    problems = TASK.problems("hard_heldout", 4, 0)
    margin = exact.reuse_margin(tiny_model, tok, TASK, problems)
    digits = [tok.convert_tokens_to_ids(str(d)) for d in range(10)]
    want = []
    for p in problems:
        prompt, text = render_prompt(tok, p.question), TASK.solution(p)
        [(offset, copied, other)] = TASK.recurrence_targets(p)
        ids = prompt + encode_response(tok, text[:offset], eos=False)
        with torch.no_grad():
            probs = torch.softmax(tiny_model(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1)
        want.append(float(probs[digits[copied]] - probs[digits[other]]))
    assert abs(margin - sum(want) / len(want)) < 1e-6
    assert exact.reuse_margin(tiny_model, tok, ChainTask(easy_max_steps=6, hard_steps=6), problems[:1]) is None
