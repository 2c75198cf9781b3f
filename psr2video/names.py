"""The names a user can type, in one torch-free place: click choices, the model registry and the runtimes use these.

Importing this module costs nothing (no torch, no av), so ``--help`` and argument checking stay fast.
"""

from __future__ import annotations

VARIANTS: tuple[str, ...] = ("realtime", "stream", "photo", "pro")  # ParagonSR2 networks
BASELINES: tuple[str, ...] = ("mks", "bicubic")  # plain resamplers (no weights)
MODELS: tuple[str, ...] = VARIANTS + BASELINES
SCALES: tuple[int, ...] = (2, 3, 4)
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")
EXPORT_PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")  # what ONNX / TensorRT artifacts can hold
# "torch-compile" = torch.compile, "torch-graphs" = CUDA graph replay, "torch-compile-graphs" = both;
# "onnxruntime-<provider>" pins ONNX Runtime's execution provider (plain "onnxruntime" picks the best one)
BACKENDS: tuple[str, ...] = ("auto", "torch", "torch-compile", "torch-graphs", "torch-compile-graphs", "onnxruntime",
                             "onnxruntime-cpu", "onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt")
ENGINE_BACKENDS: tuple[str, ...] = ("auto", "onnxruntime", "tensorrt")  # the ones with prebuilt artifacts
CODECS: tuple[str, ...] = ("libx264", "libx265", "libsvtav1", "ffv1", "libvpx-vp9", "h264_nvenc", "hevc_nvenc",
                           "av1_nvenc")
# the encoder settings used when --crf / --preset are not given (the writer's and the --help text's one source;
# NVENC's "CRF" is its -cq; ffv1 is lossless and takes neither, libvpx-vp9 takes no preset)
DEFAULT_CRF: dict[str, int] = {"libx264": 18, "libx265": 20, "libsvtav1": 28, "libvpx-vp9": 30, "h264_nvenc": 20,
                               "hevc_nvenc": 22, "av1_nvenc": 28}
DEFAULT_PRESET: dict[str, str] = {"libx264": "medium", "libx265": "medium", "libsvtav1": "8", "h264_nvenc": "p4",
                                  "hevc_nvenc": "p4", "av1_nvenc": "p4"}
DEVICES_HELP = "auto, cpu, cuda or cuda:N"


def device_name_problem(device: str) -> str | None:
    """Why ``device`` is not a device name (auto, cpu, cuda, cuda:N), or None; torch-free, so a typo is said
    before torch loads. Whether this machine has that device is for ``runtime.upscaler.resolve_device``."""
    import re

    if re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        return None
    return f"unknown device {device!r}; use {DEVICES_HELP}"


IMAGE_EXTS = frozenset({".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"})  # pictures read and written
# what ``psr2video in out`` treats as a picture (GIF too, still or animated; AVIF, TGA and JPEG's other names;
# not an image folder's training or evaluation picture: 256 colours make a poor HR)
JPEG_ALIASES = {".jfif": ".jpg", ".jpe": ".jpg"}  # other names of JPEG files
PICTURE_EXTS = IMAGE_EXTS | {".gif", ".avif", ".tga"} | set(JPEG_ALIASES)
# what a folder IN upscales as videos (by name: a folder of thousands of files is not probed one by one)
VIDEO_EXTS = frozenset({".mkv", ".mp4", ".m4v", ".mov", ".avi", ".webm", ".ts", ".m2ts", ".mts", ".mpg", ".mpeg",
                        ".vob", ".wmv", ".asf", ".flv", ".f4v", ".ogv", ".nut", ".3gp", ".y4m", ".mxf", ".dv",
                        ".divx", ".rm", ".rmvb"})


def image_sequence(path: str) -> tuple[int, int, int] | None:
    """(first number, frames read, pictures matching) of a numbered picture sequence named with a printf
    pattern (``frames/f_%04d.png``), or None when ``path`` is not one. Names are matched as FFmpeg's image2
    writes them: ``%04d`` (or ``%4d``) is the number padded to at least 4 digits (1000 is ``1000`` under
    ``%03d``), ``%d`` unpadded, ``%%`` a literal ``%``; frames are read from the first number up to a gap.
    Torch- and PyAV-free: an IN that is a sequence is known before anything loads."""
    import re
    from pathlib import Path

    p = Path(path)
    if path == "-" or p.exists() or not p.parent.is_dir():
        return None
    parts = re.split(r"(%%|%0?\d*d)", p.name)
    fields = [t for t in parts[1::2] if t != "%%"]
    if len(fields) != 1 or any("%" in t for t in parts[::2]):  # one number, and no other % (FFmpeg refuses it)
        return None
    width = int(fields[0][1:-1] or 0)
    regex = "".join(re.escape(t) if i % 2 == 0 else "%" if t == "%%" else r"(\d+)" for i, t in enumerate(parts))
    pattern = re.compile(regex)
    numbers = []
    for f in p.parent.iterdir():
        m = pattern.fullmatch(f.name)
        if m and m.group(1) == f"{int(m.group(1)):0{width}d}":  # written so by FFmpeg (no stray padding)
            numbers.append(int(m.group(1)))
    if not numbers:
        return None
    numbers.sort()
    run = 1
    while run < len(numbers) and numbers[run] == numbers[0] + run:
        run += 1
    return numbers[0], run, len(numbers)
