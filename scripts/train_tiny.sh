#!/usr/bin/env bash
# Reproduce the embedded tiny model from a clean clone: five training stages, then export into the package
# (src/longlive_cli/assets/tiny.safetensors and MODEL_CARD.md).
#
#   scripts/train_tiny.sh [RUN_DIR]      # default runs/tiny; run it again to resume after an interruption
#
# Each stage checkpoints in RUN_DIR/<stage>/ and resumes from there; a finished stage only rewrites its result.
# The decoder needs only the VAE and is needed only by the long stage, so it trains in a second process beside the
# teacher and the student (its output in RUN_DIR/decoder.out): two CPU cores finish in the time of the longer chain.
# THREADS (default 1) sets CPU threads per process: on a busy shared CPU, OpenMP's extra threads stall.
# RECIPES (default recipes/tiny) and ASSETS (default: the package) choose where recipes are read and the bundle goes.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/tiny}
PY=${PYTHON:-.venv/bin/python}
THREADS=${THREADS:-1}
RECIPES=${RECIPES:-recipes/tiny}
start=$(date +%s)

stage() {
  "$PY" -m longlive_cli.train.cli --stage "$1" --config "$RECIPES/$1.yaml" --out "$RUN" --resume --threads "$THREADS"
}

stage vae
mkdir -p "$RUN"
stage decoder >"$RUN/decoder.out" 2>&1 &
decoder=$!
trap 'kill "$decoder" 2>/dev/null || true' EXIT
stage teacher
stage student
if ! wait "$decoder"; then
  echo "the decoder stage failed; its output: $RUN/decoder.out" >&2
  tail -n 20 "$RUN/decoder.out" >&2
  exit 1
fi
trap - EXIT
stage long
"$PY" -m longlive_cli.train.cli --stage export --out "$RUN" --threads "$THREADS" --generator long \
  ${ASSETS:+--assets "$ASSETS"} --command "scripts/train_tiny.sh $RUN" --total-s "$(($(date +%s) - start))"
