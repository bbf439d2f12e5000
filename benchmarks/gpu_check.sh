#!/usr/bin/env bash
# The GPU checks of docs/BENCHMARKS.md, for a machine with a CUDA GPU and the project importable:
#  1. Table 1, 3 methods x 3 seeds on full MNIST, all nine runs packed on the one GPU at once
#     (Ray tasks of one CPU and 1/9 of the GPU each);
#  2. the same configs for one seed, one run at a time (a whole GPU per task), for trials per hour
#     with and without packing;
#  3. the CUDA tests (CI has no GPU, so they skip there): each method on the GPU, trials and Ray
#     tasks packed two to a GPU, and Ray Train DDP with two workers sharing the GPU.
# Each stage has its own time limit, so one stage's failure leaves the others' figures.
# PYTHON names the interpreter (default: python).
#
#     benchmarks/gpu_check.sh ../shared/data reports/gpu
set -u
data=${1:?usage: benchmarks/gpu_check.sh DATA_DIR [OUT_DIR]}
out=$(mkdir -p "${2:-reports/gpu}" && cd "${2:-reports/gpu}" && pwd)
export PYTHONUNBUFFERED=1
py=${PYTHON:-python}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  nproc
  $py -c "import torch, ray, mlflow; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'ray', ray.__version__, 'mlflow', mlflow.__version__)"
} 2>&1 | tee "$out/machine.txt"

table1() {  # NAME TIMEOUT ARGS...: one table1.py run with its own store and report
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" $py benchmarks/table1.py --dataset mnist --data-dir "$data" --parallel \
        --tracking-uri "sqlite:///$out/$name.db" --out "$out/$name" "$@" 2>&1 | grep -v "INFO mlflow" | tee "$out/$name.log"
    echo "$name: $((SECONDS - t0)) s from the command's start to its end" | tee -a "$out/$name.log"
}
table1 packed "${PACKED_TIMEOUT:-240}" --seeds 0 1 2 --gpus-per-run 0.11
table1 one_at_a_time "${SERIAL_TIMEOUT:-180}" --seeds 0 --gpus-per-run 1

t0=$SECONDS
timeout "${TEST_TIMEOUT:-240}" $py -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_distributed.py -k gpu 2>&1 | tee "$out/tests.log"
echo "tests: $((SECONDS - t0)) s" | tee -a "$out/tests.log"
