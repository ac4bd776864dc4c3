"""One task shape with one default: the README's stage-by-stage commands build the task `prefixrl demo`
builds, and every command that pretrains a base shares the shape's knobs and their checks."""

import dataclasses
import re
import shlex
from pathlib import Path

import pytest
import tyro

from prefixrl.cli.options import problem_count
from prefixrl.data.tasks import task_spec
from prefixrl.embedded.config import PretrainConfig, TaskShape
from prefixrl.embedded.pretrain import settings_record
from prefixrl.io.errors import BadInput
from prefixrl_lab import pipeline
from prefixrl_lab.cli import config_class
from prefixrl_lab.configs import BenchConfig, DemoConfig

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_command(stage: str) -> list[str]:
    """The README's `prefixrl STAGE …` line (continuation lines joined), as argv after the stage name."""
    text = re.sub(r"\\\n\s*", " ", README.read_text())
    line = next(x for x in text.splitlines() if x.startswith(f"prefixrl {stage} "))
    return shlex.split(line.split("#")[0])[2:]


def test_the_readme_stage_commands_pretrain_the_base_the_demo_pretrains():
    stage = tyro.cli(config_class("pretrain"), args=readme_command("pretrain"))
    demo = DemoConfig().resolved()
    demo_base = pipeline.base_config(Path("runs/demo/base"), demo, seed=demo.seed, target_pass1=demo.target_pass1)
    assert task_spec(stage.task()) == task_spec(demo_base.task())
    assert settings_record(stage) == settings_record(demo_base)  # every setting the base is a function of
    # and the stages after it sample the demo's problems: same count, same data seed
    collect = tyro.cli(config_class("collect"), args=readme_command("collect"))
    assert (problem_count(collect.problems, "chain", collect.generated), collect.data_seed) == (demo.train_problems, demo.seed)


def test_every_command_that_builds_a_base_shares_the_shape_and_its_default():
    for cls in (PretrainConfig, DemoConfig, BenchConfig):
        assert issubclass(cls, TaskShape)
        shape = {f.name: f.default for f in dataclasses.fields(cls) if f.name in {g.name for g in
                                                                                  dataclasses.fields(TaskShape)}}
        assert shape == {"hard_steps": 16, "rare_steps": 4, "classes": 4, "teacher_accuracy": None, "recurrences": 0,
                         "recur_operands": "same", "copy_rate": 0.0}, cls  # the reuse switch off by default


@pytest.mark.parametrize("bad", [{"rare_steps": 17}, {"teacher_accuracy": 1.5}, {"hard_steps": 0}, {"copy_rate": 1.5},
                                 {"recurrences": 5}, {"recur_operands": "other", "recurrences": 1}])
def test_a_bad_shape_is_one_bad_input_for_every_command(bad):
    for cls in (PretrainConfig, DemoConfig, BenchConfig):
        with pytest.raises(BadInput):
            cls(**bad).check()
