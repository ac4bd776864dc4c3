"""docs/performance.md from performance.json (`prefixrl bench perf`)."""

from __future__ import annotations

from pathlib import Path

GPU_CHECK = [  # what no CPU run can say, and the script that will
    "## The GPU check",
    "",
    "Every figure on this page is from a CPU. `scripts/gpu_check.py` runs, on a CUDA machine, each path that has "
    "run only on CPU: `prefixrl demo --quick --device cuda`; SmolLM2-135M-Instruct through `collect --engine vllm`; "
    "2 steps of examples/trl_grpo.py through `accelerate launch` with vLLM colocated; 2 steps of docs/verl.md's "
    "recipe (`--verl-python`: the Python of verl's own environment). It writes one JSON of each step's command, "
    "wall-clock, exit code and output tail. Its `--dry-run` parses every command with its own parser (prefixrl's "
    "configs, TRL's parser, Hydra against verl's config) without running it, and runs in CI "
    "(`tests/integrations/test_gpu_check.py`, in the main and in verl's environment). It has not run on a GPU: "
    "no session of this project has had one yet.",
    "",
]

FAST_PATHS = [  # the end of docs/performance.md: what each fast path is, and where it lives
    "## What the fast paths are, and where",
    "",
    "- Shared-prefix prefill (`engine.Sampler`): a group's problem + prefix is prefilled once and its KV cache "
    "repeated for the n samples; the ledger charges that prefill once. `tests/rollout/test_engine.py` checks that tokens "
    "and log-probs equal the unshared path for the same seed: each row samples from its own seeded uniforms, so "
    "its draw does not depend on which rows share its batch.",
    "- Length bucketing and retirement (`engine.Sampler`): prompts are sorted by length before batching; finished "
    "rows leave the batch whenever a quarter of it has finished (each retirement copies the completions' cache).",
    "- The preallocated cache (`kv_cache.PreallocatedCache`, Llama-family models): a group's prompt cached once "
    "for its n samples and attended once for all n in one matmul, each completion's cache preallocated and "
    "written in place, buffers reused across calls, fused q/k/v and gate/up projections. Other families use "
    "transformers' cache. `tests/rollout/test_engine.py` checks both against a full forward, with retirement and "
    "grouped-query attention.",
    "- Completion-only logits (`losses.token_logprobs`): only trained positions reach the LM head. With this "
    "model's 24-token vocabulary that saves nothing; with a 150k vocabulary and long prefixes it is most of the "
    "head's work.",
    "- Bucketed micro-batches (`mask.micro_batches`, `--micro-batch-tokens`): rows sorted by length, gradients "
    "accumulated; the loss's constant normaliser makes the sum exactly the full-batch loss "
    "(`tests/rl/test_speed_paths.py`).",
    "- `--precision auto|bf16|fp32` (`rollout/precision.py`): auto is bf16 autocast on a GPU with native bf16 and "
    "float32 on every CPU, so the default computes alike on CPUs with and without native bf16. "
    "`--compile`: torch.compile of the backbone for the training forward.",
    "",
]


def write(folder: Path, r: dict) -> None:
    write_performance_md(folder / "performance.md", r)


def write_performance_md(path: Path, r: dict) -> None:
    m = r["machine"]
    s0, s5 = r["sampling_noprefix"], r["sampling_prefix50"]
    steps = r["step_seconds_by_prefix_fraction"]
    lines = [
        "# Performance",
        "",
        f"Produced by `prefixrl bench perf{' --quick' if r['quick'] else ''}` (`--json PATH` also writes the figures "
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
        *GPU_CHECK,
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
