#!/usr/bin/env bash
# How fast each stage of the tiny recipe trains on this machine (its GPU when it has one): a few hundred steps of
# each stage, in order, from a fresh run folder, with the wall time and the last steps/s line of each. The answer
# decides how much of scripts/train_tiny.sh fits one GPU lease. Lands in $OUT (or out/): train-probe.txt (summary)
# and train-probe.log (every stage's output).
#
#   bash scripts/gpu-train-probe.sh            # STEPS="vae:100 decoder:300 teacher:300 student:60 long:20"
#   STEPS="vae decoder teacher student long" EXPORT=1 bash scripts/gpu-train-probe.sh
#
# A stage named without ":N" runs its recipe's own step count. EXPORT=1 then exports the long-tuned model and
# leaves it in $OUT as tiny.safetensors.part-* (15 MB pieces; `cat` them back together) with MODEL_CARD.md and
# tiny.json.
#
#   FULL=1 bash scripts/gpu-train-probe.sh   # the whole recipe as scripts/train_tiny.sh runs it
#
# FULL=1 runs scripts/train_tiny.sh (the decoder beside the student) on recipes/tiny, or RECIPES, and
# returns the bundle as EXPORT=1 does. PRECISION (float32 or bfloat16) replaces the precision of every stage that takes
# one; Z_DIM sets the VAE's latent channels (16: the space without the shape code, 17 as recipes/tiny has it). Run
# again with KEEP=1 on the same machine, it resumes the run folder instead of starting over. FULL_TIMEOUT (seconds)
# stops the recipe there and still reports the stages that finished and each stage's log.
set -uo pipefail
out=${OUT:-out}
mkdir -p "$out"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
run=${RUN:-/tmp/train-probe}
py=${PYTHON:-python3}
[ -n "${KEEP:-}" ] || rm -rf "$run"
begin=$(date +%s)
if [ -n "${FULL:-}" ]; then
  recipes=$run.recipes
  rm -rf "$recipes" && cp -r "${RECIPES:-recipes/tiny}" "$recipes"
  if [ -n "${Z_DIM:-}" ]; then
    sed -i "s/^  z_dim: .*/  z_dim: $Z_DIM/" "$recipes/vae.yaml"
  fi
  if [ -n "${PRECISION:-}" ]; then
    for stage in vae decoder teacher student; do
      sed -i '/^precision:/d' "$recipes/$stage.yaml"
      printf '\nprecision: %s\n' "$PRECISION" >>"$recipes/$stage.yaml"
    done
  fi
  PYTHON=$py THREADS=${THREADS:-8} ALONE_THREADS=${THREADS:-8} RECIPES=$recipes ASSETS=$run/assets \
    timeout "${FULL_TIMEOUT:-0}" bash scripts/train_tiny.sh "$run" >>"$out/train-probe.log" 2>&1
  rc=$?
  [ -f "$run/decoder.out" ] && cp "$run/decoder.out" "$out/train-probe-decoder.log"
  echo "full recipe: exit $rc, $(($(date +%s) - begin)) s wall" | tee -a "$out/train-probe.txt"
  for stage in vae decoder teacher student long; do
    [ -f "$run/$stage/summary.json" ] && "$py" -c "import json,sys; s=json.load(open(sys.argv[1])); \
print(sys.argv[2], s['steps'], 'steps', s['wall_s'], 's')" "$run/$stage/summary.json" "$stage" | tee -a "$out/train-probe.txt"
  done
  [ "$rc" -eq 0 ] || exit "$rc"
  split -b 15M "$run/assets/tiny.safetensors" "$out/tiny.safetensors.part-"
  cp "$run/assets/MODEL_CARD.md" "$run/assets/tiny.json" "$out/"
  sha256sum "$run/assets/tiny.safetensors" | tee -a "$out/train-probe.txt"
  exit 0
fi
for spec in ${STEPS:-vae:100 decoder:300 teacher:300 student:60 long:20}; do
  stage=${spec%%:*}
  steps=()
  [ "$spec" = "$stage" ] || steps=(--steps "${spec##*:}")
  start=$(date +%s)
  echo "== $spec" >>"$out/train-probe.log"
  timeout "${STAGE_TIMEOUT:-150}" "$py" -m longlive_cli.train.cli --stage "$stage" --config "recipes/tiny/$stage.yaml" \
    --out "$run" "${steps[@]}" --threads "${THREADS:-8}" >>"$out/train-probe.log" 2>&1
  rc=$?
  rate=$(grep -E "^$stage [0-9]+/[0-9]+ .*steps/s" "$out/train-probe.log" | tail -n 1)
  echo "$spec: exit $rc, $(($(date +%s) - start)) s wall; last: ${rate:-no rate line}" | tee -a "$out/train-probe.txt"
  [ "$rc" -eq 0 ] || exit "$rc"
done
if [ -n "${EXPORT:-}" ]; then
  "$py" -m longlive_cli.train.cli --stage export --out "$run" --assets "$run/assets" --generator long \
    --command "STEPS=\"${STEPS:-}\" EXPORT=1 scripts/gpu-train-probe.sh" --total-s "$(($(date +%s) - begin))" \
    >>"$out/train-probe.log" 2>&1 || exit 1
  split -b 15M "$run/assets/tiny.safetensors" "$out/tiny.safetensors.part-"
  cp "$run/assets/MODEL_CARD.md" "$run/assets/tiny.json" "$out/"
  sha256sum "$run/assets/tiny.safetensors" | tee -a "$out/train-probe.txt"
fi
