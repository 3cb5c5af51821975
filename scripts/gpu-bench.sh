#!/usr/bin/env bash
# The whole GPU table in one run (at most 9 minutes on an H100 or H200): golden parity on the GPU, then the
# longlive-1.3b architecture with random weights at 832x480 in bf16, variants side by side, then a kernel profile of
# the compiled base variant when PROFILE=1. Everything lands in $OUT (or out/): gpu-env.txt, gpu-bench.json/.txt and
# gpu-profile.txt.
#
# Each variant generates 48 latent frames (189 video frames, 16 chunks): the window (12 latent frames) is full
# from the fifth chunk on, so the steady-state medians are those of any longer video. Override with FRAMES=120.
#
# Installs nothing but the project's own code. torchao (for int8/fp8) travels as a wheel when the machine
# lacks it; prepare it once with:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 -d .whl torchao==0.18.0
# (torchao 0.18 loads its kernels on torch >= 2.11, which the GPU image holds)
# and carry `.whl` with the run.
set -uo pipefail
out=${OUT:-out}
mkdir -p "$out"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
{
  nvidia-smi -L
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  python3 -c "import torchao; print('torchao', torchao.__version__)"
  # Exactness first: the golden parity tests with every model on the GPU (float32, TF32 off).
  LONGLIVE_TEST_DEVICE=cuda python3 -m pytest -q -p no:cacheprovider tests/test_golden_parity.py 2>&1 | tail -n 3
} 2>&1 | tee "$out/gpu-env.txt"
# trace_memory names the source lines holding memory at the peak (its speed is not comparable); the fp8 variant
# comes last: compiling torchao's fp8 Linears took over 120 s on an H200.
timeout 480 python3 -m longlive_cli bench --preset longlive-1.3b --random-weights --device cuda --dtype bf16 \
  --frames "${FRAMES:-48}" --variant-timeout 200 \
  -V base -V compile=true -V compile=true,overlap=true -V compile=true,decoder=fast -V trace_memory=true \
  -V compile=true,quantize=fp8,decoder=fast --json "$out/gpu-bench.json" 2>&1 | tee "$out/gpu-bench.txt"
if [ -n "${PROFILE:-}" ]; then
  timeout 150 python3 scripts/gpu_profile.py --preset longlive-1.3b --compile 2>&1 | tee "$out/gpu-profile.txt"
fi
