"""The `prefixrl` program: the library's stages (`prefixrl.cli`) and the lab's commands (the demo, the
benches, the theory lab) under one command line. The library never imports the lab; the lab adds its
commands here, on top of both.
"""

from __future__ import annotations

import sys

from prefixrl import cli as stages

LAB_COMMANDS = {  # name → (module, config class, the line `prefixrl --help` shows)
    "demo": ("prefixrl_lab.configs", "DemoConfig",
             "The whole method end to end: pretrain, collect, prefixes, PrefixRL vs standard RL, report."),
    "bench": ("prefixrl_lab.configs", "BenchConfig",
              "The paper's comparisons, the regime map, cross-family traces, or the speed figures."),
    "theory": ("prefixrl_lab.theory.lab", "TheoryConfig",
               "The theory lab: exact hidden-string MDPs, standard NPG vs PrefixRL-NPG vs practical PrefixRL."),
}
# `train` gains --preset, whose ingredients the lab's pipeline builds
TRAIN = ("prefixrl_lab.configs", "PresetTrainConfig", stages.COMMANDS["train"][2])
COMMANDS = {"demo": LAB_COMMANDS["demo"], **stages.COMMANDS, "train": TRAIN,
            **{k: v for k, v in LAB_COMMANDS.items() if k != "demo"}}


def config_class(name: str):
    return stages.config_class(name, COMMANDS)


def main(argv: list[str] | None = None) -> int:
    return stages.dispatch(argv, COMMANDS, run)


def run(name: str, cfg) -> None:
    """A lab command, or the library's stage of that name."""
    if name == "demo":
        from prefixrl_lab.demo import run_demo

        report = run_demo(cfg)
        print(f"{report['verdict']}\nreport: {cfg.out / 'report.md'}")
    elif name == "train":
        from prefixrl_lab.presets import run_preset_train

        stages.report_train(cfg, run_preset_train(cfg))
    elif name == "theory":
        from prefixrl_lab.theory.lab import run_theory

        res = run_theory(cfg)
        for algo, f in res["fits"].items():
            if f:
                print(f"{algo}: x{f['exp_rate_per_token']:.2f} per token, power degree {f['power_degree']:.2f}")
        print(f"results: {cfg.out / 'results.md'}")
    elif name == "bench":
        from prefixrl_lab.bench import BENCHES, run_bench

        run_bench(cfg)
        print(f"results: {cfg.out / BENCHES[cfg.which]}")
    else:
        stages.run_stage(name, cfg)


if __name__ == "__main__":
    sys.exit(main())
