"""`prefixrl train`: on-policy RL on a pool of prefixed and unprefixed problems (paper §3, Eq. 3.1),
and the paper's baselines on the same trainer (§6.3).

The algorithm, with every choice the paper leaves open made explicit (docs/choices.md):

* Pool: each step draws `prompts_per_step` prompts, round(mix · B) of them prefixed (a problem plus the
  first tokens of a correct off-policy trace, placed as the start of the assistant's response) and the
  rest unprefixed. mix = 0.75 is the paper's 3 prefixed : 1 unprefixed. Draws are seeded by
  (seed, step), so a run is a pure function of its seed and resuming needs no sampler state.
* Rollouts: n samples per prompt from the current policy; reward = verifier verdict on the *whole*
  response, prefix + completion.
* Update: REINFORCE with a group-mean baseline, A_i = r_i − mean(r), no std-normalisation, no KL, no
  entropy bonus, no clipping, one optimizer step per batch. Only tokens the policy generated are
  trained (`prefixrl.mask.trained_mask`): the problem and the prefix get exactly zero gradient.
  Groups whose advantages are all zero carry no gradient and are not run through the update at all, so
  the ledger charges only the compute a run must spend.
* Cost: sampling 2·N per token (prefill of problem + prefix, and decode), update 6·N per token of every
  updated sequence (prefix included); an offline cost (rejection sampling) is charged up front.

Methods (only the method's own part differs; task, sampler, optimizer and ledger are shared):

| method        | prefixed share | group                        | off-policy tokens          | before RL   |
|---------------|----------------|------------------------------|----------------------------|-------------|
| prefixrl      | mix (0.75)     | n on-policy                  | —                          | —           |
| prefixrl-only | 1              | n on-policy                  | —                          | —           |
| rl            | 0              | n on-policy                  | —                          | —           |
| sft-rl        | 0              | n on-policy                  | —                          | SFT, traces |
| offpolicy     | 0              | n−1 on-policy + 1 trace      | clipped importance weights | —           |
| luffy         | 0              | n−1 on-policy + 1 trace      | policy shaping p/(p+γ)     | —           |
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from prefixrl.engine import Sampler, SamplingParams
from prefixrl.evaluate import evaluate
from prefixrl.flops import Ledger, sample_flops, train_flops
from prefixrl.io.checkpoint import (
    checkpoints,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_policy,
)
from prefixrl.io.errors import BadInput
from prefixrl.io.store import atomic_write, write_json_atomic
from prefixrl.losses import (
    group_advantages,
    importance_weights,
    shaping_weights,
    token_logprobs,
    weighted_pg_loss,
)
from prefixrl.mask import make_batch, micro_batches
from prefixrl.model import load, param_count
from prefixrl.precision import CHOICES as PRECISIONS
from prefixrl.precision import autocast
from prefixrl.prefixes import Prefix
from prefixrl.render import decode_response, render_prompt
from prefixrl.sft import sft_on_traces
from prefixrl.tasks.base import Problem, Task, Verdict, reward
from prefixrl.traces import Trace
from prefixrl.verifier import verify_all


@dataclass(frozen=True)
class Method:
    mix: float | None  # share of prefixed prompts; None = the configured mix
    offpolicy: str | None = None  # "importance" | "shaping": one trace joins each group that has one
    sft_first: bool = False


METHODS = {
    "prefixrl": Method(mix=None),
    "prefixrl-only": Method(mix=1.0),
    "rl": Method(mix=0.0),
    "sft-rl": Method(mix=0.0, sft_first=True),
    "offpolicy": Method(mix=0.0, offpolicy="importance"),
    "luffy": Method(mix=0.0, offpolicy="shaping"),
}


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
    sft_epochs: int = 2  # sft-rl: passes over the traces before RL
    sft_lr: float = 1e-4  # sft-rl: SFT learning rate
    is_clip: float = 1.0  # offpolicy: upper clip of the token-level importance weights
    shaping_gamma: float = 0.1  # luffy: γ of the policy shaping p/(p+γ) (LUFFY's value)
    max_nonfinite_steps: int = 5  # stop after this many consecutive steps with a non-finite loss or gradient
    save_every: int = 0  # also save the policy (HF format) to out/step-NNNNNN every this many steps; 0 = final only
    checkpoint_every: int = 25  # full checkpoint (policy, optimizer, ledger, RNG) for exact --resume
    precision: str = "auto"  # auto | bf16 | fp32: auto = bf16 on a GPU with native bf16, fp32 on every CPU
    compile: bool = False  # torch.compile the model's backbone for the training forward
    micro_batch_tokens: int = 8192  # padded tokens per training micro-batch (gradients are accumulated)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        if not 0.0 <= self.mix <= 1.0:
            raise ValueError(f"mix must be in [0, 1], got {self.mix}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose from: {', '.join(PRECISIONS)}")
        if self.micro_batch_tokens < 1:
            raise ValueError(f"micro_batch_tokens must be >= 1, got {self.micro_batch_tokens}")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if self.prompts_per_step < 1 or self.samples_per_prompt < 2:
            raise ValueError("need prompts_per_step >= 1 and samples_per_prompt >= 2 (a group baseline needs 2)")

    @property
    def prefixed_share(self) -> float:
        fixed = METHODS[self.method].mix
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


def _scatter(values: list[list[float]], mask: torch.Tensor) -> torch.Tensor:
    """Place each row's per-token values on that row's trained positions (the mask's ones, in order)."""
    out = torch.zeros_like(mask)
    for b, vals in enumerate(values):
        if vals:
            out[b, mask[b].nonzero().squeeze(-1)] = torch.tensor(vals, dtype=out.dtype)
    return out


@torch.no_grad()
def base_logprobs(model, tokenizer, traces: list[Trace], ledger: Ledger) -> dict[str, list[float]]:
    """log π₀ of every trace token (and EOS) under the starting policy: the behaviour side of the
    importance weights. One forward pass per trace, charged to the ledger."""
    out, n_params = {}, param_count(model)
    for t in traces:
        batch = make_batch([render_prompt(tokenizer, t.question)], [list(t.token_ids) + [tokenizer.eos_token_id]],
                           tokenizer.pad_token_id)
        logp, _ = token_logprobs(model, batch)
        out[t.problem_id] = logp[0][batch.mask[0] > 0].tolist()
        ledger.add("offpolicy/base_logprobs", sample_flops(n_params, int(batch.lengths.sum())))
    return out


def train_rl(
    model, tokenizer, task: Task, cfg: RLSettings, unprefixed: list[Problem], prefixed: list[Prefix], out: Path,
    charged_flops: float = 0.0, traces: list[Trace] | None = None, eval_prefixed: list[Prefix] | None = None,
    eval_heldout: list[Problem] | None = None, progress: bool = True, resume: bool = False,
    restart_if_changed: bool = False, tracker=None,
) -> dict:
    """Run one method; write metrics.jsonl, ledger.json, result.json and the final policy (HF format) to `out`.

    Every `checkpoint_every` steps the full state is checkpointed (`prefixrl.io.checkpoint`). With `resume`,
    a run killed at any point continues from its newest valid checkpoint and ends exactly where the
    uninterrupted run would have: batches and sampling seeds are functions of (seed, step), and the
    checkpoint holds parameters, optimizer state, ledger, curve and torch's RNG state. A run folder
    started with other settings is an error, or (`restart_if_changed`, for the demo's and bench's own
    scratch folders) discarded. `tracker` (prefixrl.io.tracking) mirrors every logged record.
    """
    method = METHODS[cfg.method]
    traces = traces or []
    if cfg.prefixed_share > 0 and not prefixed:
        raise ValueError(f"method {cfg.method} needs prefixes (run `prefixrl prefixes`) or mix = 0")
    if (method.offpolicy or method.sft_first) and not traces:
        raise ValueError(f"method {cfg.method} needs traces (run `prefixrl collect`)")
    out.mkdir(parents=True, exist_ok=True)
    key = run_key(cfg, charged_flops, unprefixed, prefixed, traces)
    if restart_if_changed and _saved_key(out) not in (None, key):
        shutil.rmtree(out)
        out.mkdir(parents=True)
    if (out / "result.json").is_file() or checkpoints(out):
        saved = json.loads((out / "result.json").read_text())["key"] if (out / "result.json").is_file() else None
        if not resume:
            raise BadInput(f"{out}: holds a run already; pass --resume to continue it, or choose another --out")
        if saved is not None:  # finished before: hand back its policy and result
            _check_key(out, saved, key)
            model.load_state_dict(load(out / "final")[0].state_dict())
            return json.loads((out / "result.json").read_text())["result"]
    torch.manual_seed(cfg.seed)
    n_params = param_count(model)
    device = next(model.parameters()).device
    amp = autocast(cfg.precision, device)
    backbone = torch.compile(model.base_model, dynamic=True) if cfg.compile else None
    engine = Sampler(model, tokenizer.eos_token_id, tokenizer.pad_token_id, autocast=amp)
    params = SamplingParams(cfg.temperature, cfg.top_p, cfg.max_new_tokens)
    trace_of = {t.problem_id: t for t in traces} if method.offpolicy else {}
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    eval_set = unprefixed[: cfg.eval_problems]
    eval_pre = (eval_prefixed or prefixed)[: cfg.eval_problems]
    n_on = cfg.samples_per_prompt - (1 if method.offpolicy else 0)  # a trace takes one place in its group
    norm = cfg.prompts_per_step * cfg.samples_per_prompt * cfg.max_new_tokens  # constant: see losses.py
    ckpt, corrupt = latest_checkpoint(out) if resume else (None, [])
    for msg in corrupt:
        warnings.warn(f"skipping checkpoint: {msg}", stacklevel=2)
    if ckpt is not None:
        state = load_checkpoint(ckpt, model, opt)
        _check_key(out, state["key"], key)
        first, skips, curve = state["step"] + 1, state["skips"], state["curve"]
        ledger, logp_base = Ledger.from_dict(state["ledger"]), state["logp_base"]
        torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
        _truncate_log(out / "metrics.jsonl", state["step"])
    else:
        first, skips, curve, ledger = 1, 0, [], Ledger()
        ledger.add("offline/charged", charged_flops)
        logp_base = base_logprobs(model, tokenizer, traces, ledger) if method.offpolicy == "importance" else {}
        if method.sft_first:
            sft_on_traces(model, tokenizer, traces, cfg.sft_epochs, 16, cfg.sft_lr, cfg.seed, ledger)
        (out / "metrics.jsonl").write_text("")
    log = (out / "metrics.jsonl").open("a")

    def checkpoint_eval(step: int) -> None:
        point = {"step": step, "flops": ledger.total() - ledger.total("eval/")}
        r = evaluate(engine, tokenizer, task, eval_set, cfg.eval_samples, params, seed=cfg.seed + 7, ledger=ledger)
        point["train_acc_unprefixed"] = r.pass_at(1)
        point["train_acc_prefixed"] = None
        if eval_pre:
            r = evaluate(engine, tokenizer, task, [p.problem for p in eval_pre], cfg.eval_samples, params,
                         seed=cfg.seed + 8, ledger=ledger, prefixes=[list(p.prefix_ids) for p in eval_pre])
            point["train_acc_prefixed"] = r.pass_at(1)
        if eval_heldout:
            r = evaluate(engine, tokenizer, task, eval_heldout, cfg.eval_samples, params, seed=cfg.seed + 9, ledger=ledger)
            point["heldout_acc_unprefixed"] = r.pass_at(1)
        curve.append(point)
        log.write(json.dumps({"kind": "eval", **point}) + "\n")
        log.flush()
        if tracker is not None:
            tracker.log({"kind": "eval", **point})

    def checkpoint(step: int) -> None:
        log.flush()
        os.fsync(log.fileno())
        save_checkpoint(out, step, model, tokenizer, opt, {
            "key": key, "skips": skips, "curve": curve, "ledger": ledger.to_dict(), "logp_base": logp_base,
            "torch_rng": torch.get_rng_state().tolist()})

    if ckpt is None:
        checkpoint_eval(0)
        checkpoint(0)
    bar = tqdm(range(first, cfg.steps + 1), desc=f"train {cfg.method}", disable=not progress, initial=first - 1,
               total=cfg.steps)
    t0, done = time.time(), first - 1
    for step in bar:
        if cfg.flops_budget and ledger.total() - ledger.total("eval/") >= cfg.flops_budget:
            break
        done = step
        # 1. prompts: problem ids (+ prefix ids, token-exact)
        items = draw_batch(unprefixed, prefixed, cfg.prefixed_share, cfg.prompts_per_step, cfg.seed, step)
        prompts = [render_prompt(tokenizer, it.problem.question) + it.prefix_ids for it in items]
        # 2. rollouts from the current policy; (offpolicy / luffy) the problem's trace joins its group
        gens = engine.generate(prompts, n_on, params, seed=cfg.seed * 1_000_003 + step)
        ledger.add("rl/prefill", gens.prefill_flops)
        ledger.add("rl/decode", gens.decode_flops)
        groups = [[(s.tokens, None) for s in group] for group in gens.samples]  # (completion ids, trace)
        for it, group in zip(items, groups):
            if it.problem.id in trace_of:
                t = trace_of[it.problem.id]
                group.append((list(t.token_ids) + [tokenizer.eos_token_id], t))
        # 3. reward on the whole response (prefix + completion), advantages within each group
        verdicts = verify_all(task, [(it.problem, decode_response(tokenizer, it.prefix_ids + ids))
                                     for it, group in zip(items, groups) for ids, _ in group])
        flat = iter(verdicts)
        rewards = [[reward(next(flat)) for _ in group] for group in groups]
        advs = [group_advantages(torch.tensor([r]))[0] for r in rewards]
        # 4. update on the groups that carry signal; context = prompt + prefix, trained = completion
        rows = [(g, i) for g, a in enumerate(advs) if a.abs().sum() > 0 for i in range(len(groups[g]))]
        grad_norm = 0.0
        if rows:
            context = [prompts[g] for g, _ in rows]
            trained = [groups[g][i][0] for g, i in rows]
            row_trace = [groups[g][i][1] for g, i in rows]  # None for the policy's own samples
            row_adv = torch.stack([advs[g][i] for g, i in rows])

            def micro_losses():  # length-bucketed micro-batches; `norm` is constant, so their sum is the loss
                for mb in micro_batches(context, trained, cfg.micro_batch_tokens):
                    batch = make_batch([context[r] for r in mb], [trained[r] for r in mb], tokenizer.pad_token_id)
                    with amp():
                        logp, _ = token_logprobs(model, batch, backbone)
                    weights = token_weights(method, cfg, logp, batch.mask, [row_trace[r] for r in mb], logp_base)
                    yield weighted_pg_loss(logp, batch.mask, row_adv[mb], weights, norm)

            grad_norm, applied = guarded_update(model, opt, micro_losses(), cfg.grad_clip)
            ledger.add("rl/train", train_flops(n_params, sum(len(c) + len(t) for c, t in zip(context, trained))))
            skips = 0 if applied else skips + 1
            if skips >= cfg.max_nonfinite_steps:
                save_policy(out / "final", model, tokenizer)  # parameters are those of the last finite step
                raise NonFiniteError(f"{skips} consecutive steps had a non-finite loss or gradient (last at step "
                                     f"{step}); stopped, last good policy in {out / 'final'}")
        # 5. log
        kinds = [bool(it.prefix_ids) for it in items]
        on_logps = [lp for grp in gens.samples for s in grp for lp in s.logprobs]
        rec = {
            "kind": "step", "step": step, "flops": ledger.total() - ledger.total("eval/"),
            "reward_prefixed": _mean([x for r, k in zip(rewards, kinds) if k for x in r[:n_on]]),
            "reward_unprefixed": _mean([x for r, k in zip(rewards, kinds) if not k for x in r[:n_on]]),
            "zero_adv_groups": sum(float(a.abs().sum() == 0) for a in advs) / len(advs),
            "entropy": -sum(on_logps) / max(1, len(on_logps)),  # Monte-Carlo estimate from sampled tokens
            "grad_norm": grad_norm, "trained_rows": len(rows), "skipped_nonfinite": bool(rows) and skips > 0,
            "verifier_timeouts": sum(v is Verdict.TIMEOUT for v in verdicts),
            "verifier_errors": sum(v is Verdict.ERROR for v in verdicts),
            "seconds": round(time.time() - t0, 2),
        }
        log.write(json.dumps(rec) + "\n")
        if tracker is not None:
            tracker.log(rec)
        bar.set_postfix(r_pre=rec["reward_prefixed"], r_un=rec["reward_unprefixed"])
        if step % cfg.eval_every == 0:
            checkpoint_eval(step)
        if cfg.save_every and step % cfg.save_every == 0:
            save_policy(out / f"step-{step:06d}", model, tokenizer)
        if step % cfg.checkpoint_every == 0:
            checkpoint(step)
    if curve[-1]["step"] != done:
        checkpoint_eval(done)
    log.close()
    result = {"curve": curve, "ledger": ledger.to_dict(), "steps": done}
    save_policy(out / "final", model, tokenizer)
    write_json_atomic(out / "ledger.json", ledger.to_dict())
    write_json_atomic(out / "result.json", {"key": key, "result": result})  # written last: the run is complete
    for c in checkpoints(out):
        shutil.rmtree(c, ignore_errors=True)
    return result


def result_settings(cfg: RLSettings) -> dict:
    """The settings a run's result depends on (how often it checkpoints does not change what it learns)."""
    return {k: v for k, v in asdict(cfg).items() if k != "checkpoint_every"}


def run_key(cfg: RLSettings, charged_flops: float, unprefixed: list[Problem], prefixed: list[Prefix],
            traces: list[Trace]) -> dict:
    """What a run's result is a function of; a resumed run must match it."""
    ids = [p.id for p in unprefixed] + [f"{p.problem_id}:{p.cut}" for p in prefixed] + [t.problem_id for t in traces]
    return {"settings": result_settings(cfg), "charged_flops": charged_flops,
            "data": hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]}


def _saved_key(out: Path) -> dict | None:
    """The key of the run in `out` (finished or checkpointed), if any."""
    if (out / "result.json").is_file():
        return json.loads((out / "result.json").read_text())["key"]
    ckpt, _ = latest_checkpoint(out)
    return json.loads((ckpt / "state.json").read_text())["key"] if ckpt else None


def _check_key(out: Path, saved: dict, key: dict) -> None:
    if saved == key:
        return
    diff = [k for k in key["settings"] if saved["settings"].get(k) != key["settings"][k]]
    what = ", ".join(diff) if diff else ("charged FLOPs" if saved["charged_flops"] != key["charged_flops"] else "data")
    raise BadInput(f"{out}: the run there was started with different settings ({what}); resume it with the same "
                   "command, or choose another --out")


def _truncate_log(path: Path, step: int) -> None:
    """Drop log records written after the checkpoint being resumed (they will be written again)."""
    keep = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut off by the kill
            continue
        if rec["step"] <= step:
            keep.append(line + "\n")
    atomic_write(path, lambda f: f.write("".join(keep).encode()))


class NonFiniteError(RuntimeError):
    """Training stopped after repeated non-finite steps."""


def guarded_update(model, opt, losses, grad_clip: float) -> tuple[float, bool]:
    """Backward, clip, and step only if the loss and the gradient norm are finite.

    `losses` is the step's loss, or an iterable of micro-batch losses that sum to it (each is
    backpropagated as it comes, so only one micro-batch's graph is alive at a time).
    A skipped step leaves parameters and optimizer state untouched (the gradients are dropped).
    Returns (gradient norm before clipping, whether the step was applied).
    """
    opt.zero_grad(set_to_none=True)
    for loss in [losses] if isinstance(losses, torch.Tensor) else losses:
        if not torch.isfinite(loss):
            opt.zero_grad(set_to_none=True)
            return float("nan"), False
        loss.backward()
    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip))
    if not math.isfinite(grad_norm):
        opt.zero_grad(set_to_none=True)
        return grad_norm, False
    opt.step()
    return grad_norm, True


def token_weights(method: Method, cfg: RLSettings, logp: torch.Tensor, mask: torch.Tensor,
                  row_traces: list[Trace | None], logp_base: dict[str, list[float]]) -> torch.Tensor:
    """w_t on ∇log π: 1 on on-policy rows; the method's weight on rows that are an off-policy trace."""
    weights = torch.ones_like(logp)
    off = [b for b, t in enumerate(row_traces) if t is not None]
    if not off:
        return weights
    if method.offpolicy == "shaping":
        weights[off] = shaping_weights(logp[off], cfg.shaping_gamma)
    else:
        base = _scatter([logp_base[row_traces[b].problem_id] for b in off], mask[off])
        accept = torch.tensor([-math.log(row_traces[b].samples) for b in off])  # log p̂, p̂ = 1 / samples
        length = torch.tensor([float(len(row_traces[b].token_ids) + 1) for b in off])
        weights[off] = importance_weights(logp[off], base, accept, length, cfg.is_clip)
    return weights


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None
