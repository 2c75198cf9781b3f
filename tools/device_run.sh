#!/usr/bin/env bash
# First GPU run on the lent machine (no internet there): unpack the carried packages, then the checks in order
# of value, each under its own limit and all under DEADLINE seconds, each log streaming straight into $OUT
# (a kill still returns what was written; at most 8 files come back).
#   bash .gpu/run.sh 1   info, gputests, model rows (eager, CUDA graphs), light pipeline, vs
#   bash .gpu/run.sh 2   gpu_check's own pipeline step, then the torch.compile rows (warm machine only)
set -u
cd "$(dirname "$0")/.." || exit 1
O=${OUT:-/tmp/out}; G=${G:-/tmp/g}; S=${SITE:-/tmp/site}; mkdir -p "$O" "$G" "$S"
t0=$SECONDS; DEADLINE=${DEADLINE:-530}
run_for() {  # run_for SECONDS CMD...: at most SECONDS, and never past DEADLINE
  local left=$((DEADLINE - (SECONDS - t0))) s=$1; shift
  [ "$left" -gt 15 ] || { echo "SKIPPED (deadline): $*"; return 1; }
  [ "$s" -lt "$left" ] || s=$left
  timeout -k 10 "$s" "$@"; local rc=$?; [ $rc = 124 ] && echo "TIMEOUT after ${s}s: $*"; return $rc
}
tar -C "$S" -xJf .gpu/site.tar.xz 2>/dev/null ||
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' .gpu/site.tar.xz "$S" ||
  { echo "unpack failed" > "$O/env.log"; exit 1; }
sed -i "1s|^#!.*|#!$(command -v python3)|" "$S"/bin/*
export PYTHONPATH=$S:$PWD${PYTHONPATH:+:$PYTHONPATH} PATH=$S/bin:$PATH PY=python3 PYTHONUNBUFFERED=1
export PSR2VIDEO_CACHE=${PSR2VIDEO_CACHE:-/tmp/psr2cache}
{ echo "unpacked in $((SECONDS - t0)) s"; command -v python3 cc gcc vspipe nvidia-smi
  python3 -m pip list 2>/dev/null | grep -iE '^(torch|numpy|pytest|click|rich|onnx|onnxruntime|onnxruntime-gpu|tensorrt|av|vapoursynth|spandrel|platformdirs) '
  ldconfig -p | grep -E 'libnvcuvid|libnvidia-encode|libcuda\.so' || echo "ldconfig: no libnvcuvid/libnvidia-encode"
  ls /usr/local/nvidia/lib64 2>/dev/null | grep -E 'nvcuvid|nvidia-encode'
  nvidia-smi -q 2>/dev/null | grep -iE -A2 'Encoder Stats|Decoder|NVDEC|NVENC' | head -12; } > "$O/env.log" 2>&1
B=torch-graphs  # call 1 uses no torch.compile (its cold compile time is the unknown); call 2 times it
C=$G/bbb_1920x1080.mkv
if [ "${1:-1}" = 1 ]; then
  run_for 45  tools/gpu_check.sh -o "$G" info     > "$O/info.log" 2>&1
  run_for 300 tools/gpu_check.sh -o "$G" gputests > "$O/gputests.log" 2>&1
  for r in "torch fp16 1 --peers" "torch fp16 4 --no-peers" "$B fp16 1 --peers" "torch bf16 1 --no-peers"; do
    set -- $r
    run_for 60 python3 -m psr2video bench model -v realtime,stream --size 1920x1080 --device cuda --backend "$1" \
        -p "$2" --batch "$3" "$4" --warmup 3 --iters 20 --min-seconds 1 --json "$G/model_$1_$2_b$3.json"
  done > "$O/model.log" 2>&1
  (cd "$G" && tar czf "$O/model_json.tgz" model_*.json) 2>/dev/null
  { run_for 60 python3 -m psr2video upscale samples/bbb_480x270.mkv "$C" --variant mks --scale 4 --device cuda \
        --crf 18 --preset veryfast -q -y
    run_for 60 python3 -m psr2video bench pipeline "$C" --variant realtime --device cuda --backend $B --precision fp16 \
        --batch 2 --preset ultrafast
    run_for 60 python3 -m psr2video upscale "$C" "$G/out_4k.mkv" --variant realtime --device cuda --backend $B \
        --batch 2 --hwaccel cuda --codec libx264 --preset ultrafast -y
  } > "$O/pipeline_light.log" 2>&1
  run_for 120 tools/gpu_check.sh -o "$G" vs > "$O/vs.log" 2>&1
else
  run_for 240 tools/gpu_check.sh -o "$G" pipeline > "$O/pipeline.log" 2>&1
  for b in 1 4; do run_for 120 python3 -m psr2video bench model -v realtime,stream --size 1920x1080 --device cuda \
      --backend torch-compile-graphs -p fp16 --batch $b --no-peers --warmup 3 --iters 20 --min-seconds 1 \
      --json "$G/model_tcg_b$b.json"; done > "$O/model_compile.log" 2>&1
fi
echo "total $((SECONDS - t0)) s" >> "$O/env.log"
