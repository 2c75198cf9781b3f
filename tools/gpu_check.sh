#!/usr/bin/env bash
# GPU bring-up on an NVIDIA machine: what is installed, the GPU tests, the model-alone table (1080p -> 4K),
# the whole pipeline on a 1080p clip and vspipe; every step logs to OUTDIR/<step>.log (and JSON where the
# command writes it), so one run per row fills the README's GPU table.
#
# Usage: tools/gpu_check.sh [-o OUTDIR] [STEP ...]     steps: info gputests suite model pipeline vs
#        (default: info gputests model pipeline vs; 'suite' is the whole test suite with CUDA visible)
# PY: the Python that has psr2video's dependencies (default .venv/bin/python, else python3). Each step is
# independent, so a machine with a per-command time limit runs them one or two at a time.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUTDIR=gpu_logs
if [ "${1:-}" = "-o" ]; then OUTDIR=$2; shift 2; fi
mkdir -p "$OUTDIR"
# (.venv only where torch imports in it: a bootstrap that failed offline leaves one without)
PY=${PY:-$( [ -x .venv/bin/python ] && .venv/bin/python -c 'import torch' 2>/dev/null && echo .venv/bin/python \
           || echo python3 )}
STEPS=("$@")
[ ${#STEPS[@]} -eq 0 ] && STEPS=(info gputests model pipeline vs)
export PYTHONUNBUFFERED=1
RC=0  # a step's commands record their failures here (a step carries on with its other rows)
psr2() { "$PY" -m psr2video "$@" || { echo "FAILED: psr2video $*"; RC=1; }; }

has_backend() {  # has_backend tensorrt|onnxruntime: can it run on CUDA here? (prints why not)
    "$PY" - "$1" <<'EOF'
import sys, torch
from psr2video.runtime import auto, trt_backend
if sys.argv[1] == "tensorrt":
    ok, why = trt_backend.trt_available()
else:
    p, why = auto.ort_gpu_provider(torch.device("cuda")); ok = bool(p)
print("" if ok else why); sys.exit(0 if ok else 1)
EOF
}

has_nvenc() {  # can this GPU encode with NVENC? (an H100/H200 has none: the NVENC rows use libx264 there)
    "$PY" -c 'import sys; from psr2video.video.output_checks import encoder_problem as p; w = p("hevc_nvenc", None, None); print(w or ""); sys.exit(w is not None)'
}

step_info() {
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    psr2 info
    "$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'cuDNN', torch.backends.cudnn.version())"
}

step_gputests() {  # the tests marked gpu: TensorRT/ORT parity, NVDEC, the CUDA pipeline, VapourSynth on CUDA
    "$PY" -m pytest -q -rs -s -m gpu tests -p no:cacheprovider || RC=1
}

step_suite() {
    "$PY" -m pytest -q -rs tests -p no:cacheprovider || RC=1
}

model_row() {  # model_row BACKEND PRECISION BATCH
    psr2 bench model -v realtime,stream --size 1920x1080 --device cuda --backend "$1" -p "$2" --batch "$3" \
        --warmup 3 --iters 20 --min-seconds 3 --json "$OUTDIR/model_$1_$2_b$3.json"
}

step_model() {  # model alone, 1920x1080 -> 3840x2160, every backend that runs here, batch 1 and 4
    for b in 1 4; do
        model_row torch fp16 $b
        model_row torch-compile-graphs fp16 $b
    done
    model_row torch bf16 1
    if why=$(has_backend tensorrt); then
        for b in 1 4; do model_row tensorrt fp16 $b; done
        model_row tensorrt int8 1
    else echo "skipped: native TensorRT rows: $why"; fi
    if why=$(has_backend onnxruntime); then
        model_row onnxruntime fp16 1
        model_row onnxruntime-tensorrt fp16 1
    else echo "skipped: ONNX Runtime GPU rows: $why"; fi
}

CLIP="$OUTDIR/bbb_1920x1080.mkv"

step_pipeline() {  # the whole pipeline at x2 (1080p -> 4K) vs the model alone, x264 ultrafast and NVENC
    local clip=$CLIP  # 1920x1080 H.264 made once from the bundled sample (x4 with MKS2021)
    [ -s "$clip" ] || psr2 upscale samples/bbb_480x270.mkv "$clip" --variant mks --scale 4 --device cuda \
        --crf 18 --preset veryfast -q -y
    [ -s "$clip" ] || { echo "no 1080p clip: the pipeline rows are not measured"; RC=1; return; }
    local backend=torch-compile-graphs
    has_backend tensorrt >/dev/null && backend=tensorrt
    local nvenc=1
    has_nvenc || nvenc=0
    for v in realtime stream; do
        psr2 bench pipeline "$clip" --variant $v --device cuda --backend $backend --precision fp16 --batch 2 \
            --preset ultrafast
        if [ $nvenc = 1 ]; then
            psr2 bench pipeline "$clip" --variant $v --device cuda --backend $backend --precision fp16 --batch 2 \
                --codec h264_nvenc --preset p1
        fi
    done
    psr2 bench resize --device cuda  # --size's resampler (cuSPARSE) vs antialiased bicubic, ms per 1440p -> 1080p
    # the pipeline with --size on the device (the HUD's resize stage in the summary line): 1080p -> 1440p
    psr2 upscale "$clip" "$OUTDIR/out_1440p.mkv" --variant realtime --device cuda --backend $backend --batch 2 \
        --size x1440 --crop auto --preset ultrafast -y
    rm -f "$OUTDIR/out_1440p.mkv"
    # the HUD's stage timings of one real run (its summary line goes to the log), NVDEC in, NVENC out
    local enc=(--codec hevc_nvenc --preset p1)
    [ $nvenc = 1 ] || enc=(--codec libx264 --preset ultrafast)
    psr2 upscale "$clip" "$OUTDIR/out_4k.mkv" --variant realtime --device cuda --backend $backend --batch 2 \
        --hwaccel cuda "${enc[@]}" -y
    rm -f "$OUTDIR/out_4k.mkv"
}

step_vs() {  # vspipe through core.psr2.Upscale vs the Upscaler alone, same frames
    psr2 vs install --quiet || echo "the psr2 VapourSynth plugin could not be installed (see above)"
    for v in realtime stream; do psr2 vs bench --variant $v --device cuda --frames 200; done
}

for s in "${STEPS[@]}"; do
    declare -F "step_$s" >/dev/null || { echo "unknown step: $s (steps: info gputests suite model pipeline vs)" >&2; exit 2; }
done
status=0
for s in "${STEPS[@]}"; do
    echo "== $s ($(date -u +%H:%M:%S))"
    RC=0
    { "step_$s"; echo "RC=$RC" > "$OUTDIR/.rc"; } 2>&1 | tee "$OUTDIR/$s.log"
    grep -q "RC=0" "$OUTDIR/.rc" 2>/dev/null || { status=1; echo "== $s: something failed (see $OUTDIR/$s.log)"; }
done
rm -f "$OUTDIR/.rc"
exit $status
