#!/usr/bin/env bash
# The device check of issue 15, one command, under 8 minutes on one GPU:
#   bash benchmarks/gpu_check.sh             # on a GPU machine; the table goes to $OUT (else .)
#   bash benchmarks/gpu_check.sh --dry-run   # the same steps on the CPU with tiny inputs
# What it measures: benchmarks/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python || command -v python3)}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [[ " $* " != *" --dry-run "* ]]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || { echo "no GPU: use --dry-run" >&2; exit 2; }
fi
exec timeout 470 "$PYTHON" -m benchmarks.gpu_check "$@"
