"""PrefixRL with TRL's GRPOTrainer: train on rows from `prefixrl export --format trl` (docs/trl.md).

Single process:      python examples/trl_grpo.py --model M --rows rows.parquet --task math --task-file P
Several GPUs:        accelerate launch --config_file zero2.yaml examples/trl_grpo.py ... --use-vllm
(with `trl vllm-serve --model M` running on its own GPU; see docs/trl.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import datasets
import tyro
from trl import GRPOConfig

from prefixrl.cli.options import TaskOptions, task_of
from prefixrl.integrations.trl import PrefixGRPOTrainer, reward_functions
from prefixrl.verifier import deadlined


@dataclass(frozen=True)
class Args(TaskOptions):
    model: Path = Path("runs/base")
    """Policy folder (any HF causal LM with a chat template)."""
    rows: Path = Path("runs/train_rows.parquet")
    """Training rows from `prefixrl export --format trl`."""
    out: Path = Path("runs/trl")
    """TRL output_dir."""
    max_steps: int = 300
    learning_rate: float = 1e-6
    per_device_train_batch_size: int = 8
    num_generations: int = 8
    """Group size n (completions per prompt)."""
    max_completion_length: int = 1024
    beta: float = 0.0
    """KL coefficient (0: no reference model, as in the paper's PrefixRL runs)."""
    use_vllm: bool = False
    """Generate with a `trl vllm-serve` server (prefix ids go to it as prompt token ids)."""
    bf16: bool = False
    report_to: str = "none"
    """none, tensorboard, wandb or trackio: TRL's own loggers."""


def main(args: Args) -> None:
    task = task_of(args.model, args.task_spec())
    config = GRPOConfig(
        output_dir=str(args.out), max_steps=args.max_steps, learning_rate=args.learning_rate,
        per_device_train_batch_size=args.per_device_train_batch_size, num_generations=args.num_generations,
        max_completion_length=args.max_completion_length, beta=args.beta, use_vllm=args.use_vllm,
        vllm_mode="server", bf16=args.bf16, use_cpu=not args.bf16 and not args.use_vllm and _no_gpu(),
        report_to=args.report_to, logging_steps=1, save_strategy="no",
        reward_weights=[1.0, 0.0, 0.0],  # train on `reward`; the per-kind two are for logging only
    )
    with deadlined(task, args.verifier_workers, args.verifier_timeout) as task:
        trainer = PrefixGRPOTrainer(model=str(args.model), reward_funcs=reward_functions(task), args=config,
                                    train_dataset=datasets.Dataset.from_parquet(str(args.rows)))
        trainer.train()
        trainer.save_model(str(args.out / "final"))


def _no_gpu() -> bool:
    import torch

    return not torch.cuda.is_available()


if __name__ == "__main__":
    main(tyro.cli(Args))
