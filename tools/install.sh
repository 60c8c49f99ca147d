#!/usr/bin/env bash
# Create the Concord virtualenv in tools/venv and install the toolkit into it.
#
# Usage:
#   tools/install.sh                       # torch==2.13.0: the CPU build unless a GPU is found
#   TORCH_SPEC="torch==2.13.0" TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130 tools/install.sh
#   PYTHON=python3.12 tools/install.sh
#
# Which torch build: TORCH_INDEX_URL when set; else, with an NVIDIA GPU (nvidia-smi lists
# one), PyPI's default (a CUDA build); else the CPU index, so a machine without a GPU does
# not download gigabytes of CUDA libraries (a matching wheel already in pip's find-links,
# e.g. a local wheel cache, is used first, without reaching any index). A venv that already has the pinned version
# keeps it. The test extra (pytest, onnxruntime, sherpa-onnx, lhotse, ...) is installed too.
#
# Idempotent: a second run with the same setup.cfg and TORCH_SPEC only checks a stamp
# and exits. Needs no root and no apt. Fails loudly on any error.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${VENV:-$root/tools/venv}
python=${PYTHON:-python3}
torch_spec=${TORCH_SPEC:-torch==2.13.0}
torch_index=${TORCH_INDEX_URL:-}
if [ -z "$torch_index" ] && ! { command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q GPU; }; then
  torch_index=https://download.pytorch.org/whl/cpu
fi
stamp=$venv/.concord-installed

want=$( { echo "$torch_spec $torch_index"; cat "$root/setup.cfg" "$root/pyproject.toml"; } | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c "import toolkit, torch" 2>/dev/null; then
  echo "install.sh: $venv is up to date ($torch_spec)"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "install.sh: creating virtualenv $venv with $($python --version 2>&1)"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

# torch first, pinned, so the range in setup.cfg is already satisfied and no CUDA build is pulled.
have=$("$venv/bin/python" -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null || true)
if [ -n "$have" ] && [ "torch==$have" = "$torch_spec" ]; then
  echo "install.sh: $torch_spec already installed"
elif [ -n "$torch_index" ] && "${pip[@]}" install -q --no-index --no-deps "$torch_spec" 2>/dev/null; then
  # a wheel in pip's find-links (a local wheel cache): no index to reach; torch's own
  # dependencies come with the toolkit below
  echo "install.sh: installed $torch_spec from a local wheel (pip find-links)"
elif [ -n "$torch_index" ]; then
  echo "install.sh: installing $torch_spec from $torch_index"
  "${pip[@]}" install -q "$torch_spec" --index-url "$torch_index"
else
  echo "install.sh: installing $torch_spec (GPU found: PyPI's CUDA build)"
  "${pip[@]}" install -q "$torch_spec"
fi

echo "install.sh: installing the toolkit (editable) with its test extra"
"${pip[@]}" install -q -e "$root[test]"

"$venv/bin/python" - <<'PY'
import torch, toolkit, kaldiio, soundfile, sentencepiece, phonemizer, numba, kaldi_native_fbank, espeakng_loader
print(f"install.sh: ok: torch {torch.__version__}, numba {numba.__version__}, toolkit at {toolkit.__file__}")
PY
echo "$want" > "$stamp.tmp" && mv "$stamp.tmp" "$stamp"
