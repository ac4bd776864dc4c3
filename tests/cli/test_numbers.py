"""Numbers by what the computation needs (`prefixrl.rollout.limits`): one rule per kind, the same in every
stage, extreme magnitudes included. Each is refused in one line naming the field before anything is
written, and a value at the edge of its range runs."""

import dataclasses
import typing

import pytest
from conftest import pretrain_tiny
from test_bad_input import one_line_error
from test_config_property import numeric_fields

from prefixrl.rollout.limits import MAX_INT
from prefixrl_lab.cli import config_class, main

STAGES = ["select", "collect", "prefixes", "train", "eval", "export"]
INTS = [(cmd, flag) for cmd in STAGES for flag, kind in numeric_fields(config_class(cmd)) if kind == "int"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return pretrain_tiny(tmp_path_factory.mktemp("numbers") / "base", steps=3, hard_steps=6)


@pytest.mark.parametrize("cmd,flag", INTS, ids=[f"{c}{f}" for c, f in INTS])
def test_every_integer_of_every_stage_fits_64_bits(cmd, flag, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([cmd, "--model", str(tmp_path / "missing"), f"{flag}={2**63}"]) == 2
    one_line_error(capsys, flag[2:].replace("-", "_"), "2^63")
    assert list(tmp_path.iterdir()) == []


def fields_named(names):
    out = []
    for cmd in STAGES:
        flat = {}

        def walk(cls):
            for f in dataclasses.fields(cls):
                t = typing.get_type_hints(cls)[f.name]
                walk(t) if dataclasses.is_dataclass(t) else flat.setdefault(f.name, t)

        walk(config_class(cmd))
        out += [(cmd, f"--{name.replace('_', '-')}") for name in names if name in flat]
    return out


# each kind's range, the same in every stage that has such a number
KINDS = [(fields_named(["temperature"]), ["1e-50", "5e-5", "0"], "temperature must be finite and >= 0.0001"),
         (fields_named(["top_p"]), ["0", "1.5", "1e-400"], "top_p must be in (0, 1]"),
         (fields_named(["seed", "data_seed"]), [str(2**63), "-1"], None),
         (fields_named(["cap", "per_round", "budget", "samples", "samples_per_prompt", "eval_samples"]),
          [str(2**20 + 1), str(10**18)], "must be in [1, 2^20")]


@pytest.mark.parametrize("cases,values,needle", KINDS, ids=["temperature", "top_p", "seeds", "samples"])
def test_one_range_per_kind_of_number_in_every_stage(cases, values, needle, tmp_path, monkeypatch, capsys):
    assert len(cases) >= 4  # the kind is found in several stages (a renamed field would drop out)
    monkeypatch.chdir(tmp_path)
    for cmd, flag in cases:
        for value in values:
            capsys.readouterr()
            assert main([cmd, "--model", str(tmp_path / "missing"), f"{flag}={value}"]) == 2, (cmd, flag, value)
            err = one_line_error(capsys, flag[2:].replace("-", "_"))
            assert needle is None or needle in err or "must be >= 0" in err or "fit 64 bits" in err, err
    assert list(tmp_path.iterdir()) == []


def test_the_largest_seed_runs_in_every_sampling_stage(base, tmp_path):
    """Seeds are derived twice (a round or step, then a row): below 2^63 none overflows torch's generator."""
    seed = str(MAX_INT)
    assert main(["collect", "--model", str(base), "--problems", "2", "--cap", "2", "--per-round", "2",
                 "--max-new-tokens", "8", "--min-yield", "0", "--seed", seed, "--data-seed", seed,
                 "--out", str(tmp_path / "t.parquet")]) == 0
    assert main(["eval", "--model", str(base), "--problems", "2", "--samples", "2", "--k", "1", "--max-new-tokens",
                 "8", "--seed", seed, "--data-seed", seed]) == 0
    assert main(["train", "--model", str(base), "--method", "rl", "--problems", "2", "--steps", "1", "--prompts-per-step",
                 "2", "--samples-per-prompt", "2", "--eval-problems", "2", "--eval-samples", "1", "--max-new-tokens", "8",
                 "--seed", seed, "--data-seed", seed, "--out", str(tmp_path / "run")]) == 0


def test_sizes_the_model_or_memory_cannot_take_are_refused_before_sampling(base, tmp_path, capsys):
    # eval refuses what train refuses: a completion past the model's positions
    assert main(["eval", "--model", str(base), "--problems", "2", "--samples", "2", "--k", "1",
                 "--max-new-tokens", "5000", "--out", str(tmp_path / "e.json")]) == 2
    one_line_error(capsys, "exceeds the model's 256 positions")
    # one problem's samples in one engine call are held at once: 2^20 samples of 64 tokens is past 2^24
    assert main(["collect", "--model", str(base), "--problems", "2", "--cap", str(2**20), "--per-round", str(2**20),
                 "--max-new-tokens", "64", "--min-yield", "0", "--out", str(tmp_path / "t.parquet")]) == 2
    one_line_error(capsys, "per_round (1048576) x max_new_tokens (64)", "lower per_round")
    assert list(tmp_path.iterdir()) == []
