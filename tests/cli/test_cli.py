"""The command line's own behaviour: the overview answers without loading torch or transformers, every
command is reachable, and a wrong command is one line with exit 2."""

import subprocess
import sys

import pytest

from prefixrl_lab.cli import COMMANDS, config_class, main


def test_the_overview_loads_no_heavy_library():
    """`prefixrl --help` imports only the CLI's own table of commands (time to first output)."""
    code = ("import sys; from prefixrl_lab.cli import main; rc = main(['--help']); "
            "heavy = [m for m in ('torch', 'transformers', 'tyro', 'pyarrow', 'numpy') if m in sys.modules]; "
            "print('HEAVY', heavy); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout
    for name in COMMANDS:
        assert f"  {name} " in r.stdout


def test_every_commands_help_loads_no_heavy_library():
    """`prefixrl COMMAND --help` parses against configs that import no torch, transformers or pyarrow;
    the runner, and with it torch, is imported only once the options are parsed (time to first output)."""
    code = ("import sys; from prefixrl_lab.cli import COMMANDS, main\n"
            "for name in COMMANDS:\n"
            "    try: main([name, '--help'])\n"
            "    except SystemExit as e: assert e.code == 0, (name, e.code)\n"
            "print('HEAVY', [m for m in ('torch', 'transformers', 'pyarrow') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout
    for name in COMMANDS:
        assert f"prefixrl {name}" in r.stdout  # each printed its own help


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_its_config_and_help(name, capsys):
    cls = config_class(name)
    assert cls.__name__ == COMMANDS[name][1]
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    assert f"prefixrl {name}" in capsys.readouterr().out


def test_no_command_or_an_unknown_one_is_exit_2(capsys):
    assert main([]) == 2
    assert "commands:" in capsys.readouterr().err
    assert main(["tarin"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown command 'tarin'" in err[0] and "train" in err[0]
