"""Every number of every command is checked before anything is written (`cli.options.check_numbers` and
each config's `check`): NaN, ±inf and negative counts are one-line errors with exit 2, and a run fed
random values either runs or exits 2 having written nothing."""

import dataclasses
import math
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefixrl_lab.cli import COMMANDS, config_class, main

POSITIONAL = {"bench": ["paper"]}


def numeric_fields(cls, prefix=""):
    """(flag, kind) of every int or float field, nested configs included (train's RLSettings flags have
    no prefix); bools are not numbers."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        if dataclasses.is_dataclass(t):
            out += numeric_fields(t)
            continue
        args = set(typing.get_args(t)) or {t}
        if typing.get_origin(t) is tuple:
            args = {a for a in typing.get_args(t) if a is not Ellipsis}
        if bool in args:
            continue
        kind = "float" if float in args else "int" if int in args else None
        if kind:
            out.append((f"--{f.name.replace('_', '-')}", kind))
    return out


CASES = [(cmd, flag, kind) for cmd in COMMANDS for flag, kind in numeric_fields(config_class(cmd))
         if flag != "--which"]
BAD = {"float": ["nan", "inf", "-inf", "-1", "-1e300"], "int": ["-1", "-1000000000000"]}


def test_every_command_has_its_numbers_covered():
    """The walk finds the fields (a renamed or nested field would silently drop out of the property)."""
    flags = {(c, f) for c, f, _ in CASES}
    for expected in [("train", "--lr"), ("train", "--steps"), ("collect", "--cap"), ("collect", "--verifier-timeout"),
                     ("eval", "--samples"), ("pretrain", "--lr"), ("bench", "--flops-budget"), ("theory", "--eta"),
                     ("demo", "--collect-cap"), ("export", "--mix"), ("prefixes", "--low")]:
        assert expected in flags, expected


@pytest.mark.parametrize("cmd,flag,kind", CASES, ids=[f"{c}{f}" for c, f, _ in CASES])
def test_non_finite_and_negative_numbers_are_refused_before_anything_is_written(cmd, flag, kind, tmp_path,
                                                                                  monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # every default output is relative: nothing may appear here
    for value in BAD[kind]:
        capsys.readouterr()
        assert main([cmd, *POSITIONAL.get(cmd, []), f"{flag}={value}"]) == 2, (cmd, flag, value)
        err = capsys.readouterr().err.strip()
        assert err, (cmd, flag, value)
        assert list(tmp_path.iterdir()) == [], (cmd, flag, value)


INPUT_STAGES = ["select", "collect", "prefixes", "train", "eval", "export"]


@st.composite
def stage_and_values(draw):
    cmd = draw(st.sampled_from(INPUT_STAGES))
    fields = [(f, k) for c, f, k in CASES if c == cmd]
    chosen = draw(st.lists(st.sampled_from(fields), min_size=1, max_size=4, unique=True))
    # extreme magnitudes too: what passes a sign check but not what sampling, the RNG or memory can take
    number = {"float": st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                 st.sampled_from([0.0, 1e300, 1e-50, 5e-324, 1e-4, 2.0**63])),
              "int": st.one_of(st.integers(-10**12, 10**12),
                               st.sampled_from([0, 1, 10**18, 2**20 + 1, 2**31 - 1, 2**63 - 1, 2**63, 10**20, 10**30]))}
    return cmd, [(f, draw(number[k])) for f, k in chosen]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=stage_and_values())
def test_random_numbers_into_a_stage_whose_input_is_missing_write_nothing(case, tmp_path_factory, capsys):
    """Whatever the numbers, a stage exits 2 with one line and has written nothing: its numbers are checked,
    then its outputs claimed, then its inputs read, and a failure removes the folders it created."""
    cmd, values = case
    cwd = tmp_path_factory.mktemp("prop")
    args = [cmd, "--model", str(cwd / "missing")] + [f"{f}={v}" for f, v in values]
    import os

    old = os.getcwd()
    os.chdir(cwd)
    try:
        capsys.readouterr()
        rc = main(args)
    finally:
        os.chdir(old)
    err = capsys.readouterr().err.strip()
    assert rc == 2, (args, err)
    assert list(cwd.iterdir()) == [], (args, list(cwd.rglob("*")))
    bad = any(isinstance(v, float) and not math.isfinite(v) or v < 0 for _, v in values)
    assert not bad or "must be" in err or "error" in err.lower(), err
