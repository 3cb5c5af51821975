#!/usr/bin/env bash
# What the test suite needs beyond the venv: Debian's chromium for the browser test of `longlive live`.
# Installs it with apt when this machine allows (root, or sudo without a password); otherwise says so and goes on,
# and the browser test skips with the reason (under CI=true it fails instead).
set -uo pipefail
for name in chromium chromium-browser google-chrome; do
    command -v "$name" >/dev/null && exit 0
done
if ! command -v apt-get >/dev/null; then
    echo "note: no chromium and no apt-get here; the browser test will be skipped (install chromium to run it)" >&2
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "note: chromium is missing and installing it needs root: sudo apt-get install chromium" >&2
    exit 0
fi
echo "installing chromium for the browser test (apt-get)..." >&2
"${as_root[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq chromium \
    || echo "note: could not install chromium; the browser test will be skipped" >&2
exit 0
