"""scripts/gpu_check.py in its dry-run mode, as CI runs it: every command of the GPU check is parsed by
its own parser (prefixrl's configs, TRL's parser through the example, Hydra against verl's config where
verl is installed: CI's verl environment runs this file too), and a flag that no parser knows is refused."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.py"


def script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_dry_run_parses_every_command_of_the_gpu_check(tmp_path):
    out = tmp_path / "check.json"
    r = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out), "--work", str(tmp_path / "w")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    report = json.loads(out.read_text())
    status = {s["name"]: s["status"] for s in report["steps"]}
    assert list(status) == ["demo", "prepare", "collect-vllm", "import", "prefixes", "export-trl", "export-verl",
                            "trl", "verl"]
    assert all(status[s] == "parsed" for s in ("demo", "collect-vllm", "import", "prefixes", "export-trl",
                                               "export-verl"))
    for step, package in (("trl", "trl"), ("verl", "verl")):  # each parsed wherever its library is installed
        installed = importlib.util.find_spec(package) is not None
        assert status[step] == "parsed" if installed else status[step].startswith("not checked"), status
    assert report["mode"] == "dry-run" and report["environment"]["versions"]["prefixrl"]
    # never overwritten
    r = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 2 and "already exists" in r.stderr


@pytest.mark.parametrize("kind,argv", [
    ("prefixrl", ["prefixrl", "collect", "--no-such-flag", "1"]),
    ("trl", ["accelerate", "launch", str(SCRIPT.parents[1] / "examples" / "trl_grpo.py"), "--no_such_flag", "1"]),
    ("verl", [sys.executable, "-m", "verl.trainer.main_ppo", "trainer.no_such_key=1"]),
])
def test_a_flag_no_parser_knows_is_refused(kind, argv):
    if kind != "prefixrl" and importlib.util.find_spec(kind) is None:
        pytest.skip(f"{kind} is not installed here")
    with pytest.raises((SystemExit, ValueError)):
        script().dry_run({"name": kind, "kind": kind, "argv": argv})
