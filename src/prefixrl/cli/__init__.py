"""The `prefixrl` command line: one subcommand per stage, each a flat dataclass whose field docs are --help.

Bad input (files, names, values) ends with a one-line `prefixrl: error: ...` and exit code 2. A
command's configs live in modules that import no torch, transformers or pyarrow, and its runner is
imported only once its options are parsed, so `prefixrl --help` and `prefixrl COMMAND --help` answer
without loading them (docs/performance.md, time to first output; tests/cli/test_cli.py).
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import sys

COMMANDS = {  # name → (module, config class, the line `prefixrl --help` shows)
    "pretrain": ("prefixrl.embedded.config", "PretrainConfig",
                 "Pretrain the embedded base model (a tiny Llama) on easy problems from an imperfect teacher."),
    "select": ("prefixrl.cli.options", "SelectConfig",
               "The paper's hard set: sample each problem up to k, keep those with no verified success."),
    "collect": ("prefixrl.cli.options", "CollectConfig",
                "Rejection sampling with the base model: one verified-correct trace per hard-train problem."),
    "merge": ("prefixrl.cli.options", "MergeConfig",
              "Join the trace stores of a sharded collection (collect --shard I/N) into the unsharded one."),
    "prefixes": ("prefixrl.cli.options", "PrefixesConfig",
                 "Cut prefixes from the traces (paper rule: 3 per trace at U[0.4, 0.8] of its tokens)."),
    "train": ("prefixrl.cli.options", "TrainConfig",
              "On-policy RL: PrefixRL, or one of the paper's baselines on the same trainer."),
    "eval": ("prefixrl.cli.options", "EvalConfig", "Unbiased pass@k of a policy on unprefixed problems."),
    "export": ("prefixrl.cli.options", "ExportConfig",
               "Write the PrefixRL training pool (prefixed + unprefixed rows) for TRL or verl."),
    "plot": ("prefixrl.cli.options", "PlotConfig",
             "The curves of one or more training runs in one PNG (accuracy against FLOPs, per-step reward)."),
}


def config_class(name: str, commands: dict = COMMANDS):
    module, cls, _ = commands[name]
    return getattr(importlib.import_module(module), cls)


def overview(commands: dict = COMMANDS) -> str:
    width = max(map(len, commands))
    return "\n".join(["usage: prefixrl COMMAND [-h] [OPTIONS]", "",
                      "PrefixRL: RL on hard problems, conditioned on prefixes of correct off-policy traces.", "",
                      "commands:", *[f"  {name:<{width}}  {line}" for name, (_, _, line) in commands.items()], "",
                      "`prefixrl COMMAND --help` lists a command's options."])


def _no_command(argv: list[str], commands: dict) -> int:
    """`prefixrl`, `prefixrl --help`, or a command that does not exist."""
    if argv and argv[0] not in ("-h", "--help"):
        print(f"prefixrl: error: unknown command {argv[0]!r}; choose from {', '.join(commands)}", file=sys.stderr)
        return 2
    print(overview(commands), file=sys.stdout if argv else sys.stderr)
    return 0 if argv else 2


def main(argv: list[str] | None = None) -> int:
    """The library's stages alone; the `prefixrl` program (`prefixrl_lab.cli`) adds the lab's commands."""
    return dispatch(argv, COMMANDS, run_stage)


# the machine's refusals of a write, answered in one line like bad input (exit 2), never a traceback
MACHINE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG)


def dispatch(argv: list[str] | None, commands: dict, run) -> int:
    """Parse argv[0]'s config, check it, and `run(name, cfg)` under the one error contract: bad input is
    one line and exit 2, Ctrl-C one line and exit 130."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in commands:
        return _no_command(argv, commands)
    name = argv[0]
    import tyro

    try:
        cfg = tyro.cli(config_class(name, commands), args=argv[1:], prog=f"prefixrl {name}")
    except ValueError as e:  # a config's __post_init__ rejected the values
        print(f"prefixrl: error: {e}", file=sys.stderr)
        return 2
    from prefixrl.cli.options import check_numbers
    from prefixrl.io.errors import BadInput

    _stacks_on_sigusr1()
    try:
        check_numbers(cfg)
        if hasattr(cfg, "check"):
            cfg.check()
        run(name, cfg)
    except (BadInput, FileNotFoundError, ValueError) as e:
        print(f"prefixrl: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except OSError as e:  # the machine refused a write: a full disk, a read-only or forbidden folder
        if e.errno not in MACHINE_ERRORS:
            raise
        where = e.filename or getattr(cfg, "out", None)
        where = f"{where}: " if where else ""
        print(f"prefixrl: error: {where}{e.strerror or os.strerror(e.errno)}; nothing was half-written (every output "
              "is written whole or not at all), free the space or choose a writable place and rerun", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # state is saved atomically, so an interrupted stage continues where it stopped
        hint = getattr(cfg, "resume_hint", "nothing was half-written")
        print(f"prefixrl: interrupted; {hint}", file=sys.stderr)
        return 130
    return 0


def run_stage(name: str, cfg) -> None:
    """Run one of the library's stages on its checked config and print its one-line summary."""
    if name == "pretrain":
        from prefixrl.embedded.pretrain import pretrain

        pretrain(cfg)
        print(f"base model: {cfg.out}")
    elif name == "select":
        from prefixrl.cli.select import run_select

        s = run_select(cfg)
        print(f"{s['selected']} of {s['problems']} problems have no verified success in {s['budget']} samples "
              f"({s['samples']} samples, {s['flops']:.3e} FLOPs, charged to no method): {cfg.out / 'selected.jsonl'}")
    elif name == "collect":
        from prefixrl.cli.stages import run_collect

        s = run_collect(cfg)
        _notes("skipped", s.get("rejected", []))  # imported rows that were not kept, and why
        print(f"{s['solved']} of {s['problems']} problems have a trace ({s['samples']} samples, "
              f"{s['flops']:.3e} FLOPs): {cfg.out}")
    elif name == "merge":
        from prefixrl.cli.stages import run_merge

        s = run_merge(cfg)
        print(f"{s['solved']} of {s['problems']} problems have a trace ({s['samples']} samples, {s['flops']:.3e} "
              f"FLOPs), from {len(cfg.shards)} shards: {cfg.out}")
    elif name == "prefixes":
        from prefixrl.cli.stages import run_prefixes

        s = run_prefixes(cfg)
        _notes("excluded", s["rejected"])
        print(f"{s['prefixes']} prefixes from {s['traces']} traces: {cfg.out}")
    elif name == "train":
        from prefixrl.cli.training import run_train

        report_train(cfg, run_train(cfg))
    elif name == "eval":
        from prefixrl.cli.stages import run_eval

        print(json.dumps(run_eval(cfg), indent=2))
    elif name == "export":
        from prefixrl.cli.stages import run_export

        _report_export(cfg, run_export(cfg))
    elif name == "plot":
        from prefixrl.cli.plot import plot_runs
        from prefixrl.io.outputs import Output, claim

        with claim("plot", [Output(cfg.out, existing="replace" if cfg.overwrite else "refuse")],
                   {f"RUN {i}": r for i, r in enumerate(cfg.runs)}):
            plot_runs(list(cfg.runs), cfg.out)
        print(f"{len(cfg.runs)} run(s): {cfg.out}")


def report_train(cfg, r: dict) -> None:
    last = r["curve"][-1]
    print(f"{r['steps']} steps, unprefixed hard-train pass@1 {last['train_acc_unprefixed']:.4f}, "
          f"{last['flops']:.3e} FLOPs: {cfg.out}")


def _stacks_on_sigusr1() -> None:
    """`kill -USR1 PID` prints every thread's Python stack to the real stderr, so a run that looks hung
    (a stuck verifier, a slow filesystem) can be asked where it is without stopping it."""
    import faulthandler
    import signal

    if hasattr(signal, "SIGUSR1") and sys.__stderr__ is not None:
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)


def _notes(word: str, messages: list[str]) -> None:
    for msg in messages:
        print(f"{word}: {msg}", file=sys.stderr)


def _report_export(cfg, s: dict) -> None:
    if s["dropped_too_long"]:
        print(f"dropped {s['dropped_too_long']} rows ({s['dropped_prefixed']} prefixed) longer than "
              f"--max-prompt-tokens {cfg.max_prompt_tokens}", file=sys.stderr)
    print(f"{s['rows']} rows ({s['prefixed']} prefixed) for {cfg.format}, max_prompt_tokens "
          f"{s['max_prompt_tokens']} (prompt + prefix; the engine's prompt limit must be at least this): {cfg.out}")

