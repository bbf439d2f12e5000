#!/usr/bin/env bash
# The GPU checks of docs/BENCHMARKS.md, for a machine with a CUDA GPU and the project installed:
# the CUDA tests (CI has no GPU, so they skip there: single-process training of each method, and
# Ray Train DDP with two workers sharing the GPU), then Table 1's three methods on full MNIST,
# one seed, timed. Each stage has its own time limit, so one stage's failure leaves the others'
# figures. PYTHON names the interpreter (default: python).
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
t0=$SECONDS
timeout "${TEST_TIMEOUT:-240}" $py -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_distributed.py -k gpu 2>&1 | tee "$out/tests.log"
echo "tests: $((SECONDS - t0)) s" | tee -a "$out/tests.log"
t0=$SECONDS
timeout "${TABLE_TIMEOUT:-330}" $py benchmarks/table1.py --dataset mnist --data-dir "$data" --seeds 0 \
    --tracking-uri "sqlite:///$out/table1.db" --out "$out/table1" 2>&1 | grep -v "INFO mlflow" | tee "$out/table1.log"
echo "table1: $((SECONDS - t0)) s" | tee -a "$out/table1.log"
