#!/usr/bin/env bash
# Create .venv with Python >= 3.12 and install psr2video with its extras.
# Usage: tools/bootstrap.sh            (idempotent; re-run after pulling)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PSR2_VENV:-.venv}

find_python() {
    for c in python3.12 python3.13; do
        if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then
            command -v "$c"; return 0
        fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        # prefer 3.12 (the oldest VapourSynth supports, the one its wheels are tested with), then 3.13
        for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.12\.' | sort -V -r) \
                 $(pyenv versions --bare 2>/dev/null | grep -E '^3\.13\.' | sort -V -r); do
            p="$(pyenv root)/versions/$v/bin/python3"
            if [ -x "$p" ]; then echo "$p"; return 0; fi
        done
    fi
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    PY=$(find_python) || {
        echo "psr2video needs Python 3.12 or 3.13 (VapourSynth's wheels require it)." >&2
        echo "Install one (e.g. 'pyenv install 3.12') and run this script again." >&2
        exit 1
    }
    echo "bootstrap: creating $VENV with $PY"
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# One ONNX Runtime package per environment: `cpu` (onnxruntime) by default, `gpu` (onnxruntime-gpu +
# TensorRT 10) with PSR2_GPU=1. Switching: pip uninstall the other one first (they share files).
ORT_EXTRA=cpu
if [ "${PSR2_GPU:-0}" = "1" ]; then
    ORT_EXTRA=gpu
    "$VENV/bin/python" -m pip uninstall -q -y onnxruntime 2>/dev/null || true
fi
"$VENV/bin/python" -m pip install -q -e ".[$ORT_EXTRA,vapoursynth,train,dev,ray]"
# The VapourSynth plugin shim is a tiny C library compiled against the wheel's headers.
"$VENV/bin/python" -m psr2video vs install --quiet || echo "bootstrap: VapourSynth plugin not installed (see above)" >&2
echo "bootstrap: ready ($("$VENV/bin/python" --version))"
