#!/usr/bin/env bash
# Wheels for a GPU machine without a package index (an air-gapped node, a CUDA container that already has
# torch, torchvision and numpy): downloads, here, the x86-64 CPython 3.12 wheels of psr2video's other
# dependencies and of the test runner, to install there with no index:
#   here:  tools/offline_wheels.sh .whl                  (about 60 MB; PyAV's wheel has NVDEC/NVENC)
#   there: python3 -m pip install --no-index --no-deps --target /tmp/site .whl/*.whl
#          export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH      (vspipe lands in /tmp/site/bin)
# Package names after the folder download only those (e.g. what an image lacks: av spandrel vapoursynth
# platformdirs, about 42 MB; or onnxruntime-gpu, 255 MB).
set -euo pipefail
DIR=${1:?usage: tools/offline_wheels.sh DIR [PACKAGE ...]}
shift
PKGS=("$@")
[ ${#PKGS[@]} -eq 0 ] && PKGS=(av platformdirs spandrel vapoursynth click rich markdown-it-py mdurl pygments \
    safetensors onnx protobuf einops pillow filelock typing_extensions pytest iniconfig pluggy packaging)
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
mkdir -p "$DIR"
for p in "${PKGS[@]}"; do
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$DIR" "$p"
done
du -sh "$DIR"
