#!/usr/bin/env bash
# The GPU check: everything about CUDA that only a GPU machine can show, in one run
# that fits in 10 minutes on one GPU. Run from the repository root:
#
#   benchmarks/gpu_check.sh            # on a CUDA machine (after `make install`)
#   benchmarks/gpu_check.sh --dry-run  # print the steps, run nothing
#   benchmarks/gpu_check.sh --cpu      # the same plumbing on the CPU, small: checks
#                                      # the script itself, measures nothing about GPUs
#
# Steps (each logs to $OUT, default results/gpu_check; a failing step is reported
# and the others still run; the exit status is the number of failed steps):
#   1. the `gpu` tests (pytest -m gpu): determinism, CPU = CUDA streams, no host
#      sync per step, kernels per optimizer step, a 4-trial fractional-GPU study
#   2. a CUDA trial of each optimizer (ResNet-20 on digits, 300 steps, 2 seeds)
#   3. a 4-trial study at resources.gpu 0.25 through Ray, from the CLI
#   4. the optimizer-step benchmark on CUDA (ratios to SGD foreach and SGD fused)
#   5. the population benchmark, when benchmarks/bench_population.py exists
# Environment: PY (python, default .venv/bin/python or python3), ROBUSTNESS (the
# CLI, default .venv/bin/robustness or robustness), OUT.
set -u

MODE=gpu
case "${1:-}" in
  --dry-run) MODE=dry ;;
  --cpu) MODE=cpu ;;
  "") ;;
  *) echo "usage: $0 [--dry-run | --cpu]" >&2; exit 2 ;;
esac

if [ -x .venv/bin/python ]; then PY=${PY:-.venv/bin/python}; else PY=${PY:-python3}; fi
if [ -x .venv/bin/robustness ]; then ROB=${ROBUSTNESS:-.venv/bin/robustness}; else ROB=${ROBUSTNESS:-robustness}; fi
OUT=${OUT:-results/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH="${PYTHONPATH:-$PWD}"

DEVICE=cuda GPU=0.25 STEPS=300 MODEL=resnet20
if [ "$MODE" = cpu ]; then DEVICE=cpu GPU=0 STEPS=20 MODEL=mlp; fi

FAILED=0
step() {  # step NAME COMMAND...: run (or print) one step, its output in $OUT/NAME.log
  local name=$1
  shift
  echo "== $name: $*"
  [ "$MODE" = dry ] && return 0
  local start=$SECONDS
  if "$@" >"$OUT/$name.log" 2>&1; then
    echo "   ok ($((SECONDS - start)) s)"
  else
    echo "   FAILED ($((SECONDS - start)) s), last lines of $OUT/$name.log:"
    tail -n 15 "$OUT/$name.log" | sed 's/^/   | /'
    FAILED=$((FAILED + 1))
  fi
}

if [ "$MODE" != dry ]; then
  "$PY" - <<'EOF' | tee "$OUT/device.txt"
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    print(f"device: {torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU(s)")
EOF
fi

# 1. the gpu tests (skipped, not run, without CUDA: the CPU mode checks the plumbing only)
if [ "$MODE" = cpu ]; then
  step gpu_tests "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py
else
  step gpu_tests "$PY" -m pytest -q -p no:cacheprovider -rs -m gpu
fi

# 2. a trial of each optimizer on the device
for optimizer in sgd novograd insgd; do
  step "trial_$optimizer" "$ROB" trial --optimizer "$optimizer" --lr 0.01 --model "$MODEL" \
    --dataset digits --steps "$STEPS" --eval-every 100 --seed 0,1 --device "$DEVICE" --json
done

# 3. a 4-trial fractional-GPU study (4 trials share one GPU, run at once)
cat >"$OUT/fractional.yaml" <<EOF
name: gpu-check
problem: {dataset: digits, model: cnn, batch_size: 64, steps: $STEPS, eval_every: 50, device: auto}
optimizers: {novograd: {}, insgd: {}}
space: {lr: [0.01, 0.1]}
seeds: [0]
resources: {cpu: 1, gpu: $GPU, max_concurrent: 4, configs_per_trial: 1}
EOF
rm -rf "$OUT/fractional"
step study "$ROB" run "$OUT/fractional.yaml" --out "$OUT/fractional" --no-report --quiet
if [ "$MODE" != dry ] && [ -f "$OUT/fractional/trials.parquet" ]; then
  "$PY" -c "
import pandas as pd
t = pd.read_parquet('$OUT/fractional/trials.parquet')
print(t[['run_id', 'optimizer', 'lr', 'outcome', 'final_train_loss', 'wall_seconds']].to_string())
" | tee "$OUT/study_trials.txt"
fi

# 4-5. benchmarks (not in the CPU mode: they would measure nothing about GPUs)
if [ "$MODE" != cpu ]; then
  step bench_optim env BENCH_OPTIM_DEVICE="$DEVICE" "$PY" -m benchmarks optim
  if [ -f benchmarks/bench_population.py ]; then
    step bench_population env BENCH_DEVICE="$DEVICE" "$PY" -m benchmarks population
  else
    echo "== bench_population: benchmarks/bench_population.py not present, skipped"
  fi
fi

echo "== done: $FAILED failed step(s); logs in $OUT"
exit "$FAILED"
