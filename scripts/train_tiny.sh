#!/usr/bin/env bash
# Reproduce the embedded tiny model from a clean clone: five training stages, then export into the package
# (src/longlive_cli/assets/tiny.safetensors and MODEL_CARD.md).
#
#   scripts/train_tiny.sh [RUN_DIR]      # default runs/tiny; run it again to resume after an interruption
#
# Each stage checkpoints in RUN_DIR/<stage>/ and resumes from there; a finished stage only rewrites its result.
# THREADS (default 1) sets CPU threads per process: on a busy shared CPU, OpenMP's extra threads stall.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/tiny}
PY=${PYTHON:-.venv/bin/python}
THREADS=${THREADS:-1}
start=$(date +%s)
for stage in vae decoder teacher student long; do
  "$PY" -m longlive_cli.train.cli --stage "$stage" --config "recipes/tiny/$stage.yaml" --out "$RUN" \
    --resume --threads "$THREADS"
done
"$PY" -m longlive_cli.train.cli --stage export --out "$RUN" --threads "$THREADS" --generator long \
  --command "scripts/train_tiny.sh $RUN" --total-s "$(($(date +%s) - start))"
