#!/usr/bin/env bash
# The GPU check (see benchmarks/gpu_check.py), run from the repository root:
#   on the GPU machine (allow 7 minutes):  bash benchmarks/gpu_run.sh
#   on the CPU, tiny sizes:               PYTHON=.venv/bin/python bash benchmarks/gpu_run.sh --smoke
# The GPU machine has PyTorch but no kfp / mlflow / boto3 / faiss and no network, so the package is
# not installed: PYTHONPATH=src:. puts amnet (and benchmarks/) on the path instead. Output is
# mirrored to $OUT/gpu_check.log, the summary written to $OUT/gpu_check.json.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d -t amnet-gpu-check-XXXXXX)}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export MPLBACKEND=Agg
PY="${PYTHON:-python3}"
{
  echo "host: $(hostname), $(nproc) CPUs, $(date -u +%FT%TZ)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
  "$PY" -c 'import sys, torch, torchvision, numpy, pandas, pyarrow, PIL; print("python", sys.version.split()[0], "torch", torch.__version__, "torchvision", torchvision.__version__, "numpy", numpy.__version__, "pandas", pandas.__version__, "pyarrow", pyarrow.__version__, "PIL", PIL.__version__)'
} 2>&1 | tee "$OUT/gpu_check.log"
"$PY" benchmarks/gpu_check.py --out "$OUT" "$@" 2>&1 | tee -a "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
