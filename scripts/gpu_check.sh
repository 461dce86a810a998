#!/usr/bin/env bash
# Check GPU pinning and GPU metrics where NVIDIA GPUs exist; says so and exits 0 where none do.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
exec "$PYTHON" scripts/gpu_check.py "$@"
