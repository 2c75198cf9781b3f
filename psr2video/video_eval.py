"""Compressed-video validation: panning clips made from HR stills, downscaled, H.264-compressed, upscaled.

Every HR image gives one short clip: a window panning diagonally (``step`` HR pixels a frame horizontally,
a third of that vertically, so the LR sees sub-pixel motion). Each HR frame is downscaled by antialiased
bicubic, the LR clip is encoded with libx264 at ``crf`` (yuv420p, 4:2:0 chroma) through PyAV and decoded
again as the video command reads a video (``video.reader.frame_rgb``), and every method upscales the same
decoded frames. Reported per method: PSNR-Y / SSIM-Y against the HR frames (benchmark protocol: Y, shaved
border) and the temporal error ``mean |(out_t - out_t-1) - (hr_t - hr_t-1)|`` on Y (0-255), which grows with
flicker and crawling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from .evaluate import UpscaleFn
from .metrics import psnr_y, rgb_to_y, ssim_y
from .pictures import list_images, load_rgb
from .video import sws


@dataclass
class VideoResult:
    method: str
    clips: int
    frames: int
    psnr: float
    ssim: float
    temporal: float
    per_clip: list[dict] = field(default_factory=list)


def pan_clip(img: Image.Image, frames: int, size: tuple[int, int], step: int) -> list[np.ndarray] | None:
    """HR frames (uint8 HWC) of a window of ``size`` (w, h) panning across ``img``; None if too small."""
    w, h = size
    dx, dy = step, max(1, step // 3)
    if img.width < w + dx * (frames - 1) or img.height < h + dy * (frames - 1):
        return None
    a = np.asarray(img)
    return [a[t * dy: t * dy + h, t * dx: t * dx + w].copy() for t in range(frames)]


def compress(frames: Sequence[np.ndarray], crf: int, codec: str = "libx264",
             preset: str = "medium") -> list[np.ndarray]:
    """Encode ``frames`` (uint8 RGB, even sizes) as one clip in memory and decode it back to RGB."""
    import io

    import av

    from .video.color import RANGE_LIMITED, SPACE_SMPTE170M, decide_color
    from .video.reader import frame_rgb

    buf = io.BytesIO()
    h, w = frames[0].shape[:2]
    with av.open(buf, "w", format="matroska") as out:
        s = out.add_stream(codec, rate=Fraction(25))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": str(crf), "preset": preset}
        for i, f in enumerate(frames):
            vf = sws.reformat(av.VideoFrame.from_ndarray(f, format="rgb24"), format="yuv420p")
            vf.pts = i
            out.mux(s.encode(vf))
        out.mux(s.encode(None))
    buf.seek(0)
    # decoded as psr2video reads a video (interpolated chroma; swscale's to_ndarray takes the nearest chroma
    # sample), with the matrix and range swscale encoded with above (BT.601, limited)
    color = decide_color(SPACE_SMPTE170M, RANGE_LIMITED, None, None, h, "yuv420p")
    with av.open(buf) as c:
        decoded = [(frame_rgb(fr, color)[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
                   for fr in c.decode(video=0)]
    if len(decoded) != len(frames):
        raise RuntimeError(f"{codec} round trip gave {len(decoded)} of {len(frames)} frames")
    return decoded


def build_clips(folder: str | Path, scale: int, crf: int, frames: int = 8, size: tuple[int, int] = (240, 160),
                step: int = 3, limit: int | None = None) -> list[tuple[str, list[np.ndarray], list[np.ndarray]]]:
    """(name, HR frames, decoded compressed LR frames) for every image of ``folder`` large enough."""
    w, h = size
    if w % (2 * scale) or h % (2 * scale):
        raise ValueError(f"clip size {w}x{h} must be a multiple of {2 * scale} (4:2:0 LR)")
    clips = []
    for path in list_images(folder):
        hr = pan_clip(load_rgb(path), frames, size, step)
        if hr is None:
            continue
        lr = [np.asarray(Image.fromarray(f).resize((w // scale, h // scale), Image.Resampling.BICUBIC)) for f in hr]
        clips.append((path.stem, hr, compress(lr, crf)))
        if limit and len(clips) >= limit:
            break
    if not clips:
        raise ValueError(f"no image in {folder} is large enough for {w}x{h} pans of {frames} frames")
    return clips


def evaluate_clips(fn: UpscaleFn, clips: Sequence[tuple[str, list[np.ndarray], list[np.ndarray]]], scale: int,
                   method: str, ssim: bool = True) -> VideoResult:
    """PSNR-Y / SSIM-Y / temporal error of ``fn`` over the clips."""
    ps, ss, ts, rows = [], [], [], []
    for name, hr, lr in clips:
        outs = [np.asarray(fn(Image.fromarray(f), scale)) for f in lr]
        cp = [psnr_y(o, g, scale) for o, g in zip(outs, hr, strict=True)]
        cs = [ssim_y(o, g, scale) for o, g in zip(outs, hr, strict=True)] if ssim else [float("nan")]
        yo = [rgb_to_y(o).astype(np.float64) for o in outs]
        yh = [rgb_to_y(g).astype(np.float64) for g in hr]
        sh = slice(scale, -scale)
        te = [float(np.abs((yo[t] - yo[t - 1]) - (yh[t] - yh[t - 1]))[sh, sh].mean()) for t in range(1, len(yo))]
        ps += cp
        ss += cs
        ts += te
        rows.append({"clip": name, "psnr": float(np.mean(cp)), "temporal": float(np.mean(te))})
    return VideoResult(method, len(clips), sum(len(c[1]) for c in clips), float(np.mean(ps)),
                       float(np.mean(ss)), float(np.mean(ts)), rows)
