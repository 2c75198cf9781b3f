"""Animated pictures (GIF, APNG, animated WebP): every frame through the Upscaler, written as an animation again.

``psr2video anim.gif anim_x2.gif`` keeps what makes it an animation: each frame's own duration, the loop count
(or none: a GIF without one plays once) and transparency, across the three formats (GIF in, WebP out works too).
Frames are read fully composited (Pillow applies each frame's disposal and blending; a GIF's frames are drawn
onto our own canvas, where disposal 2 clears to transparent as browsers show it: ``_GifCanvas``), so every frame
the model sees is the picture a viewer shows, and the writer stores only what changed from one frame to the next.

GIF holds 256 colours, and the upscaled frames hold many more (the smooth edges are the point). One palette is
built for the whole animation from pixels of every frame, so a colour doesn't change from frame to frame (see
``gif_frames`` for the measurements). APNG is lossless, and WebP is written at quality 95 (lossless from a
lossless WebP), as a still WebP is. A frame longer than GIF's delay field holds (655.35 s) is repeated
(``_gif_repeat``).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from . import picture_metadata
from .errors import PsrError, first_line
from .fileio import atomic_path
from .names import JPEG_ALIASES
from .output_size import SizeSpec, check_format
from .video import sws

ANIMATION_EXTS = frozenset({".gif", ".png", ".webp"})  # the picture formats that hold an animation
# what a video file may be written to as an animation (an APNG from a video would surprise: most viewers show a
# .png's first frame only)
FROM_VIDEO_EXTS = frozenset({".gif", ".webp"})
ANIMATED_FORMATS = frozenset({"GIF", "PNG", "WEBP"})  # Pillow's names; a multi-page TIFF or a camera's MPO
# (JPEG with a second, preview picture) is not an animation
_FORMATS = {".gif": "GIF", ".png": "PNG", ".webp": "WEBP"}
# Every frame is held until the animation is written (the GIF and APNG writers compare each frame with the one
# before). Measured peaks are about 9 bytes per output pixel and frame (Pillow's 4-byte frames, the writers'
# copies, GIF's palette frames) plus the source frames: an animation needing more than this is refused before
# any frame is upscaled. None: 60% of this machine's memory.
MAX_BYTES: int | None = None
_BYTES_PER_OUT_PIXEL = 9
_TRANSPARENT = 255  # the GIF palette entry kept for transparent pixels (the other 255 hold colours)
_PALETTE_SAMPLE = 2**19  # pixels sampled from the frames for the GIF palette (k-means costs ~3 s per megapixel)
_GIF_MIN_MS = 20  # browsers play a GIF delay of 10 ms or less as 100 ms
_MAX_PLAYS = 65535  # GIF's and WebP's loop fields are 16-bit


def webp_lossless(path: Path) -> bool:
    """Whether the WebP file at ``path`` is lossless: its pictures (a still's, every frame's) are VP8L, none VP8."""
    kinds = set()
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
                return False
            while len(chunk := f.read(8)) == 8:
                kind, size = chunk[:4], int.from_bytes(chunk[4:], "little")
                if kind == b"ANMF":  # a frame: 16 bytes of placement, then its own chunks (ALPH, VP8 or VP8L)
                    body = f.read(size + size % 2)
                    at = 16
                    while at + 8 <= len(body):
                        sub, n = body[at:at + 4], int.from_bytes(body[at + 4:at + 8], "little")
                        kinds.add(sub)
                        at += 8 + n + n % 2
                else:
                    kinds.add(kind)
                    f.seek(size + size % 2, 1)
    except OSError:
        return False
    return b"VP8L" in kinds and b"VP8 " not in kinds


QUALITY = 95  # JPEG, WebP and AVIF outputs without --quality
LOSSY_EXTS = (".jpg", ".jpeg", *JPEG_ALIASES, ".webp", ".avif")  # what --quality is for


def webp_options(lossless: bool, quality: int | None = None) -> dict[str, Any]:
    """Pillow's WebP save options: ``quality`` (--quality) where given, else lossless where the source WebP was
    (its author's choice, kept), else quality 95. A lossless format's picture (PNG, GIF, TIFF) into .webp is
    written at quality 95: lossless, an upscaled photo came out 3.4-4.6 times larger (Set14 through realtime x2),
    only 10-30% smaller than the same PNG."""
    if lossless and quality is None:
        return {"lossless": True, "method": 4}
    return {"quality": quality or QUALITY, "method": 4}


class AnimationError(PsrError):
    """An animation that can't be read or written (named with the user's path)."""


# what Pillow raises reading a damaged or cut-off picture (a broken PNG chunk is a SyntaxError; UnidentifiedImageError
# is an OSError)
PIL_DAMAGE = (IndexError, OSError, EOFError, ValueError, SyntaxError)


def n_frames(im: Any) -> int:
    """How many frames an open picture holds; a damaged one (Pillow raises while counting) the frames that
    can be reached."""
    at = im.tell()  # Pillow's own count, when it raises, leaves the picture on the frame it stopped at
    try:
        return int(getattr(im, "n_frames", 1))
    except PIL_DAMAGE:
        n = 0
        try:
            while True:
                im.seek(n)
                n += 1
        except PIL_DAMAGE:
            pass
        try:  # back where it was (the counting walked to the last frame it could reach)
            im.seek(at)
        except PIL_DAMAGE:
            pass
        return max(n, 1)


def frame_count(path: Path) -> int:
    """How many frames the animation at ``path`` holds (1 for a still, an unreadable file, or pages that are not
    an animation)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            animated = getattr(im, "is_animated", False) and im.format in ANIMATED_FORMATS
            return n_frames(im) if animated else 1
    except PIL_DAMAGE:
        return 1


@dataclass
class Animation:
    """The frames as a viewer shows them (RGB, or RGBA where any frame is see-through), their durations in ms,
    how many times it plays (0 = forever), the metadata worth carrying, an APNG's default image (shown by
    viewers that don't animate; not a frame) and the pixel shape a video's frames are shown with."""

    frames: list[Any]
    durations: list[float]
    plays: int
    info: dict
    default: Any = None
    sar: Fraction = field(default_factory=lambda: Fraction(1))

    @property
    def alpha(self) -> bool:
        return self.frames[0].mode == "RGBA"


def memory_limit() -> int:
    """The most memory an animation may need (``MAX_BYTES``, else 60% of this machine's)."""
    if MAX_BYTES is not None:
        return MAX_BYTES
    try:
        return int(0.6 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 6 * 2**30


def _check_memory(src: Path, frames: int, w: int, h: int, scale: int) -> None:
    need = frames * w * h * (4 + scale**2 * _BYTES_PER_OUT_PIXEL)
    limit = memory_limit()
    if need > limit:
        raise AnimationError(f"{src} has {frames} frames of {w}x{h}: about {need / 2**30:.1f} GiB of memory at "
                             f"x{scale} (every frame is held until written), more than {limit / 2**30:.1f} GiB; "
                             "write a video file (e.g. .mkv), which streams")


def read(path: Path, scale: int, notes: list[str]) -> Animation:
    """Every frame of the animation at ``path``, composited; refused before decoding when it would not fit in
    memory at ``scale``. A damaged file keeps the frames before the damage, said in ``notes``."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            info = {k: im.info[k] for k in ("icc_profile", "exif", "comment", "dpi") if im.info.get(k)}
            if info.get("dpi") and max(info["dpi"]) < 2:  # no real DPI (as for a still)
                del info["dpi"]
            extra = picture_metadata.read(im)  # PNG text and colour chunks, XMP
            extra.pop("comment", None)  # (GIF's and WebP's comment: info["comment"])
            if extra:
                info["extra"] = extra
            loop = int(im.info.get("loop", 0 if im.format != "GIF" else -1))
            if im.format == "GIF":  # GIF counts repeats after the first play, and without its loop block plays once
                plays = 0 if loop == 0 else loop + 1 if loop > 0 else 1
            else:  # APNG's num_plays and WebP's loop count are plays
                plays = loop
            default_image = im.format == "PNG" and bool(im.info.get("default_image"))
            if im.format == "WEBP" and webp_lossless(path):
                info["lossless"] = True  # written lossless again (not at quality 95)
            if im.mode.startswith("I") or ";16" in str(im.tile[0][3] if getattr(im, "tile", None) else ""):
                notes.append(f"note: {path.name} has more than 8 bits per sample; its frames are written 8-bit")
            try:
                total, damaged = int(getattr(im, "n_frames", 1)), False
            except PIL_DAMAGE:  # cut off (a partial download): what can be reached
                total, damaged = n_frames(im), True
            _check_memory(path, total, im.width, im.height, scale)
            frames, durations = [], []
            gif = _GifCanvas(path) if im.format == "GIF" else None
            for i in range(total):
                try:
                    if gif is not None and i:
                        gif.before_seek(im)
                    im.seek(i)
                    im.load()  # WebP sets a frame's duration when it is loaded
                    frame = gif.frame(im) if gif is not None else im.convert("RGBA")
                except PIL_DAMAGE as e:
                    if len(frames) <= default_image:
                        raise
                    notes.append(f"warning: {path.name} is damaged at frame {i + 1} of {total} ({e}); the "
                                 f"{i} frames before it are kept")
                    break
                frames.append(frame)
                durations.append(float(im.info.get("duration") or 0))
            if damaged and len(frames) == total:
                notes.append(f"warning: {path.name} is damaged after frame {total}; the frames before it are kept")
            if gif is not None:
                gif.close()
    except PIL_DAMAGE as e:
        raise AnimationError(f"not a readable animation: {path} ({e})") from None
    default = None
    if default_image:  # the APNG's picture for viewers that don't animate: not a frame of the animation
        default, frames, durations = frames[0], frames[1:], durations[1:]
    if all(f.getchannel("A").getextrema()[0] == 255 for f in [*frames, *([default] if default else [])]):
        frames = [f.convert("RGB") for f in frames]
        default = default.convert("RGB") if default else None
    return Animation(frames, durations, plays, info, default)


class _GifCanvas:
    """A GIF's frames composited as browsers show them. Pillow restores a disposal-2 ("restore to background")
    area to the background colour (opaque; black without a background), where browsers clear it to transparent:
    here every frame is drawn onto our own RGBA canvas. Which pixels a frame draws is learnt from a twin decoder
    of the same file whose canvas is the inverse of Pillow's before each frame: a pixel the frame draws is the
    same in both, one it leaves is not."""

    def __init__(self, path: Path) -> None:
        from PIL import Image

        self.twin = Image.open(path)
        self.canvas: Any = None  # our composite of the last frame (HxWx4 uint8)
        self.before: Any = None  # the canvas before the last frame was drawn (disposal 3 restores it)
        self.disposal, self.extent = 0, None
        self.off = False  # Pillow's own compositing (a grey GIF without a palette)

    def before_seek(self, im: Any) -> None:
        """Before ``im`` moves to its next frame: the twin on the frame ``im`` is on, its canvas inverted. This
        sets Pillow's private frame state (``im``, ``_mode``, ``dispose``): a Pillow that keeps it otherwise
        falls back to Pillow's own compositing rather than failing the read."""
        if self.off:
            return
        try:
            self._invert_twin(im)
        except (AttributeError, TypeError, ValueError):
            self.off = True

    def _invert_twin(self, im: Any) -> None:
        if self.twin.tell() != im.tell():
            self.twin.seek(im.tell())
        self.twin.load()
        # the mode Pillow composites the next frame in: a palette first frame becomes RGB(A) (inverting palette
        # indices could land on an equal colour); a grey GIF without a palette is left to Pillow's compositing
        mode = ("RGBA" if "transparency" in im.info else "RGB") if im.mode == "P" else im.mode
        if mode not in ("RGB", "RGBA"):
            self.off = True
            return
        self.twin.im = im.convert(mode).point(lambda v: 255 - v).im
        self.twin._mode = mode
        self.twin.info.pop("transparency", None)  # (Pillow drops it so when it leaves the palette mode)
        dispose = getattr(im, "dispose", None)
        self.twin.dispose = (im._new(dispose).convert(mode).point(lambda v: 255 - v).im if dispose is not None
                             else None)

    def frame(self, im: Any) -> Any:
        from PIL import Image

        a = np.asarray(im.convert("RGBA"))
        if self.off:
            return im.convert("RGBA")
        if im.tell() == 0 or self.canvas is None or self.canvas.shape != a.shape:
            self.canvas, self.before = a.copy(), np.zeros_like(a)
        else:
            self.twin.seek(im.tell())
            self.twin.load()
            b = np.asarray(self.twin.convert("RGBA"))
            drawn = (a == b).all(-1) if b.shape == a.shape else np.ones(a.shape[:2], bool)
            base = self.canvas.copy()
            if self.extent is not None and self.disposal in (2, 3):
                x0, y0, x1, y1 = self.extent
                base[y0:y1, x0:x1] = 0 if self.disposal == 2 else self.before[y0:y1, x0:x1]
            self.before = base.copy()
            base[drawn] = a[drawn]
            self.canvas = base
        self.disposal, self.extent = getattr(im, "disposal_method", 0), getattr(im, "dispose_extent", None)
        return Image.fromarray(self.canvas.copy(), "RGBA")

    def close(self) -> None:
        self.twin.close()


def read_video(path: Path, scale: int, notes: list[str], max_frames: int = 0, trim: Any = None,
               grab: bool = False, deep: bool = False) -> Animation:
    """Every frame of a video file's main video stream as RGB(A) (its own colour matrix, range and chroma siting:
    the video path's conversion, ``_frame_rgb``), turned as its display matrix says, each lasting until the next
    one's timestamp; with ``trim`` (--start/--end) only the frames of that part (the file is sought to the keyframe
    before it). What an animation can't hold (sound, subtitles) is named in ``notes``. ``grab``: only the frame
    on screen at ``trim.start`` (the last one starting at or before it; the first, before the video begins), for
    a still; ``deep``: a frame of more than 8 bits (without alpha) is also kept at 16 bits, as ``info["deep"]``
    (float HxWx3 in [0, 1], turned as the picture is)."""
    import av

    from .video.reader import main_video, pixel_shape, shown_length, video_end, video_rate
    from .video.trim import TrimError, container_origin, decode_part, frames_from

    what = "a picture" if grab else "an animation"
    try:
        c = av.open(str(path))
    except av.error.FFmpegError as e:
        raise AnimationError(f"can't read {path}: {getattr(e, 'strerror', None) or e}") from None
    with c:
        if not c.streams.video:
            raise AnimationError(f"{path} has no video stream")
        s = main_video(c)
        others = sorted({o.type for o in c.streams if o is not s and o.type in ("audio", "subtitle")})
        if others and not grab:
            notes.append(f"note: {path.name}'s {' and '.join(others)} can't be held in an animation; left out (write "
                         f"a video file to keep {'them' if len(others) > 1 else 'it'})")
        sar = pixel_shape(s)
        frames, times, rotation = [], [], 0
        last_ms: float | None = None  # the last frame's own length (a VFR clip's final hold), where it says it
        info_deep = None
        win = None
        end = video_end(c)
        if trim is not None:
            try:
                trim.check(shown_length(c), path.name)
            except TrimError as e:
                raise AnimationError(str(e)) from None
            win = trim.window(container_origin(c))
        source = decode_part(c, s, win)
        if grab:  # the frame on screen at the start: among the frames from the keyframe at or before it
            assert win is not None
            rate = video_rate(s)
            source = _shown_at(win.lo if not win.open_start else container_origin(c), frames_from(c, s, win),
                               container_origin(c), Fraction(rate) if rate else None)
        try:
            for f in source:
                img, bits, hi = _frame_image(f, deep)
                if not frames:
                    rotation = int(f.rotation or 0) % 360
                if hi is not None:
                    info_deep = np.rot90(hi, k=rotation // 90).copy()
                elif grab and bits > 8:
                    notes.append(f"note: {path.name} is {bits}-bit video; the frame is written 8-bit"
                                 + (" (.png or .tif keep 16 bits)" if img.mode == "RGB" else ""))
                if rotation:  # counter-clockwise, as players turn it (an animation has no display matrix)
                    img = img.rotate(rotation, expand=True)
                frames.append(img)
                times.append(float(f.time) if f.time is not None else None)
                last_ms = float(f.duration * f.time_base) * 1000 if f.duration and f.time_base else None
                _check_memory(path, len(frames), f.width, f.height, scale)
                if len(frames) == max_frames:
                    break
        except av.error.FFmpegError as e:
            if not frames:
                raise AnimationError(f"can't decode {path}: {getattr(e, 'strerror', None) or e}") from None
            notes.append(f"warning: {path.name} is damaged after frame {len(frames)}; the frames before it are kept")
        if not frames and win is not None:
            raise AnimationError(f"no video frame of {path} lies in the part {trim.describe()} (--start/--end)")
        if not frames:
            raise AnimationError(f"no video frames could be decoded from {path}")
        rate = video_rate(s) or s.codec_context.framerate
        part_end = (win.hi if win is not None and win.hi is not None and not grab and len(frames) != max_frames
                    and (end is None or win.hi < end) else None)
    if rotation:
        from .video.writer import turn_words

        notes.append(f"note: {path.name} is shown rotated by {rotation} degrees (display matrix)"
                     f"{turn_words(rotation)}; the frames are "
                     f"turned so, as {what} has no display matrix")
    if rotation in (90, 270):
        sar = 1 / sar
    step = 1000 / float(rate) if rate else 40.0
    ms = [t * 1000 if t is not None else None for t in times]
    durations = [(b - a) if a is not None and b is not None and b > a else step for a, b in itertools.pairwise(ms)]
    durations.append(last_ms or step)
    if part_end is not None and ms[-1] is not None and float(part_end) * 1000 > ms[-1]:
        durations[-1] = float(part_end) * 1000 - ms[-1]  # on screen until the part ends (VFR: not one period)
    if any(f.mode == "RGBA" for f in frames):
        frames = [f.convert("RGBA") for f in frames]
    return Animation(frames, durations, 0, {} if info_deep is None else {"deep": info_deep}, sar=sar)


def _shown_at(t: Fraction, frames: Any, origin: Fraction, rate: Fraction | None) -> Any:
    """The frame of ``frames`` (decoded in order, from a keyframe at or before ``t``) on screen at ``t``: the last
    starting at or before it, else the first (a time before the video begins); one frame, or none. Frames are
    timed as the video path times them: FFmpeg's best-effort timestamp (decode-order times: by dts), one frame
    period after the one before where they have none (a raw stream, from ``origin``)."""
    from .video.reader import PtsGuess

    guess, step = PtsGuess(), (1 / rate if rate else Fraction(1, 25))
    chosen, clock = None, None
    for f in frames:
        pts = guess(f.pts, getattr(f, "dts", None))
        at = pts * Fraction(f.time_base) if pts is not None and f.time_base else (
            origin if clock is None else clock + step)
        clock = at
        if at > t:
            chosen = chosen if chosen is not None else f
            break
        chosen = f
    if chosen is not None:
        yield chosen


def _frame_rgb(f: Any, deep: bool = False) -> tuple[Any, Any, Any]:
    """A decoded video frame as RGB with its own colour matrix, range and chroma siting, as the video path reads
    them: (uint8 HxWx3 array, HxWx4 where it has alpha; float32 HxWx3 in [0, 1] where ``deep`` and the frame has
    more than 8 bits and no alpha, else None; the frame's colour decision). YUV and grey frames are converted as
    the video path converts them (``_yuv_rgb``: swscale leaves limited-range grey unexpanded, 16-20 codes off the
    video output); RGB and palette frames through swscale (no matrix, no range)."""
    from .video.color import decide_color

    info = decide_color(f.colorspace, f.color_range, f.color_primaries, f.color_trc, f.height, f.format.name,
                        f.chroma_location)
    fmt = "rgba" if info.alpha else "rgb24"
    deep = deep and info.bits > 8 and not info.alpha
    if not info.from_rgb:
        rgb = _yuv_rgb(f, info)
        a = (rgb * 255.0 + 0.5).astype(np.uint8)
        if info.alpha:  # the alpha plane is whole (never subsampled): swscale copies it as it is
            a = np.concatenate([a, sws.to_ndarray(f, "rgba")[..., 3:]], axis=-1)
        return a, (rgb if deep else None), info

    # RGB and palette frames: no matrix or range to apply
    return sws.to_ndarray(f, fmt), (sws.to_ndarray(f, "rgb48le").astype(np.float32) / 65535.0 if deep
                                      else None), info


def _yuv_rgb(f: Any, info: Any) -> Any:
    """A decoded YUV frame as float32 HxWx3 RGB in [0, 1], exactly as the video path reads it
    (``video.reader.frame_rgb``). swscale's own YUV to RGB takes the nearest chroma sample: colour edges came
    out blocky, up to 88 codes from the same frame of a video output."""
    from .video.reader import frame_rgb

    return frame_rgb(f, info)[0].permute(1, 2, 0).numpy().copy()


def _frame_image(f: Any, deep: bool = False) -> tuple[Any, int, Any]:
    """A decoded video frame as a PIL RGB(A) image, the frame's bit depth, and (``deep``, more than 8 bits, no
    alpha) the frame as float32 HxWx3 RGB in [0, 1] (else None)."""
    from PIL import Image

    a, hi, info = _frame_rgb(f, deep)
    return Image.fromarray(a, "RGBA" if info.alpha else "RGB"), info.bits, hi


def _gif_pace(anim: Animation, notes: list[str], name: str) -> None:
    """A video's (or a WebP/APNG's) frames thinned to GIF's pace: a frame starts at least 20 ms (rounded to GIF's
    1/100 s) after the one before, as browsers play shorter delays as 100 ms; 60 fps becomes 40 (20 and 30 ms in
    turn)."""
    starts = [0.0, *itertools.accumulate(anim.durations)]
    total = starts.pop()
    kept: list[int] = []
    for i, t in enumerate(starts):
        if not kept or round(t / 10) * 10 - round(starts[kept[-1]] / 10) * 10 >= _GIF_MIN_MS:
            kept.append(i)
    if len(kept) == len(starts):
        return
    ends = [starts[j] for j in kept[1:]] + [total]
    anim.durations = [e - starts[i] for i, e in zip(kept, ends, strict=True)]
    anim.frames = [anim.frames[i] for i in kept]
    left = len(starts) - len(kept)
    notes.append(f"note: GIF plays at most 50 frames/s (browsers show shorter delays as 100 ms): {left} of "
                 f"{len(starts)} frames of {name} left out, the rest keep their times (.webp keeps them all)")


def _check_writable(dst: Path) -> None:
    """Refuse now, not after every frame is upscaled, an OUT that can't be written."""
    if dst.is_dir():
        raise AnimationError(f"can't write {dst}: it is a folder")
    probe = dst.with_name(f".{dst.name}.{os.getpid()}.probe")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)  # a folder run's sub-folder, as a still picture's gets
        probe.touch()
    except OSError as e:
        raise AnimationError(f"can't write {dst}: {e.strerror or e}") from None
    probe.unlink(missing_ok=True)


def upscale_animation(up: Any, src: Path, dst: Path, upscale_image: Callable[..., Any],
                      say: Callable[[str], None], quiet: bool = False, video: bool = False,
                      max_frames: int = 0, size: SizeSpec | None = None, trim: Any = None,
                      quality: int | None = None) -> tuple[list[str], int]:
    """Upscale every frame of ``src`` (an animated picture, or a video file when ``video``: its first
    ``max_frames``, 0 = all, of the part ``trim`` when given) with ``up`` through ``upscale_image`` (the stills' own:
    ``image_upscale.upscale_image``; ``size``: resampled there to fit that box, pixels made square) and write
    the animation to ``dst`` (its format by extension; ``quality``: a WebP's, --quality); (the notes on what
    changed, frames written)."""
    from PIL import Image

    ext = dst.suffix.lower()
    _check_writable(dst)
    notes: list[str] = []
    anim = read_video(src, up.scale, notes, max_frames, trim) if video else read(src, up.scale, notes)
    if ext == ".gif" and (video or src.suffix.lower() != ".gif"):  # (a GIF's own delays are its author's)
        _gif_pace(anim, notes, src.name)
    orientation = _orientation(anim.info)
    if ext == ".gif" and orientation != 1:  # shown turned, and GIF can't say so: turned here, as a still is
        anim.frames = [_turn(f, orientation) for f in anim.frames]
        notes.append(f"note: {src.name} is shown turned (EXIF orientation), which {ext} can't say: its frames are "
                     "turned instead")
        orientation = 1
    to = None
    if size is not None:  # the frames are turned already; their pixel shape is resampled square with the rest
        sideways = orientation in (5, 6, 7, 8)  # stored on its side (the EXIF kept says so): the box turned to match
        to = size.fit(anim.frames[0].width, anim.frames[0].height, anim.sar, rotation=90 if sideways else 0)
        if anim.sar != 1:
            notes.append(f"note: {src.name} has non-square pixels (SAR {anim.sar.numerator}:{anim.sar.denominator}); "
                         f"--size writes square ones ({to[0]}x{to[1]} shows the same shape)")
        anim.sar = Fraction(1)
    first = anim.frames[0]
    check_format(*(to or (max(1, round(first.width * up.scale * anim.sar)), first.height * up.scale)), ext)
    out, last = [], time.monotonic()
    for i, frame in enumerate(anim.frames, 1):
        out.append(upscale_image(up, frame, src.name, notes, to))
        if not quiet and time.monotonic() - last > 5:
            say(f"{src.name}: frame {i}/{len(anim.frames)}")
            last = time.monotonic()
    if anim.default is not None:
        anim.default = upscale_image(up, anim.default, src.name, notes, to) if ext == ".png" else None
    if anim.sar != 1:  # GIF and WebP have no pixel shape: the frames are resampled to square pixels
        size = (max(1, round(out[0].width * anim.sar)), out[0].height)
        notes.append(f"note: {src.name} has non-square pixels (SAR {anim.sar.numerator}:{anim.sar.denominator}); "
                     f"the frames are resampled to {size[0]}x{size[1]} square pixels (Lanczos), as an animation "
                     "can't say its pixel shape")
        out = [f.resize(size, Image.Resampling.LANCZOS) for f in out]
    notes += _lost_metadata(anim, ext, src.name)
    if not quiet:
        plays = ("a still" if len(out) == 1 else "loops forever" if anim.plays == 0 else "plays once"
                 if anim.plays == 1 else f"plays {anim.plays} times")
        frames = f"{len(out)} frame{'s' if len(out) != 1 else ''}"
        say(f"{src.name}: {frames}, {sum(anim.durations) / 1000:.2f} s, {plays} -> {dst.name} "
            f"({out[0].width}x{out[0].height} {_FORMATS[ext]})")
    write(gif_frames(out) if ext == ".gif" else out, anim, dst, quality)
    return notes, len(out)


def _orientation(info: dict) -> int:
    """The EXIF orientation of an animation's ``info`` (1 = as stored)."""
    if not info.get("exif"):
        return 1
    from PIL import Image

    try:
        exif = Image.Exif()
        exif.load(info["exif"])
        return int(exif.get(0x0112, 1))
    except (TypeError, ValueError, OSError, SyntaxError):
        return 1


def _turn(im: Any, orientation: int) -> Any:
    """A frame turned as EXIF ``orientation`` says it is shown (Pillow's ``ImageOps.exif_transpose``)."""
    from PIL import Image

    method = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}.get(orientation)
    return im.transpose(method) if method is not None else im


def _lost_metadata(anim: Animation, ext: str, name: str) -> list[str]:
    """Notes for what ``ext`` can't hold of the animation's metadata (GIF: ICC, EXIF, DPI, PNG text and colour
    chunks, XMP; WebP: a comment, DPI, PNG text and colour chunks)."""
    keys = {".gif": (("icc_profile", "ICC profile"), ("exif", "EXIF"), ("dpi", "DPI")),
            ".webp": (("comment", "comment"), ("dpi", "DPI"))}
    lost = [what for key, what in keys.get(ext, ()) if anim.info.get(key)]
    lost += [w for w in picture_metadata.lost(anim.info.get("extra") or {}, ext) if w not in lost]
    return [f"note: {name}'s {' and '.join(lost)} can't be held in {ext}; left out"] if lost else []


def gif_frames(frames: list[Any]) -> list[Any]:
    """RGB(A) frames as palette frames for GIF: one palette for the whole animation (median cut over pixels
    sampled from every frame, opaque ones only, refined by k-means), each pixel mapped to its nearest entry
    without dithering, and see-through pixels (alpha < 50%) on the transparent entry.

    Measured on a 24-frame 320x240 pan of Set14 comic through stream x2, against the full-colour frames (PSNR,
    then the temporal error as in ``psr2video eval --video``): 37.28 dB / 3.26 here; with an earlier palette
    from 16 whole frames, 36.00 / 3.99 with Floyd-Steinberg dithering and 35.31 / 3.63 with a palette per
    frame; 33.35 / 5.54 for Pillow's own GIF writer given the RGBA frames. The same colour maps to the same
    entry in every frame, so still areas stay still. Every frame gives the palette the same share of pixels,
    so a short scene keeps its colours."""
    import numpy as np
    from PIL import Image

    alpha = frames[0].mode == "RGBA"
    rng = np.random.default_rng(0)
    per_frame = max(256, _PALETTE_SAMPLE // len(frames))
    picks = []
    for f in frames:
        a = np.asarray(f).reshape(-1, 4 if alpha else 3)
        if alpha:
            a = a[a[:, 3] >= 128, :3]  # what a transparent pixel hides is not shown: not in the palette
        if len(a):
            picks.append(a[rng.integers(0, len(a), min(per_frame, len(a)))])
    sample = np.concatenate(picks) if picks else np.zeros((1, 3), np.uint8)
    width = 512
    sample = np.concatenate([sample, np.repeat(sample[-1:], -len(sample) % width, 0)])  # a whole number of rows
    strip = Image.fromarray(np.ascontiguousarray(sample.reshape(-1, width, 3)), "RGB")
    palette = strip.quantize(colors=255 if alpha else 256, method=Image.Quantize.MEDIANCUT, kmeans=2)
    colours = (palette.getpalette() or [])[: 3 * 256]
    colours += [0] * (3 * 256 - len(colours))
    out = []
    for f in frames:
        p = f.convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE)
        if alpha:
            idx = np.where(np.asarray(f.getchannel("A")) < 128, _TRANSPARENT, np.asarray(p))
            p = Image.fromarray(idx.astype(np.uint8), "P")
            p.info["transparency"] = _TRANSPARENT
        p.putpalette(colours)
        out.append(p)
    return out


def write(frames: list[Any], anim: Animation, dst: Path, quality: int | None = None) -> None:
    """The frames written to ``dst`` as an animation with ``anim``'s durations, loop and metadata, atomically
    (``quality``: a WebP's, --quality)."""
    ext = dst.suffix.lower()
    # GIF counts in 1/100 s, WebP and APNG (as Pillow writes it) in ms: each frame's start is rounded, not each
    # duration (30 fps into GIF is 30, 40, 30 ms..., not 30 ms each, which would play 10% fast)
    unit = 10 if ext == ".gif" else 1
    ends = [round(t / unit) * unit for t in itertools.accumulate(anim.durations)]
    durations = [b - a for a, b in itertools.pairwise([0, *ends])]
    plays = min(anim.plays, _MAX_PLAYS)
    repeats: dict[int, list[int]] = {}
    if ext == ".gif":
        frames, durations, repeats = _gif_long_frames(frames, durations)
    first, rest = frames[0], frames[1:]
    opts: dict[str, Any] = {"save_all": True, "duration": durations}
    if ext == ".gif":
        if plays != 1:  # the loop block counts repeats; without one a GIF plays once
            opts["loop"] = max(0, plays - 1)
        if anim.alpha:  # each frame replaces the last (whole frames are written), so transparent areas clear
            opts.update(transparency=_TRANSPARENT, disposal=2)
        # Pillow's palette optimisation drops the entries the first frame doesn't use: the transparent entry of an
        # animation whose first frame is opaque would go, and every later hole with it
        opts["optimize"] = False
        if anim.info.get("comment"):
            opts["comment"] = anim.info["comment"]
    else:
        opts.update({k: v for k, v in anim.info.items() if k in ("icc_profile", "exif")})
        if opts.get("exif"):  # its PixelX/YDimension say the size written
            opts["exif"] = picture_metadata.exif_with_size(opts["exif"], first.width, first.height)
        opts["loop"] = plays
        extra = dict(anim.info.get("extra") or {})
        if ext == ".webp":
            opts.update(webp_options(bool(anim.info.get("lossless")), quality))
        else:
            if anim.info.get("dpi"):
                opts["dpi"] = anim.info["dpi"]
            if anim.info.get("comment"):
                comment = anim.info["comment"]
                extra["comment"] = comment.decode("latin-1") if isinstance(comment, bytes) else str(comment)
        # WebP's XMP; APNG's text chunks (a comment as ``Comment``), colour chunks and XMP: as a still's
        opts.update(picture_metadata.save_options(extra, ".webp" if ext == ".webp" else ".png",
                                                  icc=bool(opts.get("icc_profile"))))
        if ext != ".webp":
            if anim.default is not None:  # an APNG's picture for viewers that don't animate, kept in its place
                first, rest = anim.default, frames
                opts["default_image"] = True
    opts["append_images"] = rest
    try:
        with atomic_path(dst) as tmp:
            first.save(tmp, format=_FORMATS[ext], **opts)
            if repeats:
                tmp.write_bytes(_gif_repeat(tmp.read_bytes(), repeats))
    except OSError as e:
        raise AnimationError(f"can't write {dst}: {e.strerror or e}") from None
    except ValueError as e:  # Pillow's refusals (an APNG frame past 65535 s: "cannot write duration")
        raise AnimationError(f"can't write {dst}: {first_line(e)}") from None


_GIF_MAX_DELAY = 65530  # 1/100 s: a GIF frame's delay is a 16-bit count (65535 = 655.35 s); longer is repeated


def _gif_long_frames(frames: list[Any], durations: list[int]) -> tuple[list[Any], list[int], dict[int, list[int]]]:
    """GIF frames longer than its delay field holds (655.35 s): each is written once with the first part of its
    time, and ``_gif_repeat`` repeats it for the rest (the same picture drawn again: the same look, the whole time
    kept); (the frames, their durations in ms, {frame index: the repeats' delays in 1/100 s}). Identical frames in
    a row are joined first, as Pillow's writer joins them (their time added up could pass the limit too)."""
    cap = _GIF_MAX_DELAY * 10
    if sum(durations) <= cap:
        return frames, durations, {}
    kept, times = [frames[0]], [durations[0]]
    for f, d in zip(frames[1:], durations[1:], strict=True):
        same = (f.mode == kept[-1].mode and f.info.get("transparency") == kept[-1].info.get("transparency")
                and np.array_equal(np.asarray(f), np.asarray(kept[-1])))
        if same:
            times[-1] += d
        else:
            kept.append(f)
            times.append(d)
    repeats: dict[int, list[int]] = {}
    for i, d in enumerate(times):
        if d > cap:
            pieces = [cap] * (d // cap) + ([d % cap] if d % cap else [])
            times[i] = pieces[0]
            repeats[i] = [round(p / 10) for p in pieces[1:]]
    return kept, times, repeats


def _gif_repeat(data: bytes, repeats: dict[int, list[int]]) -> bytes:
    """The GIF ``data`` with frame ``i`` (counted from 0) drawn again after itself once per delay (1/100 s) of
    ``repeats[i]``: its graphic control block (with that delay) and its image block copied as they are, so each
    repeat shows the same picture whatever the frame's disposal."""
    flags = data[10]
    pos = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    out, control, frame = [data[:pos]], b"", 0

    def sub_blocks(p: int) -> int:
        while data[p]:
            p += data[p] + 1
        return p + 1

    while pos < len(data) and data[pos] != 0x3B:
        if data[pos] == 0x21:  # an extension: its label, then sub-blocks
            end = sub_blocks(pos + 2)
            if data[pos + 1] == 0xF9:
                control = data[pos:end]
            out.append(data[pos:end])
        elif data[pos] == 0x2C:  # an image: descriptor, local colour table, LZW code size, sub-blocks
            f = data[pos + 9]
            end = sub_blocks(pos + 10 + (3 * 2 ** ((f & 7) + 1) if f & 0x80 else 0) + 1)
            image = data[pos:end]
            out.append(image)
            for delay in repeats.get(frame, ()):
                if not control:
                    raise ValueError("a long GIF frame without its graphic control block")
                out.append(control[:4] + delay.to_bytes(2, "little") + control[6:] + image)
            control, frame = b"", frame + 1
        else:
            raise ValueError(f"unexpected GIF block {data[pos]:#04x} at byte {pos}")
        pos = end
    return b"".join(out) + data[pos:]
