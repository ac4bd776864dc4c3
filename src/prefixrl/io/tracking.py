"""Experiment trackers. metrics.jsonl in the run folder is always written (by the trainer) and is the
record; `Tracker` mirrors every record, and the resolved run config, to the backends the user asks for.

Backends: tensorboard (event files in RUN/tb), wandb (mode offline unless WANDB_MODE says otherwise:
works without a network; `wandb sync RUN/wandb/offline-run-*` uploads later), trackio (local).
Each is imported only when asked for; a missing package is a one-line error, not a crash mid-run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from prefixrl.io.errors import BadInput

BACKENDS = ("tensorboard", "wandb", "trackio")
_PACKAGE = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}


def _numbers(rec: dict) -> dict[str, float]:
    """The record's numeric fields, named by kind ("step/reward_prefixed", "eval/train_acc_unprefixed")."""
    kind = rec.get("kind", "step")
    return {f"{kind}/{k}": float(v) for k, v in rec.items()
            if k not in ("kind", "step") and isinstance(v, (int, float)) and not isinstance(v, bool)}


class Tracker:
    def __init__(self, backends: tuple[str, ...], run_dir: Path, config: dict, name: str):
        unknown = [b for b in backends if b not in BACKENDS]
        if unknown:
            raise BadInput(f"unknown tracker {unknown[0]!r}; choose from {', '.join(BACKENDS)}")
        self._sinks = []
        for b in backends:
            try:
                self._sinks.append(getattr(self, f"_open_{b}")(Path(run_dir), config, name))
            except ImportError:
                raise BadInput(f"--log-to {b} needs the {_PACKAGE[b]} package (pip install {_PACKAGE[b]})") from None

    def log(self, rec: dict) -> None:
        metrics = _numbers(rec)
        for log, _ in self._sinks:
            log(metrics, int(rec["step"]))

    def close(self) -> None:
        for _, close in self._sinks:
            close()
        self._sinks = []

    @staticmethod
    def _open_tensorboard(run_dir: Path, config: dict, name: str):
        from torch.utils.tensorboard import SummaryWriter

        w = SummaryWriter(log_dir=str(run_dir / "tb"))
        w.add_text("config", "```\n" + json.dumps(config, indent=2, default=str) + "\n```")

        def log(metrics, step):
            for k, v in metrics.items():
                w.add_scalar(k, v, step)

        return log, w.close

    @staticmethod
    def _open_wandb(run_dir: Path, config: dict, name: str):
        import wandb

        run = wandb.init(project=os.environ.get("WANDB_PROJECT", "prefixrl"), name=name, dir=str(run_dir),
                         config=json.loads(json.dumps(config, default=str)),
                         mode=os.environ.get("WANDB_MODE", "offline"), reinit="finish_previous")
        return (lambda metrics, step: run.log(metrics, step=step)), run.finish

    @staticmethod
    def _open_trackio(run_dir: Path, config: dict, name: str):
        import trackio

        trackio.init(project=os.environ.get("TRACKIO_PROJECT", "prefixrl"), name=name,
                     config=json.loads(json.dumps(config, default=str)))
        return (lambda metrics, step: trackio.log(metrics, step=step)), trackio.finish
