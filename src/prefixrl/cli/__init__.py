"""The `prefixrl` command line: one subcommand per stage, each a flat dataclass whose field docs are --help.

Bad input (files, names, values) ends with a one-line `prefixrl: error: ...` and exit code 2.
"""

from __future__ import annotations

import json
import sys

import tyro

from prefixrl.cli.options import check_numbers
from prefixrl.cli.stages import (
    CollectConfig,
    EvalConfig,
    ExportConfig,
    PrefixesConfig,
    run_collect,
    run_eval,
    run_export,
    run_prefixes,
)
from prefixrl.cli.training import TrainConfig, run_train
from prefixrl.experiments.bench import BENCHES, BenchConfig, run_bench
from prefixrl.experiments.demo import DemoConfig, run_demo
from prefixrl.io.errors import BadInput
from prefixrl.pretrain import PretrainConfig, pretrain
from prefixrl.theory.lab import TheoryConfig, run_theory

COMMANDS = {
    "demo": DemoConfig,
    "pretrain": PretrainConfig,
    "collect": CollectConfig,
    "prefixes": PrefixesConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "export": ExportConfig,
    "bench": BenchConfig,
    "theory": TheoryConfig,
}


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = tyro.extras.subcommand_cli_from_dict(
            COMMANDS, args=argv,
            description="PrefixRL: RL on hard problems, conditioned on prefixes of correct off-policy traces.",
        )
    except ValueError as e:  # a config's __post_init__ rejected the values
        print(f"prefixrl: error: {e}", file=sys.stderr)
        return 2
    try:
        check_numbers(cfg)
        if hasattr(cfg, "check"):
            cfg.check()
        if isinstance(cfg, DemoConfig):
            report = run_demo(cfg)
            print(f"{report['verdict']}\nreport: {cfg.out / 'report.md'}")
        elif isinstance(cfg, PretrainConfig):
            pretrain(cfg)
            print(f"base model: {cfg.out}")
        elif isinstance(cfg, CollectConfig):
            s = run_collect(cfg)
            print(f"{s['solved']} of {s['problems']} problems have a trace ({s['samples']} samples, "
                  f"{s['flops']:.3e} FLOPs): {cfg.out}")
        elif isinstance(cfg, PrefixesConfig):
            s = run_prefixes(cfg)
            for msg in s["rejected"]:
                print(f"excluded: {msg}", file=sys.stderr)
            print(f"{s['prefixes']} prefixes from {s['traces']} traces: {cfg.out}")
        elif isinstance(cfg, TrainConfig):
            r = run_train(cfg)
            last = r["curve"][-1]
            print(f"{r['steps']} steps, unprefixed hard-train pass@1 {last['train_acc_unprefixed']:.4f}, "
                  f"{last['flops']:.3e} FLOPs: {cfg.out}")
        elif isinstance(cfg, EvalConfig):
            print(json.dumps(run_eval(cfg), indent=2))
        elif isinstance(cfg, ExportConfig):
            s = run_export(cfg)
            print(f"{s['rows']} rows ({s['prefixed']} prefixed) for {cfg.format}: {cfg.out}")
        elif isinstance(cfg, TheoryConfig):
            res = run_theory(cfg)
            for algo, f in res["fits"].items():
                if f:
                    print(f"{algo}: x{f['exp_rate_per_token']:.2f} per token, power degree {f['power_degree']:.2f}")
            print(f"results: {cfg.out / 'results.md'}")
        elif isinstance(cfg, BenchConfig):
            run_bench(cfg)
            print(f"results: {cfg.out / BENCHES[cfg.which]}")
    except (BadInput, FileNotFoundError, ValueError) as e:
        print(f"prefixrl: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # state is saved atomically, so an interrupted stage continues where it stopped
        print(f"prefixrl: interrupted; {RESUME_HINT.get(type(cfg).__name__, 'nothing was half-written')}",
              file=sys.stderr)
        return 130
    return 0


RESUME_HINT = {
    "TrainConfig": "rerun the same command with --resume to continue from the last checkpoint",
    "CollectConfig": "rerun the same command with --resume to continue the collection",
    "DemoConfig": "rerun the same command: finished pieces are reused",
    "BenchConfig": "rerun the same command: finished runs are reused",
}
