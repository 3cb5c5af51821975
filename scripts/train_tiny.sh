#!/usr/bin/env bash
# Reproduce the embedded tiny model from a clean clone: five training stages, then export into the package
# (src/longlive_cli/assets/tiny.safetensors and MODEL_CARD.md).
#
#   scripts/train_tiny.sh [RUN_DIR]      # default runs/tiny; run it again to resume after an interruption
#
# Each stage checkpoints in RUN_DIR/<stage>/ and resumes from there; a finished stage only rewrites its result.
# The decoder needs only the VAE and is needed only by the long stage, so it trains in a second process beside the
# student (its output in RUN_DIR/decoder.out). The teacher gains most from a second core (1.8x on two, the student
# 1.5x), so it trains alone on every core, and so do the VAE, the long stage and the export.
# THREADS (default 1) sets CPU threads per process while two stages share the CPU (on a busy shared CPU, OpenMP's
# extra threads stall); ALONE_THREADS (default: every core) those of a stage that has the CPU to itself.
# RECIPES (default recipes/tiny) and ASSETS (default: the package) choose where recipes are read and the bundle goes.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/tiny}
PY=${PYTHON:-.venv/bin/python}
THREADS=${THREADS:-1}
ALONE_THREADS=${ALONE_THREADS:-$(nproc)}
RECIPES=${RECIPES:-recipes/tiny}
start=$(date +%s)

stage() {
  "$PY" -m longlive_cli.train.cli --stage "$1" --config "$RECIPES/$1.yaml" --out "$RUN" --resume --threads "$2"
}

stage vae "$ALONE_THREADS"
stage teacher "$ALONE_THREADS"
mkdir -p "$RUN"
stage decoder "$THREADS" >"$RUN/decoder.out" 2>&1 &
decoder=$!
trap 'kill "$decoder" 2>/dev/null || true' EXIT
stage student "$THREADS"
if ! wait "$decoder"; then
  echo "the decoder stage failed; its output: $RUN/decoder.out" >&2
  tail -n 20 "$RUN/decoder.out" >&2
  exit 1
fi
trap - EXIT
stage long "$ALONE_THREADS"
"$PY" -m longlive_cli.train.cli --stage export --out "$RUN" --threads "$ALONE_THREADS" --generator long \
  ${ASSETS:+--assets "$ASSETS"} --command "scripts/train_tiny.sh $RUN" --total-s "$(($(date +%s) - start))"
