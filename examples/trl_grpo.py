"""PrefixRL with TRL's GRPOTrainer, on rows from `prefixrl export --format trl` (docs/trl.md).

Every flag is TRL's own (GRPOConfig and ModelConfig, through TRL's parser, `--config recipe.yaml` too),
plus --rows and the task flags below. The paper's objective is the default (PAPER_CONFIG: no std
scaling, a constant loss normaliser, no KL); pass a flag to change any of it.

One process:   python examples/trl_grpo.py --model_name_or_path M --rows rows.parquet --output_dir runs/trl
Several GPUs:  accelerate launch --config_file zero2.yaml examples/trl_grpo.py ... --use_vllm true
               (vLLM colocated with --vllm_mode colocate, or a `trl vllm-serve` server; docs/trl.md)
Resume:        the same command with --resume_from_checkpoint true (the newest checkpoint in --output_dir)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from trl import GRPOConfig, ModelConfig, TrlParser, get_peft_config

from prefixrl.cli.options import TaskOptions
from prefixrl.data.verifier import deadlined
from prefixrl.integrations.trl import PAPER_CONFIG, PrefixGRPOTrainer, reward_functions, task_of_rows
from prefixrl.io.errors import BadInput


@dataclass(frozen=True)
class PrefixArgs(TaskOptions):
    """The rows, and (optionally) the task that scores them; the task recorded by `prefixrl export` in
    the rows file is used when --task is not given."""

    rows: Path = field(default=Path("runs/train_rows.parquet"),
                       metadata={"help": "Training rows from `prefixrl export --format trl`."})
    eval_rows: Path | None = field(default=None, metadata={
        "help": "Evaluation rows (e.g. `prefixrl export --mix 0`), used with TRL's --eval_strategy."})


def parse(argv: list[str] | None = None) -> tuple[PrefixArgs, GRPOConfig, ModelConfig]:
    """TRL's parser, with the paper's objective as the defaults that a flag or the YAML overrides."""
    import torch

    parser = TrlParser((PrefixArgs, GRPOConfig, ModelConfig))
    parser.set_defaults(**PAPER_CONFIG)
    if not torch.cuda.is_available():
        # TRL's bf16 default needs a GPU (it refuses to start on a CPU without --use_cpu); on a CPU the
        # default is float32, as everywhere in prefixrl (`prefixrl.rollout.precision`). On a GPU, TRL's own default.
        parser.set_defaults(use_cpu=True, bf16=False)
    return parser.parse_args_and_config(argv)


def main(argv: list[str] | None = None) -> None:
    args, config, model_args = parse(argv)
    args.check()
    if not model_args.model_name_or_path:
        raise BadInput("--model_name_or_path is required (a model folder or a Hugging Face Hub id)")
    if len(config.reward_weights) != 3:
        raise BadInput("--reward_weights takes 3 values: the reward, and the prefixed and unprefixed ones "
                       f"(logged only; the paper's default is {PAPER_CONFIG['reward_weights']})")
    task = task_of_rows(args.rows, args.task_spec())
    config.model_init_kwargs = {**(config.model_init_kwargs or {}), "revision": model_args.model_revision,
                                **({"dtype": model_args.dtype} if model_args.dtype else {}),
                                **({"attn_implementation": model_args.attn_implementation}
                                   if model_args.attn_implementation else {})}
    evaluation = datasets.Dataset.from_parquet(str(args.eval_rows)) if args.eval_rows else None
    with deadlined(task, args.verifier_workers, args.verifier_timeout) as task:
        trainer = PrefixGRPOTrainer(model=model_args.model_name_or_path, reward_funcs=reward_functions(task),
                                    args=config, train_dataset=datasets.Dataset.from_parquet(str(args.rows)),
                                    eval_dataset=evaluation, peft_config=get_peft_config(model_args))
        resume = config.resume_from_checkpoint
        trainer.train(resume_from_checkpoint=True if str(resume).lower() == "true" else resume)
        trainer.save_model(config.output_dir)
        trainer.create_model_card(model_name=Path(config.output_dir).name)
        if config.push_to_hub:
            trainer.push_to_hub()


if __name__ == "__main__":
    try:
        main()
    except BadInput as e:
        print(f"trl_grpo.py: error: {e}", file=sys.stderr)
        sys.exit(2)
