"""Supervised fine-tuning before RL: the first half of the SFT→RL baseline (paper §6.3), and of ReGFT's
(`prefixrl.rl.regft`: SFT on the policy's own verified completions of prefixed problems).

What is fitted is a set of `Examples`: context ids (the rendered problem; for ReGFT also the prefix) and
trained ids (a trace and EOS; for ReGFT the completion). Loss = token-mean NLL of the trained ids given the
context, through the same `trained_mask` as everything else (context tokens get no gradient).

SFT→RL is the paper's strongest baseline, so it must be the correct one. arXiv 2604.23747 found that
many mixed-policy papers compared against an SFT→RL that dropped micro-batches under gradient
accumulation or weighted its loss per micro-batch instead of per token; fixed, it beat them all. Here:

* the normaliser of a step is the number of trained tokens in the *whole* step, so each micro-batch's
  loss is its summed NLL over that one count and the micro-batch losses sum to the full batch's
  token-mean NLL (every token weighs the same, whichever micro-batch and sequence it is in);
* every row of the step lands in exactly one micro-batch (`mask.micro_batches`), and each one's
  gradient is accumulated before the single optimizer step;
* epochs and learning rate are chosen by a rule the run states (`SFT_RULES`), never by a method's
  result: by default the least NLL on a validation split of the examples over an lr grid and the epochs
  (`search`); or at a given lr, epochs by that validation NLL (`early-stop`); or a fixed depth (`epochs`),
  which is how the depth of SFT is studied (docs/last_word.md: deeper SFT can harm the RL after it).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from prefixrl.data.prompt import render_prompt
from prefixrl.data.traces import Trace
from prefixrl.rl.losses import sft_loss, token_logprobs
from prefixrl.rl.mask import Batch, make_batch, micro_batches
from prefixrl.rl.settings import SFT_RULES
from prefixrl.rollout.device import of as device_of
from prefixrl.rollout.flops import Ledger, sample_flops, train_flops
from prefixrl.rollout.model import param_count

LR_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0)  # the learning rates tried, around the configured one
VALIDATION_SHARE = 0.2  # traces held out to choose epochs and learning rate
MIN_VALIDATION = 2  # fewer held-out traces than this: no choice is made, the configured values are used
BATCH_ROWS = 16  # traces per optimizer step


def sft_step(model, opt, batch: Batch, ledger: Ledger, category: str, n_params: int) -> float:
    """One supervised step on the batch's trained tokens (token-mean NLL), clipped at norm 1; charged 6ND."""
    logp, _ = token_logprobs(model, batch)
    loss = sft_loss(logp, batch.mask)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    ledger.add(category, train_flops(n_params, int(batch.lengths.sum())))
    return loss.item()


def micro_losses(model, context: list[list[int]], trained: list[list[int]], pad_id: int,
                 max_tokens: int) -> Iterator[torch.Tensor]:
    """Per micro-batch: its summed NLL over the trained-token count of the whole step. They sum to the
    step's token-mean NLL, whatever the split (the micro-batch-mean bug averages means instead)."""
    total = sum(len(t) for t in trained)
    for rows in micro_batches(context, trained, max_tokens):
        batch = make_batch([context[r] for r in rows], [trained[r] for r in rows], pad_id, device_of(model))
        logp, _ = token_logprobs(model, batch)
        yield -(logp * batch.mask).sum() / total


def accumulated_step(model, opt, context: list[list[int]], trained: list[list[int]], pad_id: int, max_tokens: int,
                     ledger: Ledger, category: str) -> float:
    """One optimizer step over every micro-batch of the step (gradients accumulated), clipped at norm 1."""
    opt.zero_grad(set_to_none=True)
    loss = 0.0
    for part in micro_losses(model, context, trained, pad_id, max_tokens):
        part.backward()
        loss += float(part.detach())
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    ledger.add(category, train_flops(param_count(model), sum(len(c) + len(t) for c, t in zip(context, trained))))
    return loss


@dataclass
class Examples:
    """What SFT fits: per row, the context ids (no gradient), the trained ids and the problem the row is of
    (validation holds out whole problems, so a problem's rows never sit on both sides)."""

    context: list[list[int]] = field(default_factory=list)
    trained: list[list[int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @staticmethod
    def of_traces(tokenizer, traces: list[Trace]) -> Examples:
        """SFT→RL's examples: the rendered problem, then its trace and EOS."""
        return Examples([render_prompt(tokenizer, t.question) for t in traces],
                        [list(t.token_ids) + [tokenizer.eos_token_id] for t in traces], [t.problem_id for t in traces])

    def __len__(self) -> int:
        return len(self.trained)

    def rows(self, idx: list[int]) -> Examples:
        return Examples([self.context[i] for i in idx], [self.trained[i] for i in idx], [self.problems[i] for i in idx])

    def split(self, seed: int) -> tuple[Examples, Examples] | None:
        """(validation, train): VALIDATION_SHARE of the problems, drawn with `seed`, and the rest, rows in
        the drawn order of their problems; None when fewer than MIN_VALIDATION problems would be held out."""
        rows_of: dict[str, list[int]] = {}
        for i, p in enumerate(self.problems):
            rows_of.setdefault(p, []).append(i)
        problems = list(rows_of)
        random.Random(f"sft-split:{seed}").shuffle(problems)
        n_val = int(len(problems) * VALIDATION_SHARE)
        if n_val < MIN_VALIDATION or len(problems) - n_val < 1:
            return None
        return (self.rows([i for p in problems[:n_val] for i in rows_of[p]]),
                self.rows([i for p in problems[n_val:] for i in rows_of[p]]))


def sft_on(model, tokenizer, examples: Examples, epochs: int, batch_size: int, lr: float, seed: int,
           ledger: Ledger, max_tokens: int = 8192, after_epoch=None, category: str = "sft/train") -> list[float]:
    """`epochs` passes over the examples in seeded random order; returns the per-step losses.
    `after_epoch(epoch)` is called after each pass (validation, in `fit`)."""
    if not len(examples):
        raise ValueError("SFT needs at least one example")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    rng, losses = random.Random(f"sft:{seed}"), []
    context, trained = examples.context, examples.trained
    model.train()
    for epoch in range(1, epochs + 1):
        order = list(range(len(examples)))
        rng.shuffle(order)
        for i in range(0, len(order), batch_size):
            rows = order[i : i + batch_size]
            losses.append(accumulated_step(model, opt, [context[r] for r in rows], [trained[r] for r in rows],
                                           tokenizer.pad_token_id, max_tokens, ledger, category))
        if after_epoch is not None:
            after_epoch(epoch)
    return losses


@torch.no_grad()
def nll_and_entropy(model, tokenizer, examples: Examples, ledger: Ledger, category: str) -> tuple[float, float]:
    """Token-mean NLL of the examples' trained ids under `model`, and its mean entropy at those positions
    (2ND, to `category`)."""
    batch = make_batch(examples.context, examples.trained, tokenizer.pad_token_id, device_of(model))
    logp, entropy = token_logprobs(model, batch)
    ledger.add(category, sample_flops(param_count(model), int(batch.lengths.sum())))
    n = batch.mask.sum()
    return float(-(logp * batch.mask).sum() / n), float((entropy * batch.mask).sum() / n)


@dataclass(frozen=True)
class SFTChoice:
    """What `fit` chose and measured; written into the run's result."""

    lr: float
    epochs: int
    rule: str
    validation_nll: dict  # "lr" -> NLL after each epoch (epoch 0 = the base)
    entropy_before: float  # mean token entropy on the examples, base model
    entropy_after: float  # the same after SFT
    examples: int | None = None  # rows fitted (None: SFT→RL's traces, one per problem, as before ReGFT)


def fit(model, tokenizer, examples: Examples, max_epochs: int, lr: float, seed: int, ledger: Ledger,
        max_tokens: int = 8192, rule: str = "search") -> SFTChoice:
    """SFT with epochs and learning rate chosen by `rule` (`SFT_RULES`). search: hold out VALIDATION_SHARE
    of the problems (seeded), train on the rest at each lr in lr × LR_FACTORS for up to `max_epochs`, keep
    the (lr, epochs) with the least validation NLL (0 epochs, no SFT, is a candidate), then refit from the
    base on all examples with it; the grid spans two decades, so that the choice lands inside it.
    early-stop: the same at `lr` alone. epochs: `max_epochs` passes at `lr`, nothing held out. With too
    few problems to hold out any, the configured (lr, max_epochs) is used.

    The refit is charged to the method ("sft/train"). The search is hyperparameter selection, which no
    method is charged for (the paper does not count tuning either, and PrefixRL's and RL's own learning
    rate is chosen outside the run): it goes to "select/", recorded in the ledger but outside the budget.
    """
    if rule not in SFT_RULES:
        raise ValueError(f"unknown SFT rule {rule!r}; choose from {', '.join(SFT_RULES)}")
    _, entropy_before = nll_and_entropy(model, tokenizer, examples, ledger, "eval/sft-entropy")
    halves = examples.split(seed) if rule != "epochs" else None
    if halves is None:
        sft_on(model, tokenizer, examples, max_epochs, BATCH_ROWS, lr, seed, ledger, max_tokens)
        why = "configured" if rule == "epochs" else "configured (too few problems to validate)"
        return SFTChoice(lr, max_epochs, why, {}, entropy_before,
                         nll_and_entropy(model, tokenizer, examples, ledger, "eval/sft-entropy")[1], _row_count(examples))
    val, train = halves
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    base_nll = nll_and_entropy(model, tokenizer, val, ledger, "select/sft-validate")[0]
    table, best = {}, (base_nll, lr, 0)
    for factor in LR_FACTORS if rule == "search" else (1.0,):
        model.load_state_dict(base)
        curve = [base_nll]

        def validate(epoch: int, curve=curve) -> None:
            curve.append(nll_and_entropy(model, tokenizer, val, ledger, "select/sft-validate")[0])

        sft_on(model, tokenizer, train, max_epochs, BATCH_ROWS, lr * factor, seed, ledger, max_tokens, validate,
               category="select/sft-train")
        table[f"{lr * factor:.3g}"] = curve
        epoch = min(range(len(curve)), key=curve.__getitem__)
        if curve[epoch] < best[0]:
            best = (curve[epoch], lr * factor, epoch)
    model.load_state_dict(base)
    _, chosen_lr, chosen_epochs = best
    if chosen_epochs:
        sft_on(model, tokenizer, examples, chosen_epochs, BATCH_ROWS, chosen_lr, seed, ledger, max_tokens)
    held = len(set(val.problems))
    return SFTChoice(chosen_lr, chosen_epochs, f"least validation NLL ({held} of {held + len(set(train.problems))} "
                     f"{'traces' if _row_count(examples) is None else 'problems'} held out)", table, entropy_before,
                     nll_and_entropy(model, tokenizer, examples, ledger, "eval/sft-entropy")[1], _row_count(examples))


def _row_count(examples: Examples) -> int | None:
    """The row count a choice records: None where each problem has one row (SFT→RL's traces), so the
    result of an SFT→RL run reads as it did before rows were counted."""
    return None if len(set(examples.problems)) == len(examples) else len(examples)
