#!/usr/bin/env bash
# Fetch, on a machine with PyPI, the wheels a GPU machine without network needs beside its own
# Python (one that already has torch, numba and PyYAML, e.g. the lent H200s: Python 3.12, torch
# with CUDA, numba-cuda) to run concord-gpu-check. Writes .whl/ in the repo root (git-ignored).
#
# Usage: tools/gpu_wheels.sh [--python-version 3.12]
# Then, on the GPU machine, from the repo root (with .whl/ copied or carried along):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl \
#     && PYTHONPATH=/tmp/site:$PWD python3 -m toolkit.bin.gpu_check --out docs/gpu/
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pyver=3.12
if [ "${1:-}" = --python-version ]; then pyver=$2; fi
# the toolkit's runtime needs that such an image lacks (audio I/O, Kaldi fbank, kaldiio);
# phonemizer and espeak are not needed by the GPU check (no corpus is synthesized there)
pkgs=(kaldiio soundfile cffi pycparser soxr kaldi-native-fbank)
mkdir -p "$root/.whl"
for p in "${pkgs[@]}"; do
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "$pyver" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
    -d "$root/.whl" "$p" 2> >(grep -v "is ignored: it is neither" >&2)
done
echo "gpu_wheels.sh: $(ls "$root/.whl" | wc -l) wheels, $(du -sh "$root/.whl" | cut -f1) in $root/.whl"
