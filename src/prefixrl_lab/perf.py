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
from prefixrl.data.prefixes import Prefix
from prefixrl.data.prompt import encode_response, render_prompt
from prefixrl.embedded.pretrain import ensure_pretrained
from prefixrl.io.store import write_json_atomic
from prefixrl.rl.losses import token_logprobs, weighted_pg_loss
from prefixrl.rl.mask import make_batch, micro_batches
from prefixrl.rl.methods import METHODS
from prefixrl.rl.pool import Pool
from prefixrl.rl.settings import RLSettings
from prefixrl.rl.train import Learner, guarded_update, rl_step
from prefixrl.rollout.engine import Sampler, SamplingParams
from prefixrl.rollout.flops import Ledger, train_flops
from prefixrl.rollout.model import load, param_count
from prefixrl.rollout.precision import native_bf16
from prefixrl_lab import pipeline

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


def train_rows(tok, task, problems, n: int, fraction: float, max_new: int, seed: int = 0):
    """(context, trained) rows as one PrefixRL update sees them: n completions per prefixed prompt."""
    g = torch.Generator().manual_seed(seed)
    context, trained = [], []
    for p, prompt in zip(problems, prefixed_prompts(tok, task, problems, fraction)):
        sol = encode_response(tok, task.solution(p), eos=True)
        rest = sol[len(prompt) - len(render_prompt(tok, p.question)):]
        for _ in range(n):  # completions of realistic length around the rest of the solution
            k = max(1, min(max_new, len(rest) + int(torch.randint(-4, 5, (1,), generator=g))))
            context.append(prompt)
            trained.append((rest * 2)[:k])
    return context, trained


def pg_losses(model, tok, context, trained, adv, plain: bool = False):
    """The update's micro-batch losses, as `train_rl` builds them (plain: the path before the fast paths,
    full-vocabulary logits at every position in one padded batch)."""
    norm = float(len(context) * 128)
    groups = [list(range(len(context)))] if plain else micro_batches(context, trained, RLSettings.micro_batch_tokens)
    for mb in groups:
        b = make_batch([context[i] for i in mb], [trained[i] for i in mb], tok.pad_token_id)
        if plain:
            logits = model(input_ids=b.ids).logits[:, :-1].float()
            logp = torch.log_softmax(logits, -1).gather(-1, b.ids[:, 1:, None]).squeeze(-1)
        else:
            logp, _ = token_logprobs(model, b)
        yield weighted_pg_loss(logp, b.mask, adv[mb], torch.ones_like(logp), norm)


def train_step_seconds(model, tok, context, trained, repeats: int, plain: bool = False) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=0.0)  # lr 0: time the update, keep the weights
    adv = torch.linspace(-1, 1, len(context))
    return best_seconds(lambda: guarded_update(model, opt, pg_losses(model, tok, context, trained, adv, plain), 1.0),
                        repeats)


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
    context, trained = train_rows(tok, task, problems[: max(1, n_prompts // 8)], 8, 0.5, params.max_new_tokens)
    tokens = sum(len(c) + len(t) for c, t in zip(context, trained))
    secs = train_step_seconds(model, tok, context, trained, repeats + 1)
    plain = train_step_seconds(model, tok, context, trained, repeats + 1, plain=True)
    flops = train_flops(param_count(model), tokens)
    res["train"] = {"rows": len(context), "tokens": tokens, "seconds": secs, "tokens_per_s": tokens / secs,
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
                                        context, trained, repeats)
    res["decode_step_profile"] = {name: decode_step_profile(model, tok, prefixed_prompts(tok, task, problems, 0.5),
                                                            n, params, static)
                                  for name, static in (("transformers_cache", False), ("preallocated_cache", True))}
    res["startup_seconds"] = startup_seconds()
    if not cfg.quick:
        res.update(demo_timings(cfg))
    write_performance_md(cfg.out / "performance.md", res, cfg)
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


def bf16_against_fp32(model, tok, prompts, n, params, context, trained, repeats) -> dict:
    """Seconds of the same sampling call and the same update, in float32 and under bf16 autocast."""
    out = {}
    for name, ctx in (("fp32", contextlib.nullcontext), ("bf16", lambda: torch.autocast("cpu", dtype=torch.bfloat16))):
        sampler = Sampler(model, tok.eos_token_id, tok.pad_token_id, autocast=ctx)
        with torch.no_grad():
            out[f"sampling_seconds_{name}"] = best_seconds(lambda: sampler.generate(prompts, n, params, seed=0),  # noqa: B023
                                                           repeats)
        with ctx():
            out[f"train_seconds_{name}"] = train_step_seconds(model, tok, context, trained, repeats + 1)
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


FAST_PATHS = [  # the end of docs/performance.md: what each fast path is, and where it lives
    "## What the fast paths are, and where",
    "",
    "- Shared-prefix prefill (`engine.Sampler`): a group's problem + prefix is prefilled once and its KV cache "
    "repeated for the n samples; the ledger charges that prefill once. `tests/test_engine.py` checks that tokens "
    "and log-probs equal the unshared path for the same seed: each row samples from its own seeded uniforms, so "
    "its draw does not depend on which rows share its batch.",
    "- Length bucketing and retirement (`engine.Sampler`): prompts are sorted by length before batching; finished "
    "rows leave the batch whenever a quarter of it has finished (each retirement copies the completions' cache).",
    "- The preallocated cache (`kv_cache.PreallocatedCache`, Llama-family models): a group's prompt cached once "
    "for its n samples and attended once for all n in one matmul, each completion's cache preallocated and "
    "written in place, buffers reused across calls, fused q/k/v and gate/up projections. Other families use "
    "transformers' cache. `tests/test_engine.py` checks both against a full forward, with retirement and "
    "grouped-query attention.",
    "- Completion-only logits (`losses.token_logprobs`): only trained positions reach the LM head. With this "
    "model's 24-token vocabulary that saves nothing; with a 150k vocabulary and long prefixes it is most of the "
    "head's work.",
    "- Bucketed micro-batches (`mask.micro_batches`, `--micro-batch-tokens`): rows sorted by length, gradients "
    "accumulated; the loss's constant normaliser makes the sum exactly the full-batch loss "
    "(`tests/test_speed_paths.py`).",
    "- `--precision auto|bf16|fp32` (`rollout/precision.py`): auto is bf16 autocast on a GPU with native bf16 and "
    "float32 on every CPU, so the default computes alike on CPUs with and without native bf16. "
    "`--compile`: torch.compile of the backbone for the training forward.",
    "",
]


def write_performance_md(path: Path, r: dict, cfg) -> None:
    m = r["machine"]
    s0, s5 = r["sampling_noprefix"], r["sampling_prefix50"]
    steps = r["step_seconds_by_prefix_fraction"]
    lines = [
        "# Performance",
        "",
        f"Produced by `prefixrl bench perf{' --quick' if cfg.quick else ''}` (`--json PATH` also writes the figures "
        "below as JSON). Every ratio compares two things timed in the same run, alternating, best of the repeats.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} using {m['torch_threads']} threads, "
        f"CPU capability {m['cpu_capability']}, native bf16: {'yes' if m['native_bf16'] else 'no'}. "
        f"Measured matmul peak (fp32, 2048²): **{r['matmul_peak_flops'] / 1e9:.1f} GFLOP/s**.",
        "",
        f"Model: the embedded base model ({r['model_params']:,} parameters). Sampling: {r['prompts']} prompts × "
        f"{r['samples_per_prompt']} samples, up to {r['max_new_tokens']} new tokens, temperature 1.",
        "",
        "## Sampling: built-in sampler against transformers' `generate`",
        "",
        "| prompts | built-in tokens/s | built-in, no sharing or bucketing | `generate` tokens/s | built-in ÷ generate | goal |",
        "|---|---|---|---|---|---|",
        f"| no prefix | {s0['builtin']['tokens_per_s']:.0f} | {s0['builtin_unshared']['tokens_per_s']:.0f} | "
        f"{s0['generate']['tokens_per_s']:.0f} | **{r['sampler_vs_generate_noprefix']:.2f}×** | ≥ 3× |",
        f"| 50 % prefix | {s5['builtin']['tokens_per_s']:.0f} | {s5['builtin_unshared']['tokens_per_s']:.0f} | "
        f"{s5['generate']['tokens_per_s']:.0f} | **{r['sampler_vs_generate_prefix50']:.2f}×** | ≥ 5× |",
        "",
        f"Sharing the prefill (and bucketing) alone: {r['shared_vs_unshared_noprefix']:.2f}× without a prefix, "
        f"{r['shared_vs_unshared_prefix50']:.2f}× with a 50 % prefix. Sampling reaches "
        f"{r['sampling_fraction_of_peak']:.1%} of the matmul peak (ledger FLOPs; goal ≥ 30 %).",
        "",
        "## Training",
        "",
        f"One PrefixRL update on {r['train']['rows']} rows (50 % prefixes, {r['train']['tokens']} tokens): "
        f"{r['train']['seconds']:.3f} s, {r['train']['tokens_per_s']:.0f} tokens/s, "
        f"{r['train']['flops_per_s'] / 1e9:.1f} GFLOP/s = **{r['train_fraction_of_peak']:.1%} of the matmul peak** "
        "(goal ≥ 60 %). ",
        f"The plain path (full-vocabulary logits at every position, one padded batch) takes "
        f"{r['train']['plain_seconds']:.3f} s: completion-only logits and bucketed micro-batches are "
        f"{r['train_speedup_vs_plain']:.2f}× faster.",
        "",
    ]
    if "bf16" in r:
        b = r["bf16"]
        lines += ["## bf16 against float32 on this CPU", "",
                  "| | float32 s | bf16 autocast s | bf16 ÷ float32 |", "|---|---|---|---|",
                  *[f"| {what} | {b[f'{key}_fp32']:.3f} | {b[f'{key}_bf16']:.3f} | {b[f'{key}_bf16'] / b[f'{key}_fp32']:.2f}× |"
                    for what, key in (("sampling (the call above, 50 % prefix)", "sampling_seconds"),
                                      ("training (the update above)", "train_seconds"))],
                  "", "`--precision auto` stays float32 on every CPU whatever these say: a default that computed in "
                  "bf16 only on CPUs with native bf16 would train the same command differently on two machines "
                  "(docs/choices.md). `--precision bf16` opts in.", ""]
    lines += _profile_and_demo_sections(r)
    lines += _goals_section(r)
    if "startup_seconds" in r:
        lines += ["## Time to first output", "",
                  "A fresh interpreter per command, best of 3 (goal: under 2 s).", "",
                  "| command | seconds |", "|---|---|",
                  *[f"| `{name}` | {secs:.2f} |" for name, secs in r["startup_seconds"].items()], ""]
    lines += [
        "## Rejection sampling",
        "",
        f"{r['rejection_sampling']['samples']} samples (sampling and verification) in "
        f"{r['rejection_sampling']['seconds']:.1f} s: **{r['rejection_samples_per_s']:.0f} samples/s**.",
        "",
        "## One RL step as the prefix grows",
        "",
        "One call of `train.rl_step` itself (draw, sample, verify, update the groups with signal, ledger). The "
        "prefix is that fraction of a correct solution.",
        "",
        "| prefix fraction | " + " | ".join(steps) + " |",
        "|---|" + "---|" * len(steps),
        "| seconds per step | " + " | ".join(f"{v:.2f}" for v in steps.values()) + " |",
        "",
        *FAST_PATHS,
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def _goals_section(r: dict) -> list[str]:
    """Each speed goal, met or missed by this run's figures, with the figure of this run that explains a miss."""
    prof = r["decode_step_profile"]["preallocated_cache"]
    top = {e["op"]: e["self_us_per_step"] for e in prof["top"]}
    matmul_share = (top.get("aten::mm", 0) + top.get("aten::bmm", 0)) / sum(top.values())
    cat_us = {e["op"]: e["self_us_per_step"] for e in r["decode_step_profile"]["transformers_cache"]["top"]}.get(
        "aten::cat", 0.0)
    sampler = (f"in the sampler's decode step, `aten::mm` and `aten::bmm`, the model's own matmuls, are "
               f"{matmul_share:.0%} of the top-10 self time, and `generate` runs the same matmuls; so the ratio is bounded by what "
               f"`generate` spends besides them, mostly its cache's `aten::cat` ({cat_us:.0f} µs per step)")
    goals = [("sampler ÷ `generate`, no prefix", f"{r['sampler_vs_generate_noprefix']:.2f}×", "≥ 3×",
              r["sampler_vs_generate_noprefix"] >= 3, sampler),
             ("sampler ÷ `generate`, 50 % prefix", f"{r['sampler_vs_generate_prefix50']:.2f}×", "≥ 5×",
              r["sampler_vs_generate_prefix50"] >= 5, "the same, with the shared prefill on top"),
             ("sampling, share of the matmul peak", f"{r['sampling_fraction_of_peak']:.0%}", "≥ 30 %",
              r["sampling_fraction_of_peak"] >= 0.3,
              "the decode step's matmuls are [rows × 128] by [128 × 384] at most"),
             ("training, share of the matmul peak", f"{r['train_fraction_of_peak']:.0%}", "≥ 60 %",
              r["train_fraction_of_peak"] >= 0.6, f"the update's matmuls are {r['train']['tokens']} tokens by a "
              "hidden size of 128; the peak is measured on 2048² matmuls")]
    if "demo_seconds" in r:
        st, qst = r["demo_stage_seconds"], r["quick_demo_stage_seconds"]
        pre = next((k for k in st if k.startswith("pretrain")), None)
        rl = next((k for k in st if k.startswith("train rl")), None)
        goals += [("`prefixrl demo`, from scratch", f"{r['demo_seconds']:.0f} s", "≤ 300 s", r["demo_seconds"] <= 300,
                   f"pretraining and calibrating the base take {st.get(pre, 0):.0f} s and standard RL's "
                   f"{st.get(rl, 0):.0f} s (it runs until it has spent PrefixRL's FLOPs, rejection sampling included)"),
                  ("`prefixrl demo --quick`, from scratch", f"{r['quick_demo_seconds']:.0f} s", "≤ 90 s",
                   r["quick_demo_seconds"] <= 90, f"pretraining and calibrating the base alone take {qst.get(pre, 0):.0f} s "
                   "(a second run reuses the base)")]
    if "startup_seconds" in r:
        up = r["startup_seconds"]
        helps = max(v for k, v in up.items() if k.endswith("--help"))
        stage = next((v for k, v in up.items() if "start-up" in k), None)
        goals += [("every `--help`", f"{helps:.2f} s", "< 2 s", helps < 2, "the configs import no torch")]
        if stage is not None:
            goals += [("a stage's start-up to its first line", f"{stage:.2f} s", "< 2 s", stage < 2,
                       "a stage imports torch and transformers' model classes before its first line")]
    return ["## The goals, met or missed", "", "| goal | this run | target | met | what explains a miss |",
            "|---|---|---|---|---|",
            *[f"| {g} | {v} | {t} | {'yes' if ok else '**no**'} | {'' if ok else why} |" for g, v, t, ok, why in goals],
            ""]


def _profile_and_demo_sections(r: dict) -> list[str]:
    """docs/performance.md's decode-step profiles and, when the demos were run, their stage tables."""
    lines: list[str] = []
    lines += ["## One decode step, profiled", "",
              "torch.profiler over one sampling call (the 50 % prefix call above), divided by its decode steps: "
              "the top operations by self CPU time, through transformers' own cache and forward (the path before "
              "`prefixrl.rollout.kv_cache`, still used for model families it does not know) and through the preallocated "
              "cache.", ""]
    for name, prof in r["decode_step_profile"].items():
        lines += [f"**{name.replace('_', ' ')}** ({prof['generate_seconds_profiled']:.3f} s for the call under the "
                  f"profiler, {prof['decode_steps']} decode steps)", "",
                  "| op | calls per step | self µs per step |", "|---|---|---|",
                  *[f"| `{e['op']}` | {e['calls_per_step']:.1f} | {e['self_us_per_step']:.0f} |" for e in prof["top"]], ""]
    if "demo_seconds" in r:
        lines += ["## The demo, stage by stage", "",
                  f"`prefixrl demo` took **{r['demo_seconds']:.0f} s** and `prefixrl demo --quick` "
                  f"**{r['quick_demo_seconds']:.0f} s** (goals: 300 s and 90 s), both run by this command from "
                  "scratch (pretraining included).", "",
                  "| stage | demo s | demo --quick s |", "|---|---|---|",
                  *[f"| {stage} | {r['demo_stage_seconds'].get(stage, 0):.1f} | "
                    f"{r['quick_demo_stage_seconds'].get(stage, 0):.1f} |" for stage in r["demo_stage_seconds"]], ""]
    return lines
