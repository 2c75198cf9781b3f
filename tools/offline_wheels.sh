#!/usr/bin/env bash
# Wheels for a GPU machine without a package index (an air-gapped node, a CUDA container that already has
# torch): downloads, here, the x86-64 CPython 3.12 wheels of what such an image usually lacks, to install
# there with no index:
#   here:  tools/offline_wheels.sh .whl                 (about 42 MB: PyAV with NVDEC/NVENC, VapourSynth, ...)
#   there: python3 -m pip install --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
# Extra package names (e.g. onnxruntime-gpu, 255 MB) can follow the folder.
set -euo pipefail
DIR=${1:?usage: tools/offline_wheels.sh DIR [PACKAGE ...]}
shift
PKGS=(av platformdirs spandrel vapoursynth "$@")
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
mkdir -p "$DIR"
for p in "${PKGS[@]}"; do
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$DIR" "$p"
done
du -sh "$DIR"
