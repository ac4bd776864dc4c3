"""`prefixrl bench perf`: where the time goes, measured side by side in one run (docs/performance.md).

Every ratio compares two things timed in the same process, alternating, best of `repeats`, on the
embedded base model (the bench's, pretrained once and cached in --work):
* sampling tokens/s of the built-in sampler against transformers' `generate` (same model, prompts,
  temperature 1, no top-k), with prefixes of 50 % of a correct solution and without;
* training tokens/s and achieved FLOP/s of a PrefixRL update, against the machine's matmul peak measured
  here, and against the plain path (full-vocabulary logits, one padded batch);
* rejection-sampling samples/s (sampling plus verification, through `collect.rejection_sample`);
* the wall-clock of one RL step (sample, verify, update) as the prefix grows;
* the top operations of one decode step, through transformers' own cache and through the preallocated one
  (`prefixrl.rollout.kv_cache`), from torch's profiler;
* bf16 against float32 for sampling and training, on a CPU with native bf16;
* (without --quick) `prefixrl demo` and `prefixrl demo --quick`, run for real in --work, with their
  stage-by-stage wall-clock.
FLOP/s use the ledger's counts (2N per sampled token, 6N per trained token), so they are the FLOPs the
method is charged, not what the hardware executed on padding.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from pathlib import Path

import torch

from prefixrl.data.collect import rejection_sample
from prefixrl.data.prefixes import Prefix, PrefixedPrompt
from prefixrl.data.prompt import encode_response, render_prompt
from prefixrl.embedded.pretrain import ensure_pretrained
from prefixrl.io.store import write_json_atomic
from prefixrl.rl.losses import weighted_pg_loss
from prefixrl.rl.mask import make_batch
from prefixrl.rl.methods import METHODS
from prefixrl.rl.pool import Pool
from prefixrl.rl.settings import RLSettings
from prefixrl.rl.train import Group, Learner, guarded_update, rl_step, update
from prefixrl.rollout.engine import Sampler, SamplingParams
from prefixrl.rollout.flops import Ledger, train_flops
from prefixrl.rollout.model import load, param_count
from prefixrl.rollout.precision import native_bf16
from prefixrl_lab import pipeline
from prefixrl_lab.reports import save

FRACTIONS = (0.0, 0.25, 0.5, 0.75)


def best_seconds(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def matmul_peak(dtype=torch.float32, size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of one large square matmul: the ceiling a dense model's step can approach on this machine."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    return 2 * size**3 / best_seconds(lambda: a @ b, repeats)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").is_file():
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": native_bf16(torch.device("cpu"))}


def prefixed_prompts(tok, task, problems, fraction: float) -> list[list[int]]:
    """Rendered problem + the first `fraction` of the reference solution's tokens (a correct trace)."""
    out = []
    for p in problems:
        sol = encode_response(tok, task.solution(p), eos=False)
        out.append(render_prompt(tok, p.question) + sol[: int(fraction * len(sol))])
    return out


def hf_generate(model, tok, prompts: list[list[int]], n: int, params: SamplingParams, seed: int) -> int:
    """transformers' generate on the same left-padded prompts; returns the tokens it generated (to EOS)."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
    torch.manual_seed(seed)
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, num_return_sequences=n,
                         max_new_tokens=params.max_new_tokens, temperature=params.temperature, top_k=0, top_p=1.0,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)[:, width:]
    ends = (out == tok.eos_token_id).int()
    first = torch.where(ends.any(1), ends.argmax(1) + 1, torch.full((len(out),), out.shape[1]))
    return int(first.sum())


def sampling(model, tok, prompts, n, params, repeats) -> dict:
    sampler = Sampler(model, tok.eos_token_id, tok.pad_token_id)
    unshared = Sampler(model, tok.eos_token_id, tok.pad_token_id, share_prefix=False, bucket=False)
    res = {}
    for name, run in [("builtin", lambda: sampler.generate(prompts, n, params, seed=0)),
                      ("builtin_unshared", lambda: unshared.generate(prompts, n, params, seed=0)),
                      ("generate", lambda: hf_generate(model, tok, prompts, n, params, seed=0))]:
        out = {}
        secs = best_seconds(lambda: out.update(r=run()), repeats)  # noqa: B023
        r = out["r"]
        tokens = r if isinstance(r, int) else sum(len(s.tokens) for grp in r.samples for s in grp)
        res[name] = {"seconds": secs, "tokens": tokens, "tokens_per_s": tokens / secs}
        if not isinstance(r, int):
            res[name]["flops_per_s"] = r.flops / secs
    return res


def train_groups(tok, task, problems, n: int, fraction: float, max_new: int, seed: int = 0) -> list[Group]:
    """Groups as one PrefixRL update sees them: each problem prefixed with the first `fraction` of its
    reference solution, n completions of realistic length, advantages spread over [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    groups = []
    for p in problems:
        sol = encode_response(tok, task.solution(p), eos=True)
        cut = int(fraction * (len(sol) - 1))
        prompt, rest = PrefixedPrompt.of(tok, p, sol[:cut], fraction), sol[cut:]
        completions = []
        for _ in range(n):  # completions of realistic length around the rest of the solution
            k = max(1, min(max_new, len(rest) + int(torch.randint(-4, 5, (1,), generator=g))))
            completions.append((rest * 2)[:k])
        groups.append(Group(prompt, completions, [[0.0] * len(c) for c in completions],
                            advantages=torch.linspace(-1, 1, n)))
    return groups


def plain_losses(model, tok, groups: list[Group], norm: float):
    """The update's loss as it was computed before the speed paths: full-vocabulary logits at every
    position, one padded batch (the reference the trainer's own `update` is timed against)."""
    context = [g.prompt.ids for g in groups for _ in g.completions]
    trained = [ids for g in groups for ids in g.completions]
    adv = torch.cat([g.advantages for g in groups])
    b = make_batch(context, trained, tok.pad_token_id)
    logits = model(input_ids=b.ids).logits[:, :-1].float()
    logp = torch.log_softmax(logits, -1).gather(-1, b.ids[:, 1:, None]).squeeze(-1)
    yield weighted_pg_loss(logp, b.mask, adv, torch.ones_like(logp), norm)


def train_step_seconds(model, tok, groups: list[Group], max_new: int, repeats: int, plain: bool = False) -> float:
    """One update, timed: the trainer's own `update` (or, plain, the reference path). lr 0: the weights
    stay as they were."""
    cfg = RLSettings(prompts_per_step=len(groups), samples_per_prompt=len(groups[0].completions), lr=0.0,
                     max_new_tokens=max_new)
    learner = Learner(model, torch.optim.AdamW(model.parameters(), lr=0.0), METHODS["prefixrl"], contextlib.nullcontext)
    norm = float(cfg.prompts_per_step * cfg.samples_per_prompt * max_new)
    if plain:
        return best_seconds(lambda: guarded_update(model, learner.opt, plain_losses(model, tok, groups, norm), 1.0),
                            repeats)
    return best_seconds(lambda: update(learner, cfg, tok, groups), repeats)


def rl_step_seconds(model, tok, task, problems, n: int, params: SamplingParams, fraction: float,
                    repeats: int) -> float:
    """One step of `train.rl_step` itself, every prompt prefixed with the first `fraction` of its reference
    solution (fraction 0: standard RL). The optimizer has lr 0, so timing leaves the weights as they were."""
    method = "prefixrl-only" if fraction > 0 else "rl"
    cfg = RLSettings(method=method, prompts_per_step=len(problems), samples_per_prompt=n, lr=0.0,
                     max_new_tokens=params.max_new_tokens, temperature=params.temperature, top_p=params.top_p)
    prefixes = []
    for p in problems:
        sol = encode_response(tok, task.solution(p), eos=False)
        cut = int(fraction * len(sol))
        prefixes.append(Prefix(p.id, p.question, p.answer, sol[:cut], fraction, cut, len(sol)))
    pool = Pool(problems, prefixes if fraction > 0 else [])
    learner = Learner(model, torch.optim.AdamW(model.parameters(), lr=0.0), METHODS[method], contextlib.nullcontext)
    sampler = Sampler(model, tok.eos_token_id, tok.pad_token_id)
    return best_seconds(lambda: rl_step(1, pool, sampler, learner, task, tok, cfg, Ledger()), repeats)


def run_perf(cfg, task) -> dict:
    """cfg: a BenchConfig (work, out, quick, json, hard_steps, pretrain settings)."""
    pcfg = pipeline.base_config(cfg.work / "base", cfg, calibration=cfg.calibration)
    ensure_pretrained(pcfg, progress=cfg.progress)
    model, tok = load(cfg.work / "base")
    model.eval()
    n_prompts, n, repeats = (16, 4, 1) if cfg.quick else (64, 8, 2)
    params = SamplingParams(max_new_tokens=task.max_response_tokens)
    problems = task.problems("hard_train", n_prompts, 0)
    peak = matmul_peak()
    res: dict = {"machine": machine(), "model_params": param_count(model), "matmul_peak_flops": peak,
                 "prompts": n_prompts, "samples_per_prompt": n, "max_new_tokens": params.max_new_tokens}
    with torch.no_grad():
        for key, frac in [("noprefix", 0.0), ("prefix50", 0.5)]:
            s = sampling(model, tok, prefixed_prompts(tok, task, problems, frac), n, params, repeats)
            res[f"sampling_{key}"] = s
            res[f"sampler_vs_generate_{key}"] = s["builtin"]["tokens_per_s"] / s["generate"]["tokens_per_s"]
            res[f"shared_vs_unshared_{key}"] = s["builtin"]["tokens_per_s"] / s["builtin_unshared"]["tokens_per_s"]
    groups = train_groups(tok, task, problems[: max(1, n_prompts // 8)], 8, 0.5, params.max_new_tokens)
    tokens = sum(len(g.prompt.ids) + len(ids) for g in groups for ids in g.completions)
    secs = train_step_seconds(model, tok, groups, params.max_new_tokens, repeats + 1)
    plain = train_step_seconds(model, tok, groups, params.max_new_tokens, repeats + 1, plain=True)
    flops = train_flops(param_count(model), tokens)
    res["train"] = {"rows": sum(len(g.completions) for g in groups), "tokens": tokens, "seconds": secs, "tokens_per_s": tokens / secs,
                    "flops_per_s": flops / secs, "plain_seconds": plain}
    res["train_fraction_of_peak"] = flops / secs / peak
    res["train_speedup_vs_plain"] = plain / secs
    res["sampling_fraction_of_peak"] = res["sampling_prefix50"]["builtin"]["flops_per_s"] / peak
    col_problems = task.problems("hard_train", 8 if cfg.quick else 32, 1)
    t = time.perf_counter()
    col = rejection_sample(Sampler(model, tok.eos_token_id, tok.pad_token_id), tok, task, col_problems, params,
                           "perf", cap=32 if cfg.quick else 128, per_round=32, progress=False)
    res["rejection_sampling"] = {"samples": col.summary()["samples"], "seconds": time.perf_counter() - t}
    res["rejection_samples_per_s"] = res["rejection_sampling"]["samples"] / res["rejection_sampling"]["seconds"]
    step_problems = problems[: 4 if cfg.quick else 8]
    res["step_seconds_by_prefix_fraction"] = {
        str(f): rl_step_seconds(model, tok, task, step_problems, n, params, f, repeats) for f in FRACTIONS}
    if not cfg.quick:  # side by side: what bf16 would buy (or cost) on this CPU, for `--precision`
        res["bf16"] = bf16_against_fp32(model, tok, prefixed_prompts(tok, task, problems, 0.5), n, params,
                                        groups, repeats)
    res["decode_step_profile"] = {name: decode_step_profile(model, tok, prefixed_prompts(tok, task, problems, 0.5),
                                                            n, params, static)
                                  for name, static in (("transformers_cache", False), ("preallocated_cache", True))}
    res["startup_seconds"] = startup_seconds()
    if not cfg.quick:
        res.update(demo_timings(cfg))
    res["quick"] = cfg.quick
    save(cfg.out / "performance.json", {"kind": "perf", **res})
    if cfg.json is not None:
        write_json_atomic(cfg.json, res)
    return res


STARTUP = {  # what a user waits for before the first line of output
    "prefixrl --help": ["--help"],
    "prefixrl train --help": ["train", "--help"],
    # a stage from start to its first line (here its one-line error): imports, parsing and checks
    "prefixrl train (start-up to first output)": ["train", "--model", "/nonexistent/model"],
}


def startup_seconds(repeats: int = 3) -> dict:
    """Wall-clock of each STARTUP command in a fresh interpreter, best of `repeats`."""
    import subprocess
    import sys

    out = {}
    for name, args in STARTUP.items():
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "prefixrl_lab", *args], capture_output=True, check=False)
            times.append(time.perf_counter() - t)
        out[name] = min(times)
    return out


def bf16_against_fp32(model, tok, prompts, n, params, groups, repeats) -> dict:
    """Seconds of the same sampling call and the same update, in float32 and under bf16 autocast."""
    out = {}
    for name, ctx in (("fp32", contextlib.nullcontext), ("bf16", lambda: torch.autocast("cpu", dtype=torch.bfloat16))):
        sampler = Sampler(model, tok.eos_token_id, tok.pad_token_id, autocast=ctx)
        with torch.no_grad():
            out[f"sampling_seconds_{name}"] = best_seconds(lambda: sampler.generate(prompts, n, params, seed=0),  # noqa: B023
                                                           repeats)
        with ctx():
            out[f"train_seconds_{name}"] = train_step_seconds(model, tok, groups, params.max_new_tokens, repeats + 1)
    return out


def decode_step_profile(model, tok, prompts, n, params, static: bool, top: int = 10) -> dict:
    """The `top` operations of one decode step by self CPU time (torch.profiler over one `generate`, divided
    by its decode steps), through transformers' cache (static False) or the preallocated one."""
    from torch.profiler import ProfilerActivity, profile

    sampler = Sampler(model, tok.eos_token_id, tok.pad_token_id, static_cache=static)
    with torch.no_grad():
        g = sampler.generate(prompts, n, params, seed=0)  # warm-up: buffers, kernels
        steps = max(len(s.tokens) for grp in g.samples for s in grp)
        t = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            sampler.generate(prompts, n, params, seed=0)
        seconds = time.perf_counter() - t
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {"generate_seconds_profiled": seconds, "decode_steps": steps,
            "top": [{"op": e.key, "calls_per_step": e.count / steps, "self_us_per_step": e.self_cpu_time_total / steps}
                    for e in ops]}


def demo_timings(cfg) -> dict:
    """`prefixrl demo` and `prefixrl demo --quick`, run for real (in --work/demo, --work/demo-quick)."""
    from prefixrl_lab.configs import DemoConfig
    from prefixrl_lab.demo import run_demo

    out = {}
    for key, quick in (("quick_demo", True), ("demo", False)):
        t = time.perf_counter()
        report = run_demo(DemoConfig(out=cfg.work / key.replace("_", "-"), quick=quick, progress=cfg.progress))
        out[f"{key}_seconds"] = time.perf_counter() - t
        out[f"{key}_stage_seconds"] = report["stage_seconds"]
    return out


