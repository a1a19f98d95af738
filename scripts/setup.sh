#!/usr/bin/env bash
# Create the project's virtual environment and install ligo into it.
#
# Torch is chosen before anything else so that pip never resolves a plain `torch`
# requirement to the multi-GB CUDA wheels on a machine without a GPU:
#   1. a torch that is already importable (e.g. a user's CUDA build, seen through
#      --system-site-packages or, when python3 is itself a virtualenv, through a .pth file
#      naming its packages; or already in an active venv/conda env with USE_ACTIVE_ENV=1) is kept;
#   2. otherwise, on a machine with an NVIDIA driver, the default (CUDA) wheel is installed;
#   3. otherwise the CPU build of torch 2.13.0: first from a local wheel if pip's
#      find-links has one, else from PyTorch's CPU-only index.
# Override with TORCH_SPEC (e.g. "torch==2.13.0") and TORCH_INDEX_URL. USE_ACTIVE_ENV=1 installs
# into the `python` on PATH (an active virtualenv or conda env) instead of .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}

if [ "${USE_ACTIVE_ENV:-0}" = 1 ]; then
  PY=$(command -v python)  # the active virtualenv / conda env
else
  if [ ! -x "$VENV/bin/python" ]; then
    # system site packages stay visible so an existing (CUDA) torch is reused, not replaced
    "$PYTHON" -m venv --system-site-packages "$VENV"
    # ... but only the base interpreter's: when $PYTHON is itself a virtualenv with torch
    # (an activated venv; a GPU image's /opt/.../.venv), a .pth file makes its packages
    # visible too, behind the new venv's own, instead of downloading another torch
    parent=$("$PYTHON" -c 'import sys, sysconfig, torch
paths = sysconfig.get_paths()
if sys.prefix != sys.base_prefix:
    print("\n".join(dict.fromkeys((paths["purelib"], paths["platlib"]))))' 2>/dev/null || true)
    if [ -n "$parent" ]; then
      site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
      echo "$parent" > "$site/_ligo_parent_venv.pth"
      echo "setup: $PYTHON is a virtualenv with torch; $VENV sees its packages ($(echo $parent))"
    fi
  fi
  PY="$VENV/bin/python"
fi
PIP=("$PY" -m pip install --quiet)

if "$PY" -c "import torch" 2>/dev/null; then
  echo "setup: keeping installed torch $("$PY" -c 'import torch; print(torch.__version__, "cuda" if torch.version.cuda else "cpu")')"
elif [ -n "${TORCH_SPEC:-}" ]; then
  "${PIP[@]}" "$TORCH_SPEC"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "setup: NVIDIA GPU found, installing the CUDA build of torch"
  "${PIP[@]}" "torch>=2.4"
else
  echo "setup: no GPU, installing the CPU build of torch $TORCH_VERSION"
  # --no-index: only a wheel already on this machine (pip find-links); no network, fails fast
  if ! "${PIP[@]}" --no-index --no-deps "torch==$TORCH_VERSION" 2>/dev/null; then
    "${PIP[@]}" --no-deps "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX_URL"
  fi
fi

# torch is now satisfied, so this resolves only the remaining dependencies
"${PIP[@]}" -e ".[test]"
"$PY" -c "import torch, transformers, ligo; print('setup: ok, torch', torch.__version__, '| transformers', transformers.__version__)"
