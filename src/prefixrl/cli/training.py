"""`prefixrl train`: the runner (its config, `RLSettings` composed once, is `prefixrl.cli.options.TrainConfig`)."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict, replace

import torch

from prefixrl.cli.options import TrainConfig, problem_count
from prefixrl.cli.policy import check_length, load_policy
from prefixrl.data.prefixes import load_prefixes
from prefixrl.data.tasks.base import check_same_problems
from prefixrl.data.traces import charged_flops, load_traces
from prefixrl.data.verifier import deadlined
from prefixrl.io.checkpoint import checkpoints
from prefixrl.io.outputs import Output, claim
from prefixrl.io.store import write_json_atomic
from prefixrl.io.tracking import Tracker
from prefixrl.rl.train import METHODS, RunOptions, TrainingSet, train_rl


def run_train(cfg: TrainConfig, prepare=None, inputs: dict | None = None) -> dict:
    """Claim --out, then train. `prepare(cfg) -> cfg` runs once the output is claimed and may point the config
    at inputs it builds (the lab's `train --preset`); `inputs` names them, so none of them can be --out."""
    inputs = {"--model": cfg.model, "--prefixes": cfg.prefixes, "--traces": cfg.traces, **(inputs or {}),
              **cfg.inputs()}
    with claim("train", [Output(cfg.out, kind="folder", existing="resume" if cfg.resume else "refuse")], inputs,
               hint="--resume (to continue that run)"):
        fresh = not cfg.out.exists()
        try:
            return _train(prepare(cfg) if prepare is not None else cfg)
        except BaseException:
            # a run that failed before its first checkpoint (a full disk, a refused input, Ctrl-C) has nothing to
            # resume: the folder it made goes, so a rerun is not refused for a folder holding only its log
            if fresh and cfg.out.is_dir() and not checkpoints(cfg.out) and not (cfg.out / "result.json").exists():
                shutil.rmtree(cfg.out, ignore_errors=True)
            raise


def _train(cfg: TrainConfig) -> dict:
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    model, tok, task = load_policy(cfg.model, cfg.task_spec(), device=cfg.device, rendering=cfg.rendering(),
                                   allow_rerender=cfg.allow_rerender)
    problems = task.problems("hard_train", problem_count(cfg.problems, task.name, cfg.generated), cfg.data_seed)
    method = METHODS[cfg.rl.method]
    uses_traces = cfg.rl.method != "rl"
    settings = replace(cfg.rl, max_new_tokens=cfg.rl.max_new_tokens or task.max_response_tokens)
    with deadlined(task, cfg.verifier_workers, cfg.verifier_timeout) as task:
        wants_prefixes = method.mix != 0.0 or method.before_rl == "own-completions"
        prefixes = load_prefixes(cfg.prefixes, task, tok, cfg.allow_rerender) if wants_prefixes and cfg.prefixes else []
        traces = []
        wants_traces = method.offpolicy or method.before_rl == "traces" or settings.prefix_schedule == "adaptive"
        if wants_traces and cfg.traces is not None:
            traces, rejected = load_traces(cfg.traces, task, tok, cfg.allow_rerender)
            for msg in rejected:
                print(f"excluded: {msg}", file=sys.stderr)
        check_same_problems(prefixes, problems, str(cfg.prefixes), "prefixes")
        check_same_problems(traces, problems, str(cfg.traces), "traces")
        check_length(model, cfg.model, tok, problems, settings.max_new_tokens,
                     [(p.problem, p.prefix_ids) for p in prefixes])
        # the collection's cost travels in its trace store (0 for imported traces)
        charged = charged_flops(cfg.traces) if uses_traces and cfg.traces is not None else 0.0
        run = RunOptions(resume=cfg.resume)

        def begin() -> None:  # the run's key is checked: only now is anything of ours written to --out
            write_json_atomic(cfg.out / "config.json", json.loads(json.dumps(asdict(cfg), default=str)))
            run.tracker = Tracker(cfg.log_to, cfg.out, asdict(cfg), name=cfg.out.name) if cfg.log_to else None

        run.on_begin = begin
        try:
            result = train_rl(model, tok, TrainingSet(task, problems, prefixes, traces, charged_flops=charged),
                              settings, cfg.out, run)
        finally:
            if run.tracker is not None:
                run.tracker.close()
        counts = task.pool.counts
        if counts["timeout"] or counts["error"]:
            print(f"verifier: {counts['timeout']} timeouts, {counts['error']} errors (reward 0) in "
                  f"{counts['items']} verifications", file=sys.stderr)
        return result
