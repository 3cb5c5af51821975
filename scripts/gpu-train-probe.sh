#!/usr/bin/env bash
# How fast each stage of the tiny recipe trains on this machine (its GPU when it has one): a few hundred steps of
# each stage, in order, from a fresh run folder, with the wall time and the last steps/s line of each. The answer
# decides how much of scripts/train_tiny.sh fits one GPU lease. Lands in $OUT (or out/): train-probe.txt (summary)
# and train-probe.log (every stage's output).
#
#   bash scripts/gpu-train-probe.sh                      # STEPS="vae:100 decoder:300 teacher:300 student:60 long:20"
set -uo pipefail
out=${OUT:-out}
mkdir -p "$out"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
run=${RUN:-/tmp/train-probe}
rm -rf "$run"
for spec in ${STEPS:-vae:100 decoder:300 teacher:300 student:60 long:20}; do
  stage=${spec%%:*}
  steps=${spec##*:}
  start=$(date +%s)
  echo "== $stage, $steps steps" >>"$out/train-probe.log"
  timeout "${STAGE_TIMEOUT:-150}" python3 -m longlive_cli.train.cli --stage "$stage" --config "recipes/tiny/$stage.yaml" \
    --out "$run" --steps "$steps" --threads "${THREADS:-8}" >>"$out/train-probe.log" 2>&1
  rc=$?
  rate=$(grep -E "[0-9]+/$steps .*steps/s" "$out/train-probe.log" | tail -n 1)
  echo "$stage: $steps steps, exit $rc, $(($(date +%s) - start)) s wall; last: ${rate:-no rate line}" | tee -a "$out/train-probe.txt"
  [ "$rc" -eq 0 ] || break
done
