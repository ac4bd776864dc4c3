"""`prefixrl train`: on-policy RL on a pool of prefixed and unprefixed problems (paper §3, Eq. 3.1),
and the paper's baselines on the same trainer (§6.3; what each one changes: `prefixrl.rl.methods`).

One step (`rl_step`), with every choice the paper leaves open made explicit (docs/choices.md):

1. Draw: `prompts_per_step` prompts, round(mix · B) of them prefixed (a problem plus the first tokens of a
   correct off-policy trace, placed as the start of the assistant's response) and the rest unprefixed.
   mix = 0.75 is the paper's 3 prefixed : 1 unprefixed. Draws are seeded by (seed, step), so a run is a
   pure function of its seed and of the pool's state (`prefixrl.rl.pool`), which the checkpoint keeps.
2. Sample: n completions per prompt from the current policy (offpolicy / luffy: the problem's trace
   takes one place in its group; beyond the paper, --prefixed-samples M: M of a prefixed problem's n from
   problem + prefix, n − M from the plain problem, one group).
3. Verify: reward = the verifier's verdict on the *whole* response, prefix + completion.
4. Advantages: REINFORCE with a group-mean baseline, A_i = r_i − mean(r) over the group's n; no
   std-normalisation, no KL, no entropy bonus, no clipping.
5. Update: one optimizer step on the groups that carry signal. Only tokens the policy generated are
   trained (`prefixrl.rl.mask.trained_mask`): the problem and the prefix get exactly zero gradient. Groups
   whose advantages are all zero carry no gradient and are not run through the update at all.
6. Ledger: sampling 2·N per token (prefill of problem + prefix, and decode), update 6·N per token of every
   updated sequence (prefix included); an offline cost (rejection sampling) is charged up front.
7. Pool: the on-policy groups update what the pool adapts, if anything (beyond the paper, off by default:
   the adaptive prefix ladders and harvested traces of `prefixrl.rl.pool`). Every `recollect_every` steps
   the loop runs rejection sampling with the current policy for problems still without a trace, charged.

The file reads top down: `train_rl` (the loop) → `rl_step` → `sample_groups`, `score` → `update` →
`guarded_update`; a step's groups travel as `Group` records.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm import tqdm

from prefixrl.data.collect import rejection_sample
from prefixrl.data.evaluate import evaluate
from prefixrl.data.prefixes import Prefix, PrefixedPrompt
from prefixrl.data.prompt import rendering_of, rendering_record
from prefixrl.data.tasks import task_identity, task_spec
from prefixrl.data.tasks.base import Problem, Task, Verdict, reward
from prefixrl.data.traces import Trace, save_traces
from prefixrl.data.verifier import verify_all
from prefixrl.io import run_state
from prefixrl.io.checkpoint import save_policy
from prefixrl.rl import exact
from prefixrl.rl.losses import group_advantages, token_logprobs, weighted_pg_loss
from prefixrl.rl.mask import make_batch, micro_batches
from prefixrl.rl.methods import METHODS, Method
from prefixrl.rl.offpolicy import base_logprobs, token_weights
from prefixrl.rl.pool import Pool
from prefixrl.rl.regft import own_completions
from prefixrl.rl.settings import RLSettings
from prefixrl.rl.sft import Examples, fit
from prefixrl.rollout import limits
from prefixrl.rollout.device import of as device_of
from prefixrl.rollout.engine import Engine, Sampler, SamplingParams
from prefixrl.rollout.flops import Ledger, train_flops
from prefixrl.rollout.model import load, param_count
from prefixrl.rollout.precision import autocast
from prefixrl.rollout.seeds import derive


@dataclass
class TrainingSet:
    """What a run trains and evaluates on: the task, its plain problems, the prefixes cut from correct
    traces, the traces themselves (offpolicy / luffy / sft-rl / adaptive cuts) and their offline cost."""

    task: Task
    unprefixed: list[Problem]
    prefixed: list[Prefix]
    traces: list[Trace] = field(default_factory=list)
    charged_flops: float = 0.0  # the offline cost of the traces (rejection sampling), charged up front
    eval_prefixed: list[Prefix] | None = None  # default: `prefixed`
    eval_heldout: list[Problem] | None = None


@dataclass
class RunOptions:
    """How a run is driven, never what it learns: progress bar, resume, the engine and a tracker."""

    progress: bool = True
    resume: bool = False  # continue from the newest valid checkpoint in `out`
    restart_if_changed: bool = False  # a run folder made with other settings is restarted, not refused
    tracker: object = None  # `prefixrl.io.tracking.Tracker`: mirrors every logged record
    engine: Engine | None = None  # default: the built-in sampler on the policy
    # called once `out` is known to hold this run (fresh, or its key matched on resume), before its first
    # step: where a caller writes what describes the run (the CLI's config.json), so a refused resume leaves
    # the folder as it was
    on_begin: Callable[[], None] | None = None


@dataclass
class Learner:
    """What an update changes, and how it computes: the policy, its optimizer, and the method's inputs."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    method: Method
    amp: object  # autocast context-manager factory (`prefixrl.rollout.precision`)
    backbone: object = None  # torch.compile'd backbone, or None
    traces: dict[str, Trace] | None = None  # offpolicy / luffy: problem id -> its trace
    logp_base: dict | None = None  # offpolicy: log π₀ of every trace token


@dataclass
class Group:
    """One prompt and its group: n on-policy completions, then (offpolicy / luffy) the problem's trace.
    With --prefixed-samples M < n a prefixed problem's group is two records, its M prefixed samples and its
    n − M plain ones, sharing `baseline` (one group-mean baseline over all n)."""

    prompt: PrefixedPrompt
    completions: list[list[int]]  # token ids of each member, the trace (+ EOS) last
    logprobs: list[list[float]]  # per on-policy completion, its sampled tokens' log-probs
    baseline: int = 0  # records with the same value share one baseline: one per drawn prompt
    trace: Trace | None = None  # the off-policy trace that is the group's last member
    verdicts: list[Verdict] = field(default_factory=list)  # per member, on the whole response (prefix included)
    rewards: list[float] = field(default_factory=list)
    advantages: torch.Tensor | None = None  # [members]: A_i = r_i − mean(r) (§3.6)

    @property
    def n_on(self) -> int:
        return len(self.logprobs)

    @property
    def members(self) -> list[tuple[list[int], Trace | None]]:
        """(completion ids, the trace it is or None) per member, in order."""
        return [(ids, self.trace if i >= self.n_on else None) for i, ids in enumerate(self.completions)]

    @property
    def has_signal(self) -> bool:
        """A group whose rewards are all equal has zero advantages: it carries no gradient."""
        return bool(self.advantages.abs().sum() > 0)


@dataclass
class StepRecord:
    """One RL step, as the log and the tests see it."""

    step: int
    prefixed: list[bool]  # per group record
    rewards: list[list[float]]  # per group record: its on-policy samples, then the trace (offpolicy / luffy)
    n_on: list[int]  # per group record: its on-policy samples
    zero_adv_groups: float  # share of drawn prompts whose whole group carries no signal
    trained_rows: int
    grad_norm: float
    applied: bool  # False: the loss or gradient was non-finite and the step was skipped untouched
    entropy: float
    verdicts: list[Verdict]
    fractions: list[float | None] = field(default_factory=list)  # per prompt: share of its trace given, None if plain

    @classmethod
    def of(cls, step: int, groups: list[Group], trained_rows: int, grad_norm: float, applied: bool) -> StepRecord:
        on_logps = [lp for g in groups for lps in g.logprobs for lp in lps]
        entropy = -sum(on_logps) / max(1, len(on_logps))  # Monte-Carlo estimate from the sampled tokens
        signal = {}  # per drawn prompt: does any of its records carry signal
        for g in groups:
            signal[g.baseline] = signal.get(g.baseline, False) or g.has_signal
        return cls(step, [g.prompt.prefixed for g in groups], [g.rewards for g in groups], [g.n_on for g in groups],
                   sum(not s for s in signal.values()) / len(signal), trained_rows, grad_norm, applied, entropy,
                   [v for g in groups for v in g.verdicts], [g.prompt.fraction for g in groups])

    def log(self, flops: float, seconds: float, skipped: bool) -> dict:
        on = [(r[:n], k) for r, n, k in zip(self.rewards, self.n_on, self.prefixed)]
        return {
            "kind": "step", "step": self.step, "flops": flops,
            "reward_prefixed": _mean([x for r, k in on if k for x in r]),
            "reward_unprefixed": _mean([x for r, k in on if not k for x in r]),
            "prefix_fraction": _mean([f for f in self.fractions if f is not None]),
            "samples_unprefixed": sum(len(r) for r, k in on if not k),
            "zero_adv_groups": self.zero_adv_groups, "entropy": self.entropy, "grad_norm": self.grad_norm,
            "trained_rows": self.trained_rows, "skipped_nonfinite": skipped,
            "verifier_timeouts": sum(v is Verdict.TIMEOUT for v in self.verdicts),
            "verifier_errors": sum(v is Verdict.ERROR for v in self.verdicts),
            "seconds": round(seconds, 2),
        }


def train_rl(model, tokenizer, data: TrainingSet, cfg: RLSettings, out: Path, run: RunOptions | None = None) -> dict:
    """Run one method; write metrics.jsonl, ledger.json, result.json and the final policy (HF format) to `out`.

    Every `checkpoint_every` steps the full state is checkpointed; with `run.resume`, a run killed at any
    point continues from its newest valid checkpoint and ends exactly where the uninterrupted run would
    have (`prefixrl.io.run_state`).
    """
    run = run or RunOptions()
    task = data.task
    cfg, method, traces = _checked(cfg, task, data.prefixed, data.traces or [])
    key = run_state.run_key(result_settings(cfg), data.charged_flops, identity(data, traces, tokenizer))
    finished = run_state.begin(out, key, run.resume, run.restart_if_changed)
    if finished is not None:  # the same run finished before: hand back its policy and result
        model.load_state_dict(load(out / "final")[0].state_dict())
        return finished
    torch.manual_seed(cfg.seed)
    learner, engine, state, ledger = _start(model, tokenizer, cfg, method, data, traces, out, key, run.resume,
                                            run.engine)
    if run.on_begin is not None:
        run.on_begin()
    pool = Pool(data.unprefixed, data.prefixed, traces, cfg.prefix_schedule, cfg.harvest, task, tokenizer,
                cfg.prefix_target, cfg.prefix_band, cfg.prefix_rungs, cfg.seed, recollect=cfg.recollect_every > 0)
    pool.restore(state.pool)  # (empty for a fresh run)
    log = (out / "metrics.jsonl").open("a")

    def record(rec: dict) -> None:
        log.write(json.dumps(rec) + "\n")
        if run.tracker is not None:
            run.tracker.log(rec)

    def eval_point(step: int) -> None:
        point = evaluate_point(engine, tokenizer, task, cfg, data.unprefixed, data.eval_prefixed or data.prefixed,
                               data.eval_heldout, ledger, model)
        state.curve.append({"step": step, **point})
        record({"kind": "eval", "step": step, **point})
        log.flush()

    def checkpoint(step: int) -> None:
        log.flush()
        os.fsync(log.fileno())
        state.step, state.ledger, state.pool = step, ledger.to_dict(), pool.state()
        run_state.save(out, state, model, tokenizer, learner.opt)

    first = state.step + 1 if state.curve else 1
    if not state.curve:
        eval_point(0)
        checkpoint(0)
    bar = tqdm(range(first, cfg.steps + 1), desc=f"train {cfg.method}", disable=not run.progress,
               initial=first - 1, total=cfg.steps)
    t0, done = time.time(), first - 1
    for step in bar:
        if cfg.flops_budget and _policy_flops(ledger) >= cfg.flops_budget:
            break
        done = step
        rec = rl_step(step, pool, engine, learner, task, tokenizer, cfg, ledger)
        if cfg.recollect_every and step % cfg.recollect_every == 0:
            recollect(pool, engine, task, tokenizer, cfg, step, ledger)
        if rec.trained_rows:
            state.skips = 0 if rec.applied else state.skips + 1
        if state.skips >= cfg.max_nonfinite_steps:
            save_policy(out / "final", model, tokenizer, policy_meta(task, tokenizer))  # parameters: the last finite step
            raise NonFiniteError(f"{state.skips} consecutive steps had a non-finite loss or gradient (last at step "
                                 f"{step}); stopped, last good policy in {out / 'final'}")
        line = rec.log(_policy_flops(ledger), time.time() - t0, bool(rec.trained_rows) and state.skips > 0)
        record({**line, **pool.log()})
        bar.set_postfix(r_pre=line["reward_prefixed"], r_un=line["reward_unprefixed"])
        if step % cfg.eval_every == 0:
            eval_point(step)
        if cfg.save_every and step % cfg.save_every == 0:
            save_policy(out / f"step-{step:06d}", model, tokenizer, policy_meta(task, tokenizer))
        if step % cfg.checkpoint_every == 0:
            checkpoint(step)
    if state.curve[-1]["step"] != done:
        eval_point(done)
    log.close()
    return _finish(out, key, model, tokenizer, task, state, ledger, pool, done)


def rl_step(step: int, pool: Pool, engine: Engine, learner: Learner, task: Task, tokenizer, cfg: RLSettings,
            ledger: Ledger) -> StepRecord:
    """Draw → sample → verify → advantages → update → ledger → pool (the module docstring's steps 1–7)."""
    prompts = pool.draw(tokenizer, cfg.prefixed_share, cfg.prompts_per_step, cfg.seed, step)
    groups = sample_groups(prompts, engine, learner, tokenizer, cfg, step, ledger)
    score(groups, task, tokenizer)
    # update on the groups that carry signal: context = prompt + prefix, trained = completion
    trained = [g for g in groups if g.has_signal]
    grad_norm, applied = update(learner, cfg, tokenizer, trained) if trained else (0.0, True)
    if trained:
        tokens = sum(len(g.prompt.ids) + len(ids) for g in trained for ids in g.completions)  # prompt and prefix too
        ledger.add("rl/train", train_flops(param_count(learner.model), tokens))
    # the pool learns from the on-policy samples: ladders' success, harvested traces (`prefixrl.rl.pool`)
    pool.observe(step, [g.prompt for g in groups], [g.completions[: g.n_on] for g in groups],
                 [g.verdicts[: g.n_on] for g in groups], tokenizer.eos_token_id, cfg.temperature, cfg.top_p,
                 f"harvest:{cfg.method}")
    return StepRecord.of(step, groups, sum(len(g.completions) for g in trained), grad_norm, applied)


def sample_groups(prompts: list[PrefixedPrompt], engine: Engine, learner: Learner, tokenizer, cfg: RLSettings,
                  step: int, ledger: Ledger) -> list[Group]:
    """n completions per prompt from the current policy, seeded by (seed, step); (offpolicy / luffy) the
    problem's trace takes the group's last place. With --prefixed-samples M < n, a prefixed prompt gets M
    and its plain problem the other n − M, in a second request; both records share the prompt's baseline."""
    n_on = cfg.samples_per_prompt - (1 if learner.method.offpolicy else 0)
    m = n_on if cfg.prefixed_samples is None else cfg.prefixed_samples
    requests = [(i, p, m if p.prefixed else n_on) for i, p in enumerate(prompts)]
    requests += [(i, PrefixedPrompt.of(tokenizer, p.problem), n_on - m) for i, p in enumerate(prompts)
                 if p.prefixed and m < n_on]
    groups = []
    for k, n in enumerate(sorted({n for _, _, n in requests}, reverse=True)):  # one engine call per group size
        batch = [(i, p) for i, p, size in requests if size == n]
        seed = derive(cfg.seed, step) if k == 0 else derive(derive(cfg.seed, step), n)  # k = 0: the paper's call
        gens = engine.generate([p.ids for _, p in batch], n, sampling_params(cfg), seed=seed)
        ledger.add("rl/prefill", gens.prefill_flops)
        ledger.add("rl/decode", gens.decode_flops)
        for (i, prompt), samples in zip(batch, gens.samples):
            group = Group(prompt, [s.tokens for s in samples], [s.logprobs for s in samples], baseline=i)
            group.trace = (learner.traces or {}).get(prompt.problem.id)
            if group.trace is not None:
                group.completions.append(list(group.trace.token_ids) + [tokenizer.eos_token_id])
            groups.append(group)
    return sorted(groups, key=lambda g: (g.baseline, not g.prompt.prefixed))  # the drawn order, prefixed part first


def score(groups: list[Group], task: Task, tokenizer) -> None:
    """Each member's verdict on its whole response, prefix + completion (one call, so the verifier pool
    works on the whole step at once), its reward, and the group's advantages: REINFORCE with a group-mean
    baseline (§3.6), over every record that shares the baseline."""
    verdicts = iter(verify_all(task, [(g.prompt.problem, g.prompt.response(tokenizer, ids)) for g in groups
                                      for ids in g.completions]))
    shared: dict[int, list[Group]] = {}
    for g in groups:
        g.verdicts = [next(verdicts) for _ in g.completions]
        g.rewards = [reward(v) for v in g.verdicts]
        shared.setdefault(g.baseline, []).append(g)
    for parts in shared.values():
        advantages = group_advantages(torch.tensor([[r for g in parts for r in g.rewards]]))[0]
        for g in parts:
            g.advantages, advantages = advantages[: len(g.rewards)], advantages[len(g.rewards):]


def update(learner: Learner, cfg: RLSettings, tokenizer, groups: list[Group]) -> tuple[float, bool]:
    """One optimizer step on every member of `groups`, in length-bucketed micro-batches. `norm` is a
    constant (rows × max new tokens, `prefixrl.rl.losses`), so the micro-batch losses sum to the step's loss."""
    rows = [(g.prompt.ids, ids, trace) for g in groups for ids, trace in g.members]
    context, trained, row_traces = (list(column) for column in zip(*rows))
    norm = cfg.prompts_per_step * cfg.samples_per_prompt * cfg.max_new_tokens
    device = device_of(learner.model)
    advantages = torch.cat([g.advantages for g in groups]).to(device)  # one per row, in the rows' order

    def micro_losses():
        for mb in micro_batches(context, trained, cfg.micro_batch_tokens):
            batch = make_batch([context[r] for r in mb], [trained[r] for r in mb], tokenizer.pad_token_id, device)
            with learner.amp():
                logp, _ = token_logprobs(learner.model, batch, learner.backbone)
            weights = token_weights(learner.method, cfg.is_clip, cfg.shaping_gamma, logp, batch.mask,
                                    [row_traces[r] for r in mb], learner.logp_base or {})
            yield weighted_pg_loss(logp, batch.mask, advantages[mb], weights, norm)

    return guarded_update(learner.model, learner.opt, micro_losses(), cfg.grad_clip)


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


def recollect(pool: Pool, engine: Engine, task: Task, tokenizer, cfg: RLSettings, step: int, ledger: Ledger) -> int:
    """Beyond the paper (`--recollect-every`): rejection sampling with the current policy on the plain
    problems still without a trace, at most `recollect_cap` samples each, seeded by (seed, step); every
    sample charged to the ledger under recollect/, each trace found added to the pool. Returns how many."""
    untraced = pool.untraced()
    if not untraced:
        return 0
    col = rejection_sample(engine, tokenizer, task, untraced, sampling_params(cfg), f"recollect:{cfg.method}@step{step}",
                           cap=cfg.recollect_cap, per_round=min(cfg.recollect_cap, 32), seed=derive(cfg.seed, step),
                           progress=False)
    for category, flops in col.ledger.to_dict().items():
        ledger.add(category.replace("collect/", "recollect/", 1), flops)
    for trace in col.traces:  # its own cost stays on the trace, as for any collected one
        pool.add(trace)
    return len(col.traces)


def sampling_params(cfg: RLSettings) -> SamplingParams:
    return SamplingParams(cfg.temperature, cfg.top_p, cfg.max_new_tokens)


def _finish(out: Path, key: dict, model, tokenizer, task, state, ledger: Ledger, pool: Pool, steps: int) -> dict:
    """The run's result, the traces it found (harvested, re-collected) and its final policy, written before
    `result.json` marks the run complete (`run_state.finish`)."""
    result = {"curve": state.curve, "ledger": ledger.to_dict(), "steps": steps}
    if state.before_rl:
        result["sft"] = state.before_rl
    if pool.harvest or pool.recollects:  # provenance in the trace store: the method and step that found each trace
        save_traces(out / "harvested.parquet", pool.harvested, tokenizer=tokenizer, task=task)
        result.update({k: v for k, v in pool.log().items() if k in ("harvested", "recollected")})
    save_policy(out / "final", model, tokenizer, policy_meta(task, tokenizer))
    run_state.finish(out, key, result)
    return result


def identity(data: TrainingSet, traces: list[Trace], tokenizer) -> list[str]:
    """What a run's data is, by content: the task's settings, the rendering, and every problem, prefix and
    trace with its question, answer and token ids. Ids alone are positions for generated tasks (a chain id
    names another problem under another --data-seed), so a resume on other data must differ here."""
    spec = task_identity(data.task) or {"name": getattr(data.task, "name", type(data.task).__name__)}
    rows = [["task", spec], ["rendering", rendering_record(tokenizer)["fingerprint"]]]
    rows += [["problem", p.id, p.question, p.answer] for p in data.unprefixed]
    rows += [["prefix", p.problem_id, p.question, p.answer, p.prefix_ids] for p in data.prefixed]
    rows += [["trace", t.problem_id, t.question, t.answer, t.token_ids] for t in traces]
    rows += [["heldout", p.id, p.question, p.answer] for p in data.eval_heldout or []]
    return [json.dumps(r, sort_keys=True, default=str) for r in rows]


def policy_meta(task, tokenizer=None) -> dict | None:
    """prefixrl.json of a trained policy folder: the task it was trained on (None for a task that is not a
    dataclass, which `task_spec` cannot describe), and how its prompts were rendered when not plainly, so
    the stages after it render alike (`prefixrl.cli.policy.load_policy`)."""
    import dataclasses

    meta = {"task": task_spec(task)} if dataclasses.is_dataclass(getattr(task, "inner", task)) else None
    if tokenizer is not None and not rendering_of(tokenizer).plain:
        meta = {**(meta or {}), "rendering": rendering_record(tokenizer)}
    return meta


def _checked(cfg: RLSettings, task: Task, prefixed: list[Prefix], traces: list[Trace]):
    """The settings, checked and with the task's response bound filled in; the method; its traces."""
    cfg.check()
    if cfg.max_new_tokens is None:  # the task owns its response-length bound
        cfg = replace(cfg, max_new_tokens=task.max_response_tokens)
    for name in ("samples_per_prompt", "eval_samples"):  # a group's tokens are held at once
        limits.check_call(getattr(cfg, name), cfg.max_new_tokens, name)
    method = METHODS[cfg.method]
    if cfg.prefix_schedule == "adaptive" and not traces:
        raise ValueError("--prefix-schedule adaptive cuts its own ladders from the traces: it needs --traces")
    if cfg.prefixed_share > 0 and not prefixed and not (cfg.harvest or cfg.recollect_every
                                                         or cfg.prefix_schedule == "adaptive"):
        raise ValueError(f"method {cfg.method} needs prefixes (run `prefixrl prefixes`) or mix = 0")
    if (method.offpolicy or method.before_rl == "traces") and not traces:
        raise ValueError(f"method {cfg.method} needs traces (run `prefixrl collect`)")
    if method.before_rl == "own-completions" and not prefixed:
        raise ValueError(f"method {cfg.method} completes the prefixed problems: it needs prefixes (run `prefixrl prefixes`)")
    return cfg, method, traces


def _start(model, tokenizer, cfg: RLSettings, method, data: TrainingSet, traces: list[Trace], out: Path, key: dict,
           resume: bool, engine: Engine | None):
    """The learner, the engine, and the run state: restored from the newest checkpoint, or fresh (the
    offline cost charged, the method's pre-RL phase run, the log started)."""
    amp = autocast(cfg.precision, device_of(model))
    learner = Learner(model, torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0),
                      method, amp, torch.compile(model.base_model, dynamic=True) if cfg.compile else None,
                      {t.problem_id: t for t in traces} if method.offpolicy else None)
    engine = engine or Sampler(model, tokenizer.eos_token_id, tokenizer.pad_token_id, autocast=amp)
    state = run_state.restore(out, key, model, learner.opt) if resume else None
    if state is None:
        state, ledger = run_state.RunState(key), Ledger()
        ledger.add("offline/charged", data.charged_flops)
        if method.offpolicy == "importance":
            state.logp_base = base_logprobs(model, tokenizer, traces, ledger)
        if method.before_rl:  # epochs and lr chosen by the run's SFT rule (`sft.fit`), never by a method's result
            state.before_rl = before_rl(model, tokenizer, data.task, cfg, method, traces, data.prefixed, engine, ledger)
        (out / "metrics.jsonl").write_text("")
    else:
        ledger = Ledger.from_dict(state.ledger)
    learner.logp_base = state.logp_base
    return learner, engine, state, ledger


def before_rl(model, tokenizer, task: Task, cfg: RLSettings, method: Method, traces: list[Trace],
              prefixed: list[Prefix], engine: Engine, ledger: Ledger) -> dict:
    """The SFT phase of sft-rl (on the traces) and regft-rl (on the policy's own verified completions of
    the prefixed problems, sampled here and charged): what it fitted, chose and measured."""
    counts = None
    if method.before_rl == "traces":
        examples = Examples.of_traces(tokenizer, traces)
    else:
        examples, counts = own_completions(engine, tokenizer, task, prefixed, cfg.regft_samples,
                                           sampling_params(cfg), cfg.seed, ledger)
        if not len(examples):  # nothing to fit: RL starts from the base, and the result says why
            return {"completions": counts, "lr": None, "epochs": 0, "rule": "no verified completion"}
    choice = asdict(fit(model, tokenizer, examples, cfg.sft_epochs, cfg.sft_lr, cfg.seed, ledger,
                        cfg.micro_batch_tokens, cfg.sft_rule))
    return choice if counts is None else {**choice, "completions": counts}


def evaluate_point(engine, tokenizer, task, cfg: RLSettings, unprefixed, prefixed, heldout, ledger: Ledger,
                   model=None) -> dict:
    """One point of the curve: unprefixed (and prefixed, and heldout) pass@1 on the first eval_problems.
    Where the task lists its correct responses, also the heldout pass@1 measured exactly by teacher forcing
    (`prefixrl.rl.exact`): at this task's pass rates a sampled estimate is a handful of samples, so only the
    exact one can say when a method reached another's accuracy. It samples nothing, so resume is unchanged."""
    params = SamplingParams(cfg.temperature, cfg.top_p, cfg.max_new_tokens)
    eval_set, eval_pre = unprefixed[: cfg.eval_problems], prefixed[: cfg.eval_problems]
    point = {"flops": _policy_flops(ledger)}
    point["train_acc_unprefixed"] = evaluate(engine, tokenizer, task, eval_set, cfg.eval_samples, params,
                                             seed=cfg.seed + 7, ledger=ledger).pass_at(1)
    point["train_acc_prefixed"] = None
    if eval_pre:
        point["train_acc_prefixed"] = evaluate(engine, tokenizer, task, [p.problem for p in eval_pre], cfg.eval_samples,
                                               params, seed=cfg.seed + 8, ledger=ledger,
                                               prefixes=[list(p.prefix_ids) for p in eval_pre]).pass_at(1)
    if heldout:
        point["heldout_acc_unprefixed"] = evaluate(engine, tokenizer, task, heldout, cfg.eval_samples, params,
                                                   seed=cfg.seed + 9, ledger=ledger).pass_at(1)
        if model is not None and exact.supports_exact(task):
            was_training = model.training
            point["heldout_exact_pass@1"] = exact.measure(model, tokenizer, task, heldout)["exact_pass@1"]
            model.train(was_training)
    return point


def _policy_flops(ledger: Ledger) -> float:
    """The FLOPs a method is charged: everything but evaluation and hyperparameter selection (`sft.fit`)."""
    return ledger.total() - ledger.total("eval/") - ledger.total("select/")


def result_settings(cfg: RLSettings) -> dict:
    """The settings a run's result depends on. How often it checkpoints does not change what it learns, and
    neither does re-collection's cap while re-collection is off: a run with it off keeps the key it had
    before re-collection existed, so the benches' cached runs stay valid across that addition; the same
    holds for the paper's whole-group prefixes (prefixed_samples unset), SFT's default rule and ReGFT's sample
    count in every other method."""
    inert = ({"checkpoint_every"} | ({"recollect_every", "recollect_cap"} if cfg.recollect_every == 0 else set())
             | ({"prefixed_samples"} if cfg.prefixed_samples is None else set())
             | ({"sft_rule"} if cfg.sft_rule == "search" else set())
             | ({"regft_samples"} if cfg.method != "regft-rl" else set()))
    return {k: v for k, v in asdict(cfg).items() if k not in inert}


class NonFiniteError(RuntimeError):
    """Training stopped after repeated non-finite steps."""


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None
