"""`prefixrl train`: on-policy RL on a pool of prefixed and unprefixed problems (paper §3, Eq. 3.1).

The algorithm, with every choice the paper leaves open made explicit (docs/choices.md):

* Pool: each step draws `prompts_per_step` prompts, round(mix · B) of them prefixed (a problem plus the
  first tokens of a correct off-policy trace, placed as the start of the assistant's response) and the
  rest unprefixed. mix = 0.75 is the paper's 3 prefixed : 1 unprefixed; `--method rl` is mix = 0 and
  `--method prefixrl-only` is mix = 1. Draws are seeded by (seed, step), so a run is a pure function
  of its seed and resuming needs no sampler state.
* Rollouts: n samples per prompt from the current policy; reward = verifier verdict on the *whole*
  response, prefix + completion.
* Update: REINFORCE with a group-mean baseline, A_i = r_i − mean(r), no std-normalisation, no KL, no
  entropy bonus, no clipping, one optimizer step per batch. Only tokens the policy generated are
  trained (`prefixrl.mask.trained_mask`): the problem and the prefix get exactly zero gradient.
  Groups whose advantages are all zero carry no gradient and are not run through the update at all, so
  the ledger charges only the compute a real run must spend.
* Cost: sampling 2·N per token (prefill of problem + prefix, and decode), update 6·N per token of every
  updated sequence (prefix included); an offline cost (rejection sampling) can be charged up front.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from prefixrl.engine import Sampler, SamplingParams
from prefixrl.evaluate import evaluate
from prefixrl.flops import Ledger, train_flops
from prefixrl.losses import group_advantages, reinforce_loss, token_logprobs
from prefixrl.mask import make_batch
from prefixrl.model import param_count
from prefixrl.prefixes import Prefix
from prefixrl.render import decode_response, render_prompt
from prefixrl.tasks.base import Problem, Task, reward

METHOD_MIX = {"prefixrl": None, "rl": 0.0, "prefixrl-only": 1.0}  # None: use the configured mix


@dataclass(frozen=True)
class RLSettings:
    method: str = "prefixrl"
    steps: int = 300
    flops_budget: float = 0.0  # stop once total FLOPs (charged offline cost included) reach this; 0 = off
    prompts_per_step: int = 8
    samples_per_prompt: int = 8
    mix: float = 0.75
    lr: float = 3e-5
    grad_clip: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    eval_every: int = 20
    eval_problems: int = 64
    eval_samples: int = 4
    save_every: int = 0  # also save the policy (HF format) to out/step-NNNNNN every this many steps; 0 = final only
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHOD_MIX:
            raise ValueError(f"unknown method {self.method!r}; choose from {', '.join(METHOD_MIX)}")
        if not 0.0 <= self.mix <= 1.0:
            raise ValueError(f"mix must be in [0, 1], got {self.mix}")
        if self.prompts_per_step < 1 or self.samples_per_prompt < 2:
            raise ValueError("need prompts_per_step >= 1 and samples_per_prompt >= 2 (a group baseline needs 2)")

    @property
    def prefixed_share(self) -> float:
        fixed = METHOD_MIX[self.method]
        return self.mix if fixed is None else fixed


@dataclass
class Item:
    problem: Problem
    prefix_ids: list[int]  # [] for an unprefixed problem


def draw_batch(unprefixed: list[Problem], prefixed: list[Prefix], share: float, size: int, seed: int, step: int) -> list[Item]:
    """The step's prompts: round(share·size) prefixed, the rest unprefixed, sampled without replacement."""
    rng = random.Random(f"batch:{seed}:{step}")
    n_pre = round(share * size) if prefixed else 0
    items = [Item(p.problem, list(p.prefix_ids)) for p in rng.sample(prefixed, min(n_pre, len(prefixed)))]
    items += [Item(p, []) for p in rng.sample(unprefixed, min(size - len(items), len(unprefixed)))]
    return items


def train_rl(
    model, tokenizer, task: Task, cfg: RLSettings, unprefixed: list[Problem], prefixed: list[Prefix], out: Path,
    charged_flops: float = 0.0, eval_prefixed: list[Prefix] | None = None, progress: bool = True,
) -> dict:
    """Run RL; write metrics.jsonl and the final policy (HF format) to `out`. Returns the curve."""
    if cfg.prefixed_share > 0 and not prefixed:
        raise ValueError(f"method {cfg.method} needs prefixes (run `prefixrl prefixes`) or mix = 0")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    n_params = param_count(model)
    engine = Sampler(model, tokenizer.eos_token_id, tokenizer.pad_token_id)
    params = SamplingParams(cfg.temperature, cfg.top_p, cfg.max_new_tokens)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    ledger = Ledger()
    ledger.add("offline/charged", charged_flops)
    eval_set = unprefixed[: cfg.eval_problems]
    eval_pre = (eval_prefixed or prefixed)[: cfg.eval_problems]
    curve: list[dict] = []
    log = (out / "metrics.jsonl").open("w")

    def checkpoint_eval(step: int) -> None:
        point = {"step": step, "flops": ledger.total() - ledger.total("eval/")}
        r = evaluate(engine, tokenizer, task, eval_set, cfg.eval_samples, params, seed=cfg.seed + 7, ledger=ledger)
        point["train_acc_unprefixed"] = r.pass_at(1)
        point["train_acc_prefixed"] = None
        if eval_pre:
            r = evaluate(engine, tokenizer, task, [p.problem for p in eval_pre], cfg.eval_samples, params,
                         seed=cfg.seed + 8, ledger=ledger, prefixes=[list(p.prefix_ids) for p in eval_pre])
            point["train_acc_prefixed"] = r.pass_at(1)
        curve.append(point)
        log.write(json.dumps({"kind": "eval", **point}) + "\n")
        log.flush()

    checkpoint_eval(0)
    bar = tqdm(range(1, cfg.steps + 1), desc=f"train {cfg.method}", disable=not progress)
    t0, done = time.time(), 0
    for step in bar:
        if cfg.flops_budget and ledger.total() - ledger.total("eval/") >= cfg.flops_budget:
            break
        done = step
        # 1. prompts: problem ids (+ prefix ids, token-exact)
        items = draw_batch(unprefixed, prefixed, cfg.prefixed_share, cfg.prompts_per_step, cfg.seed, step)
        prompts = [render_prompt(tokenizer, it.problem.question) + it.prefix_ids for it in items]
        # 2. rollouts from the current policy
        gens = engine.generate(prompts, cfg.samples_per_prompt, params, seed=cfg.seed * 1_000_003 + step)
        ledger.add("rl/prefill", gens.prefill_flops)
        ledger.add("rl/decode", gens.decode_flops)
        # 3. reward on the whole response: prefix + completion
        rewards = torch.tensor([
            [reward(task.verify(it.problem, decode_response(tokenizer, it.prefix_ids + s.tokens))) for s in group]
            for it, group in zip(items, gens.samples)
        ])
        adv = group_advantages(rewards)  # [G, n]
        # 4. update on the rows that carry signal; context = prompt + prefix, trained = completion
        rows = [(g, i) for g in range(len(items)) for i in range(cfg.samples_per_prompt) if adv[g].abs().sum() > 0]
        grad_norm = 0.0
        if rows:
            batch = make_batch([prompts[g] for g, _ in rows], [gens.samples[g][i].tokens for g, i in rows],
                               tokenizer.pad_token_id)
            logp, _ = token_logprobs(model, batch)
            a = torch.stack([adv[g, i] for g, i in rows])
            loss = reinforce_loss(logp, batch.mask, a, norm=len(items) * cfg.samples_per_prompt * cfg.max_new_tokens)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
            if math.isfinite(grad_norm):
                opt.step()
            ledger.add("rl/train", train_flops(n_params, int(batch.lengths.sum())))
        # 5. log
        kinds = torch.tensor([bool(it.prefix_ids) for it in items])
        gen_logps = [lp for grp in gens.samples for s in grp for lp in s.logprobs]
        rec = {
            "kind": "step", "step": step, "flops": ledger.total() - ledger.total("eval/"),
            "reward_prefixed": rewards[kinds].mean().item() if kinds.any() else None,
            "reward_unprefixed": rewards[~kinds].mean().item() if (~kinds).any() else None,
            "zero_adv_groups": float((adv.abs().sum(1) == 0).float().mean()),
            "entropy": -sum(gen_logps) / max(1, len(gen_logps)),  # Monte-Carlo estimate from sampled tokens
            "grad_norm": grad_norm, "trained_rows": len(rows), "seconds": round(time.time() - t0, 2),
        }
        log.write(json.dumps(rec) + "\n")
        bar.set_postfix(r_pre=rec["reward_prefixed"], r_un=rec["reward_unprefixed"])
        if step % cfg.eval_every == 0:
            checkpoint_eval(step)
        if cfg.save_every and step % cfg.save_every == 0:
            model.save_pretrained(out / f"step-{step:06d}")
            tokenizer.save_pretrained(out / f"step-{step:06d}")
    if curve[-1]["step"] != done:
        checkpoint_eval(done)
    log.close()
    model.save_pretrained(out / "final")
    tokenizer.save_pretrained(out / "final")
    (out / "ledger.json").write_text(json.dumps(ledger.to_dict(), indent=2))
    return {"curve": curve, "ledger": ledger.to_dict(), "steps": done}
