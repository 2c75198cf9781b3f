"""Benchmark: ``vspipe`` through ``core.psr2.Upscale`` vs the ``Upscaler`` alone, on the same frames.

    psr2video vs bench [--clip FILE] [--variant realtime] [--scale 2] [--frames N]
                       [--backend auto] [--device auto] [--precision P] [--weights FILE] [--repeat 2]

1. Decodes the first N frames of the clip (default: the sample clip under samples/) with the PyAV
   source and converts them to RGBS in VapourSynth, exactly as the vspipe script does.
2. Times the ``Upscaler`` alone on those frames (already tensors; output synchronised on its device).
3. Times ``vspipe`` on a script doing source -> RGBS -> psr2.Upscale -> raw RGBS to /dev/null (vspipe's own
   "Output N frames in S seconds (F fps)" figure, F from its unrounded time: script evaluation and model
   loading are not counted, one warm-up frame is rendered while the script is evaluated; a run too fast for
   vspipe's figure falls back to the wall time of the whole vspipe run, a lower bound).

Without shipped weights for the variant, an untrained model of the same architecture is saved to a
temporary file (speed does not depend on the weights' values). Each side is timed ``--repeat`` times
and the best run counts (the machine may be shared). Prints the machine and the commands.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .. import paths
from ..errors import UserError
from ..machine import describe

SCRIPT = """\
import vapoursynth as vs
from psr2video.vs.source import open_clip
core = vs.core
src = open_clip({clip!r})[:{n} + 1]
rgb = core.resize.Bicubic(src, format=vs.RGBS, matrix_in_s="709")
up = core.psr2.Upscale(rgb, **{kwargs!r})
up.get_frame({n})  # warm-up (not part of the output)
up[:{n}].set_output()
"""


def find_clip() -> Path:
    if paths.SAMPLE_CLIP.is_file():
        return paths.SAMPLE_CLIP
    raise UserError(f"sample clip {paths.SAMPLE_CLIP} not found (an installed package has no samples/); "
                    "pass --clip FILE")


def rgb_frames(clip: Path, n: int) -> tuple[list[torch.Tensor], tuple[int, int]]:
    import vapoursynth as vs

    from .source import open_clip

    core = vs.core
    rgb = core.resize.Bicubic(open_clip(clip, core)[:n], format=vs.RGBS, matrix_in_s="709")
    frames = []
    for f in rgb.frames():
        frames.append(torch.from_numpy(np.stack([np.asarray(f[p]) for p in range(3)]))[None])
    return frames, (rgb.width, rgb.height)


def time_upscaler(frames: list[torch.Tensor], kwargs: dict, repeat: int = 1) -> tuple[float, str]:
    from ..runtime.upscaler import Upscaler

    up = Upscaler(**kwargs)
    sync = torch.cuda.synchronize if up.device.type == "cuda" else (lambda: None)
    up(frames[0])
    sync()
    best = 0.0
    for _ in range(repeat):
        t = time.perf_counter()
        for x in frames:
            up(x)
        sync()
        best = max(best, len(frames) / (time.perf_counter() - t))
    return best, repr(up)


VSPIPE_OUTPUT = re.compile(r"Output (\d+) frames in ([\d.]+) seconds \(([\d.]+|inf|nan) fps\)")


def vspipe_fps(text: str, wall: float) -> float | None:
    """Frames per second from vspipe's "Output N frames in S seconds (F fps)" line in ``text`` (None when
    there is none). F is computed from vspipe's unrounded time, so it is the figure for a run that prints
    "0.00 seconds"; when neither F nor N / S is a positive finite figure, N over ``wall`` (the whole vspipe
    run, script evaluation included: a lower bound)."""
    m = VSPIPE_OUTPUT.search(text)
    if not m:
        return None
    frames, seconds, fps = int(m.group(1)), float(m.group(2)), float(m.group(3))
    if 0 < fps < float("inf"):
        return fps
    if seconds > 0:
        return frames / seconds
    return frames / max(wall, 1e-9)


def time_vspipe(clip: Path, n: int, kwargs: dict, workdir: Path) -> tuple[float, str]:
    script = workdir / "bench.vpy"
    script.write_text(SCRIPT.format(clip=str(clip), n=n, kwargs=kwargs))
    vspipe = Path(sys.executable).parent / "vspipe"
    cmd = [str(vspipe if vspipe.is_file() else "vspipe"), str(script), os.devnull]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    fps = vspipe_fps(r.stderr + r.stdout, time.perf_counter() - t0)
    if r.returncode != 0 or fps is None:
        text = (r.stderr + r.stdout).strip()
        hint = ("\nhint: run 'psr2video vs install' (builds the plugin and runs 'vapoursynth config')"
                if "vapoursynth config" in text or "psr2" in text else "")
        raise UserError(f"vspipe failed:\n{text}{hint}")
    return fps, " ".join(cmd)


def run(clip: Path | None, variant: str, scale: int, weights: str | None, frames: int | None, backend: str,
        device: str, precision: str | None, repeat: int, command: str, echo=print) -> None:
    """Time the Upscaler alone and vspipe through psr2.Upscale on the same frames; ``echo`` the figures."""
    from ..models import BASELINES, build_model, list_shipped, save_weights

    clip = (clip or find_clip()).resolve()
    n = frames or (200 if torch.cuda.is_available() and device != "cpu" else 16)
    with tempfile.TemporaryDirectory() as tmp:
        note = ""
        if weights is None and variant not in BASELINES and f"{variant}_x{scale}" not in list_shipped():
            weights = str(save_weights(build_model(variant, scale).fuse_for_release(),
                                       Path(tmp) / f"{variant}_x{scale}.safetensors"))
            note = " (untrained weights: no shipped ones yet; speed is the same)"
        kw = {"variant": variant, "scale": scale, "backend": backend, "device": device}
        if weights:
            kw["weights"] = weights
        if precision:
            kw["precision"] = precision
        rgb, (w, h) = rgb_frames(clip, n)
        echo(f"machine: {describe()}")
        echo(f"clip: {clip} ({w}x{h} -> {w * scale}x{h * scale}, {len(rgb)} frames), {variant} x{scale}{note}")
        up_fps, desc = time_upscaler(rgb, dict(kw, tile=0), repeat)
        echo(f"Upscaler alone : {up_fps:8.2f} fps  {desc}")
        vs_fps, cmd = max(time_vspipe(clip, len(rgb), kw, Path(tmp)) for _ in range(max(1, repeat)))
        echo(f"vspipe (psr2)  : {vs_fps:8.2f} fps  {cmd}")
        echo(f"ratio vspipe / Upscaler alone: {vs_fps / up_fps:.2f}x (target >= 0.90x)")
        echo(f"command: {command}")
