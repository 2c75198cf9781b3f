"""``--crop``: edges cut off the frames before the model sees them (black bars of a letterboxed or pillarboxed
video): less to upscale, no model work on black, no bars in the output.

``--crop T:B:L:R`` gives the pixels off the top, bottom, left and right of the stored frame (HandBrake's order);
``--crop auto`` finds the black bars on frames sampled across the video, keeping every edge any sampled frame
shows something in (a subtitle in the bar keeps its bar).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import PsrError
from . import sws

SAMPLES = 12  # frames looked at by --crop auto, spread over the video
BLACK_LIMIT = 24  # luma steps (8-bit) above black that still count as black (FFmpeg's cropdetect default)
_SPEC = re.compile(r"^\s*(\d+):(\d+):(\d+):(\d+)\s*$")
MIN_SIDE = 8  # a crop must leave at least this many pixels each way


class CropError(PsrError, ValueError):
    """A --crop that can't apply to this video (one line)."""


@dataclass(frozen=True)
class Crop:
    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0

    @classmethod
    def parse(cls, text: str) -> Crop | str:
        """``auto`` (returned as the string) or ``T:B:L:R``; ValueError in one line."""
        if text.strip().lower() == "auto":
            return "auto"
        m = _SPEC.match(text)
        if m is None:
            raise ValueError(f"--crop expects auto or TOP:BOTTOM:LEFT:RIGHT pixels (e.g. 140:140:0:0), got {text!r}")
        return cls(*(int(g) for g in m.groups()))

    def __str__(self) -> str:
        return f"{self.top}:{self.bottom}:{self.left}:{self.right}"

    def __bool__(self) -> bool:
        return any((self.top, self.bottom, self.left, self.right))

    def size(self, width: int, height: int) -> tuple[int, int]:
        return width - self.left - self.right, height - self.top - self.bottom

    def check(self, width: int, height: int, sub_w: int, sub_h: int) -> None:
        """Refuse a crop that leaves nothing, or cuts through a chroma sample (4:2:0 needs even edges)."""
        w, h = self.size(width, height)
        if w < MIN_SIDE or h < MIN_SIDE:  # what is left, or what the crop cuts past the frame (never a size < 0)
            cut = [f"{self.top + self.bottom} of its {height} rows" if h <= 0 else "",
                   f"{self.left + self.right} of its {width} columns" if w <= 0 else ""]
            left = f"{w}x{h}" if w > 0 and h > 0 else "it cuts " + " and ".join(c for c in cut if c)
            raise CropError(f"--crop {self} leaves less than {MIN_SIDE}x{MIN_SIDE} of the {width}x{height} frame "
                            f"({left}); nothing to upscale")
        odd = [v for v, step in ((self.left, sub_w), (self.right, sub_w), (self.top, sub_h), (self.bottom, sub_h))
               if step and v % 2]
        if odd:
            which = "every edge" if sub_w and sub_h else "the left and right edges" if sub_w else "the top and bottom"
            raise CropError(f"--crop {self}: the video's chroma is subsampled, so {which} must be even (odd: "
                            f"{', '.join(map(str, odd))})")

    def apply(self, info: Any) -> tuple[int, int]:
        """The size of ``info``'s frames (a reader StreamInfo) after this crop, checked against their chroma
        subsampling (CropError): the one place the run's set-up and a scale-out's early check ask."""
        from .color import PLANAR

        sub = (0, 0) if info.color.from_rgb else PLANAR.get(info.color.work_fmt, (1, 1, 8))[:2]
        self.check(info.width, info.height, *sub)
        return self.size(info.width, info.height)

    def planes(self, planes: list[Any], sub_w: int, sub_h: int) -> list[Any]:
        """Batched planes (N, H, W[, 2]) cut to the crop: the first and a fourth (alpha) at full size, the
        chroma planes at their subsampling."""
        out = []
        for i, p in enumerate(planes):
            sx, sy = (sub_w, sub_h) if i in (1, 2) else (0, 0)
            h, w = p.shape[1], p.shape[2]
            out.append(p[:, self.top >> sy: h - (self.bottom >> sy), self.left >> sx: w - (self.right >> sx)])
        return out


def _luma(frame: Any) -> tuple[Any, int]:
    """The frame's luma as 8-bit numbers and the level of black in them: the Y plane as stored (16 in limited
    range, 0 in full) for planar YUV and grey; other layouts (semi-planar, big-endian, packed) through an 8-bit
    planar copy in the same range; RGB through a grey conversion (black 0)."""
    import numpy as np

    fmt = frame.format
    if fmt.name.endswith(("f32le", "f32be", "f16le", "f16be")):  # float samples (grey EXR): a grey conversion
        return sws.to_ndarray(frame, "gray"), 0
    if not fmt.name.startswith(("yuv", "gray")) or fmt.name.endswith("be") or len(fmt.components) < 1:
        if not getattr(fmt, "is_rgb", False) and not fmt.name.startswith(("rgb", "bgr", "gbr", "argb", "abgr")):
            return _luma(sws.reformat(frame, format="yuv420p"))  # keeps the stream's range: black stays where it was
        return sws.to_ndarray(frame, "gray"), 0
    from .reader import _view

    bits = fmt.components[0].bits
    y = _view(frame.planes[0], np.uint16 if bits > 8 else np.uint8, frame.planes[0].width)
    if bits > 8:
        y = (y >> (bits - 8)).astype(np.uint8)
    full = fmt.name.startswith(("yuvj", "gray")) or frame.color_range == 2
    return y, 0 if full else 16


def _bars(y: Any, black: int) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) black rows/columns of an 8-bit luma plane, or None for a frame that is all
    (or nearly all) black: a fade tells nothing about the bars. A row is black when at most 1 in 200 of its
    pixels is brighter than black + BLACK_LIMIT (a subtitle or a logo in the bar keeps it)."""
    import numpy as np

    lit = y > black + BLACK_LIMIT
    rows = np.flatnonzero(lit.mean(axis=1) > 0.005)
    cols = np.flatnonzero(lit.mean(axis=0) > 0.005)
    h, w = y.shape
    if len(rows) < h // 10 or len(cols) < w // 10:
        return None
    return int(rows[0]), int(h - 1 - rows[-1]), int(cols[0]), int(w - 1 - cols[-1])


PER_SAMPLE = 300  # frames decoded at most after a seek (the keyframe before a point may be far back)
SEQUENTIAL = 1200  # frames read from the start where the length is unknown or short: all of them, or no crop


def detect(path: str, fmt: str | None = None, fps: Any = None, trim: Any = None) -> tuple[Crop, int | None, bool]:
    """The black bars of the video at ``path`` (``fmt``/``fps``: as the run opens it, a picture sequence's rate):
    (the crop, the distinct frames that showed a picture, whether the frames covered the whole video); None
    frames when there is nothing to measure (no video stream, a file that can't be opened: the run says why).

    A video of known length over 2 s is looked at in 12 points spread over it, by seeking: the frame at each
    point (within half the spacing of it; a point whose frame is more than 300 decoded frames past its keyframe,
    or whose first frame after the seek is already past it, is missed). Anything shorter, or of unknown length
    (a raw stream), is read from the start, every tenth frame, to its end if that comes within 1,200 frames.
    Only when every point was reached, or the end, do the frames cover the video; then each edge is cut as far
    as every frame is black there (rounded down to even), else nothing is cut. Frames of another size than the
    stream's (a mid-stream change) don't count. With ``trim`` (--start/--end) the points are spread over that part
    (a part read from the start: its frames only)."""
    import av

    from .reader import InputError, main_video, open_input, video_end, video_rate, video_start
    from .trim import container_origin, decode_part

    try:
        c = open_input(path, fmt, fps=fps)  # refuses a file without video, as the run will (InputError)
    except InputError:
        return Crop(), None, False
    found: dict[float | int, tuple[int, int, int, int]] = {}
    covered = False
    with c:
        s = main_video(c)
        size = (s.codec_context.width, s.codec_context.height)

        def look(frame: Any, key: float | int) -> None:
            if (frame.width, frame.height) == size and key not in found:
                bars = _bars(*_luma(frame))
                if bars is not None:
                    found[key] = bars

        try:
            start, end = video_start(c), video_end(c)
            win = None if trim is None else trim.window(container_origin(c))
            if win is not None:
                start = max(start, float(win.lo))
                end = float(win.hi) if end is None and win.hi is not None else end
                end = min(end, float(win.hi)) if end is not None and win.hi is not None else end
            length = (end - start) if end is not None else 0.0
            if length > 2.0 and c.format.name != "image2" and s.time_base:
                spacing = length / (SAMPLES + 1)
                rate = float(video_rate(s) or 25)
                half = max(spacing / 2, 1.5 / rate)  # a point's frame lies within this of it (and a frame or so)
                reached = 0
                for k in range(1, SAMPLES + 1):
                    target = start + spacing * k
                    c.seek(int(target / s.time_base), stream=s, backward=True)
                    for n, frame in enumerate(c.decode(s)):
                        if n >= PER_SAMPLE or (frame.time is not None and frame.time > target + half):
                            break  # missed: a frame past the point is another point's (a keyframe after a seek)
                        if frame.time is not None and frame.time >= target - half:
                            reached += 1
                            look(frame, frame.time)
                            break
                covered = reached == SAMPLES
            else:  # (a part: from the keyframe before it, to its end)
                every = 1 if 0 < length <= 2.0 else 10  # a short part: every frame (1-2 of a 0.5 s part, before)
                for i, frame in enumerate(decode_part(c, s, win)):
                    if i >= SEQUENTIAL:
                        break
                    if i % every == 0:
                        look(frame, i)
                else:
                    covered = True  # the whole video (or part) was read
        except av.error.FFmpegError:
            covered = False
    if not covered or not found:
        return Crop(), len(found), covered
    top, bottom, left, right = (min(b[i] for b in found.values()) // 2 * 2 for i in range(4))
    return Crop(top, bottom, left, right), len(found), covered


def resolve(crop: Crop | str | None, path: str, say: Any, fmt: str | None = None, fps: Any = None,
            trim: Any = None) -> Crop | None:
    """``--crop auto``: the black bars of ``path``, found now and said through ``say`` (None when there are
    none, or the frames could not cover the video); a given crop as it is."""
    if crop != "auto":
        return crop or None
    from pathlib import Path

    found, frames, covered = detect(path, fmt, fps, trim)
    name = Path(path).name
    part = "the part" if trim is not None else "the video"
    if frames is None:  # nothing to measure: the run says why (no video stream, an unreadable file)
        return None
    if not covered:
        say(f"note: --crop auto: the frames of {name} that could be reached don't cover {part} (keyframes far "
            f"apart, or a long stream of unknown length), so its bars can't be told; nothing cropped (--crop "
            "T:B:L:R to choose)")
        return None
    if not frames:
        say(f"note: --crop auto: no frame of {name} showed a picture to measure; nothing cropped")
        return None
    if not found:
        say(f"note: --crop auto: {name} has no black bars ({frames} frame(s) looked at, across {part}); nothing "
            "cropped")
        return None
    say(f"note: --crop auto: black bars of {name} cut off: {found} (top:bottom:left:right, from {frames} frame(s) "
        f"across {part}; --crop T:B:L:R to choose)")
    return found


__all__ = ["BLACK_LIMIT", "PER_SAMPLE", "SEQUENTIAL", "Crop", "CropError", "SAMPLES", "detect", "resolve"]
