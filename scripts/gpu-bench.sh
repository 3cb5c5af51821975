#!/usr/bin/env bash
# The whole GPU speed table in one run (about 5 minutes on an H100): the longlive-1.3b architecture with random
# weights at 832x480, 120 latent frames (477 video frames), bf16; variants side by side; JSON and text in $OUT.
#
# Installs nothing but the project's own code. torchao (for int8/fp8) travels as a wheel when the machine
# lacks it; prepare it once with:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 -d .whl torchao
# and carry `.whl` with the run.
set -euo pipefail
out=${OUT:-out}
mkdir -p "$out"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" | tee "$out/gpu-env.txt"
# Exactness first: the golden parity tests on this stack.
python3 -m pytest -q -p no:cacheprovider tests/test_golden_parity.py 2>&1 | tail -n 3 | tee -a "$out/gpu-env.txt"
python3 -m longlive_cli bench --preset longlive-1.3b --random-weights --device cuda --dtype bf16 --frames 120 \
  -V base -V decoder=fast -V quantize=fp8,decoder=fast -V quantize=int8 -V window=21,sink=0 \
  --json "$out/gpu-bench.json" 2>&1 | tee "$out/gpu-bench.txt"
