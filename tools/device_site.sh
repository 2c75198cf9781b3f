#!/usr/bin/env bash
# Build .gpu/site.tar.xz: the packages psr2video needs that a lent GPU machine's image lacks (av, vapoursynth,
# spandrel, platformdirs; it has CUDA torch, numpy, onnx, click, rich, pillow, safetensors, filelock, pytest and
# no package index), stripped of debug info (av's is 25.8 MB of its 35) and packed with xz: about 24 MB, so that
# with the checkout (about 39 MiB) it fits the 64 MiB a device call carries. Run here, before the first device call;
# tools/device_run.sh unpacks it there. .gpu/ is ignored by git (carry it: carry=[".gpu"]).
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1
PY=${PY:-.venv/bin/python}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$d/w" "av==$("$PY" -c 'import av; print(av.__version__)')" \
    vapoursynth spandrel platformdirs
"$PY" -m pip install -q --no-index --no-deps --no-compile --target "$d/site" "$d"/w/*.whl
find "$d/site" -name '*.so*' -type f -exec strip --strip-unneeded {} +
[ -f "$d/site/vapoursynth/vspipe" ] && strip --strip-unneeded "$d/site/vapoursynth/vspipe"
find "$d/site" -name '*.pxd' -delete
mkdir -p .gpu
cp tools/device_run.sh .gpu/run.sh
pack() { tar -C "$d/site" -cf - . | xz -9e -T0 > .gpu/site.tar.xz; }
total() {
    local size carry
    size=$({ git ls-files -z; git ls-files -oz --exclude-standard; } | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s}')
    carry=$(du -sb .gpu | cut -f1)
    echo "checkout $size B + .gpu $carry B = $((size + carry)) B of 67108864 (64 MiB)" >&2
    echo $((size + carry))
}
pack
if [ "$(total)" -ge 67108864 ]; then  # the checkout grew (training checkpoints): the GPU checks need no VapourSynth
    echo "too large to carry: packing again without vapoursynth (its tests skip on the device)" >&2
    rm -rf "$d"/site/vapoursynth* "$d"/site/VapourSynth*
    pack
    [ "$(total)" -lt 67108864 ] || { echo "still too large to carry: leave the checkpoints out of the checkout copy"; exit 1; }
fi
