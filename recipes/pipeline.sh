#!/usr/bin/env bash
# PrefixRL's whole pipeline on your model and dataset (paper §3, §5):
#   select the hard set → collect traces in shards → merge → cut prefixes → export the training rows →
#   train (TRL with accelerate, verl, or the built-in loop) → held-out pass@k.
# Every setting is a variable with the paper's value as its default; run it from the repository root:
#   MODEL=Qwen/Qwen3-1.7B DATA=BytedTsinghua-SIA/DAPO-Math-17k \
#   FIELDS="--question-field prompt --instruction {question} --answer-field reward_model.ground_truth \
#           --answer-format answer-line --id-field extra_info.index" bash recipes/pipeline.sh
# recipes/pipeline_cpu.sh is the same script at CPU size (SmolLM2-135M-Instruct, 8 problems); CI runs it.
# What each stage does and why: docs/data.md; shards and vLLM: docs/vllm.md; trainers: docs/trl.md,
# docs/verl.md. A stage that finished is not run again when the script is rerun (it resumes or skips).
set -euo pipefail

: "${MODEL:?set MODEL: the policy, a Hub id or a local folder}"
: "${DATA:?set DATA: the problems, a Hub id, a local file or a saved dataset folder}"
FIELDS=${FIELDS:-}                      # the dataset's layout: --question-field, --answer-field, ... (docs/data.md)
RENDER=${RENDER:-}                      # one rendering for every stage, e.g. --chat-template-kwargs '{...}'
OUT=${OUT:-runs/pipeline}
ENGINE=${ENGINE:-vllm}                  # sampling in select, collect and eval: vllm or builtin
VLLM_FLAGS=${VLLM_FLAGS:-}              # e.g. --tensor-parallel-size 2 --gpu-memory-utilization 0.85
SHARDS=${SHARDS:-8}                     # collection jobs, one per GPU (run here one after another unless PARALLEL=1)
PARALLEL=${PARALLEL:-0}                 # 1: the shards at once, shard i on GPU i
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-8192}
PROBLEMS=${PROBLEMS:-all}               # how many of the dataset's hard_train problems select looks at
SELECT_BUDGET=${SELECT_BUDGET:-512}     # the hard set: no verified success in this many samples (paper §5)
SELECT_PER_ROUND=${SELECT_PER_ROUND:-64}
CAP=${CAP:-2500}                        # rejection sampling: until the first verified success, at most CAP samples (0: none)
TRACES_FILE=${TRACES_FILE:-}            # traces made elsewhere (an earlier run, another model family), JSONL of
                                        # {"problem_id", "trace"}: the prefixes are cut from them, re-verified, instead
                                        # of from the sampled collection
PER_ROUND=${PER_ROUND:-64}
CHUNK=${CHUNK:-64}                      # problems per engine request; the store is saved after each
MIX=${MIX:-0.75}                        # the paper's 3 prefixed : 1 plain
TRAINER=${TRAINER:-trl}                 # trl (accelerate launch), verl (prints its command: a Ray cluster's job), builtin
TRL_FLAGS=${TRL_FLAGS:-"--num_generations 8 --per_device_train_batch_size 8 --gradient_accumulation_steps 16 \
  --max_completion_length $MAX_NEW_TOKENS --use_vllm true --vllm_mode colocate --save_strategy steps --save_steps 50"}
ACCELERATE_FLAGS=${ACCELERATE_FLAGS:-}  # e.g. --config_file zero2.yaml --num_processes 8
TRAIN_FLAGS=${TRAIN_FLAGS:-}            # builtin: prefixrl train's own (--steps, --lr, ...)
EVAL_SAMPLES=${EVAL_SAMPLES:-64}
EVAL_K=${EVAL_K:-"1 8 64"}

T="--task math --dataset $DATA $FIELDS"
L="--max-new-tokens $MAX_NEW_TOKENS"
E="--engine $ENGINE $VLLM_FLAGS"
say() { printf "\n== %s (%s)\n" "$*" "$(date +%T)"; }
resume() { [ -e "$1" ] && echo --resume || true; }  # a stage killed part-way continues where it stopped

say "1. select: the problems with no verified success in $SELECT_BUDGET samples"
# shellcheck disable=SC2046,SC2086
prefixrl select --model "$MODEL" $T $RENDER $L $E --problems "$PROBLEMS" --budget "$SELECT_BUDGET" \
  --per-round "$SELECT_PER_ROUND" --chunk-size "$CHUNK" --out "$OUT/select" $(resume "$OUT/select/sampling.parquet")
if [ ! -s "$OUT/select/selected.jsonl" ]; then
  echo "no problem is hard for $MODEL at $SELECT_BUDGET samples: nothing for PrefixRL to do"; exit 0
fi
H="--task math --dataset $OUT/select/selected.jsonl $FIELDS"  # the hard set, in the dataset's own columns

TRACES=$OUT/traces.parquet
if [ "$CAP" -gt 0 ]; then
  say "2. collect: rejection sampling in $SHARDS shards, cap $CAP"
  for i in $(seq 0 $((SHARDS - 1))); do
    # shellcheck disable=SC2046,SC2086
    cmd=(prefixrl collect --model "$MODEL" $H $RENDER $L $E --cap "$CAP" --per-round "$PER_ROUND"
         --chunk-size "$CHUNK" --shard "$i/$SHARDS" --min-yield 0 --out "$OUT/shard$i.parquet"
         $(resume "$OUT/shard$i.parquet"))
    if [ "$PARALLEL" = 1 ]; then CUDA_VISIBLE_DEVICES=$i "${cmd[@]}" & else "${cmd[@]}"; fi
  done
  wait

  say "3. merge the shards into one trace store"
  [ -e "$TRACES" ] || prefixrl merge "$OUT"/shard*.parquet --out "$TRACES"
fi
if [ -n "$TRACES_FILE" ]; then
  say "2'. import the traces of $TRACES_FILE (re-verified), for the prefixes"
  TRACES=$OUT/imported.parquet
  # shellcheck disable=SC2086
  [ -e "$TRACES" ] || prefixrl collect --model "$MODEL" $H $RENDER --import-file "$TRACES_FILE" --out "$TRACES"
fi

say "4. prefixes: 3 cuts per trace in [40 %, 80 %] of its tokens"
# shellcheck disable=SC2086
[ -e "$OUT/prefixes.parquet" ] || prefixrl prefixes --model "$MODEL" $H $RENDER --traces "$TRACES" \
  --out "$OUT/prefixes.parquet"

say "5. train with $TRAINER"
case "$TRAINER" in
  trl|verl)
    # shellcheck disable=SC2086
    [ -e "$OUT/rows-$TRAINER.parquet" ] || prefixrl export --model "$MODEL" $H $RENDER --format "$TRAINER" \
      --prefixes "$OUT/prefixes.parquet" --mix "$MIX" --out "$OUT/rows-$TRAINER.parquet"
    if [ "$TRAINER" = trl ]; then
      # shellcheck disable=SC2086
      accelerate launch $ACCELERATE_FLAGS examples/trl_grpo.py --model_name_or_path "$MODEL" \
        --rows "$OUT/rows-trl.parquet" --output_dir "$OUT/trl" $TRL_FLAGS \
        $([ -d "$OUT/trl" ] && ls -d "$OUT"/trl/checkpoint-* >/dev/null 2>&1 && echo --resume_from_checkpoint true)
      POLICY=$OUT/trl
    else
      echo "verl trains on a Ray cluster: run docs/verl.md's command with data.train_files=$OUT/rows-verl.parquet,"
      echo "then EVAL_MODEL=<its merged HF checkpoint> for step 6"; POLICY=${EVAL_MODEL:-}
    fi ;;
  builtin)
    # shellcheck disable=SC2046,SC2086
    prefixrl train --model "$MODEL" $H $RENDER $L --method prefixrl --prefixes "$OUT/prefixes.parquet" \
      --traces "$TRACES" --mix "$MIX" --out "$OUT/train" $TRAIN_FLAGS $(resume "$OUT/train")
    POLICY=$OUT/train/final ;;
  *) echo "TRAINER must be trl, verl or builtin, not $TRAINER" >&2; exit 2 ;;
esac

if [ -n "${POLICY:-}" ]; then
  say "6. held-out pass@k on hard_heldout (never selected, never trained on), unprefixed"
  # shellcheck disable=SC2086
  prefixrl eval --model "$POLICY" $T $RENDER $L $E --samples "$EVAL_SAMPLES" --k $EVAL_K \
    --per-problem "$OUT/heldout.jsonl" --out "$OUT/heldout.json" --overwrite
fi
