"""Animated pictures (GIF, APNG, animated WebP): every frame through the Upscaler, written as an animation again.

``psr2video anim.gif anim_x2.gif`` keeps what makes it an animation: each frame's own duration, the loop count
(or none: a GIF without one plays once) and transparency, across the three formats (GIF in, WebP out works too).
Frames are read fully composited (Pillow applies each frame's disposal and blending), so every frame the model
sees is the picture a viewer shows, and the writer stores only what changed from one frame to the next.

GIF holds 256 colours, and the upscaled frames hold many more (the smooth edges are the point). One palette is
built for the whole animation from a sample of its frames, so a colour doesn't change from frame to frame (see
``gif_frames`` for the measurements). APNG is lossless, and WebP is written at quality 95, as a still WebP is.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PsrError
from .fileio import atomic_path

ANIMATION_EXTS = frozenset({".gif", ".png", ".webp"})  # the picture formats that hold an animation
# what a video file may be written to as an animation (an APNG from a video would surprise: most viewers show a
# .png's first frame only)
FROM_VIDEO_EXTS = frozenset({".gif", ".webp"})
_FORMATS = {".gif": "GIF", ".png": "PNG", ".webp": "WEBP"}
# the upscaled frames are all held at once (the GIF and APNG writers compare each frame with the one before):
# an animation larger than this at the output size is refused, with the way out (a video file streams)
MAX_BYTES = 6 * 2**30
_TRANSPARENT = 255  # the GIF palette entry kept for transparent pixels (the other 255 hold colours)
_PALETTE_SAMPLE = 2**19  # pixels of the frames sampled for the GIF palette


class AnimationError(PsrError):
    """An animation that can't be read or written (named with the user's path)."""


ANIMATED_FORMATS = frozenset({"GIF", "PNG", "WEBP"})  # Pillow's names; a multi-page TIFF or a camera's MPO
# (JPEG with a second, preview picture) is not an animation


def frame_count(path: Path) -> int:
    """How many frames the animation at ``path`` holds (1 for a still, an unreadable file, or pages that are not
    an animation)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            animated = getattr(im, "is_animated", False) and im.format in ANIMATED_FORMATS
            return int(getattr(im, "n_frames", 1)) if animated else 1
    except (UnidentifiedImageError, OSError, ValueError):
        return 1


@dataclass
class Animation:
    """The frames as a viewer shows them (RGB, or RGBA where any frame is see-through), their durations in ms,
    how many times it plays (0 = forever) and the metadata worth carrying."""

    frames: list[Any]
    durations: list[float]
    plays: int
    info: dict

    @property
    def alpha(self) -> bool:
        return self.frames[0].mode == "RGBA"


def read(path: Path) -> Animation:
    """Every frame of the animation at ``path``, composited."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            info = {k: im.info[k] for k in ("icc_profile", "exif", "comment") if im.info.get(k)}
            loop = int(im.info.get("loop", 0 if im.format != "GIF" else -1))
            if im.format == "GIF":  # GIF counts repeats after the first play, and without its loop block plays once
                plays = 0 if loop == 0 else loop + 1 if loop > 0 else 1
            else:  # APNG's num_plays and WebP's loop count are plays
                plays = loop
            frames, durations = [], []
            for i in range(im.n_frames):
                im.seek(i)
                im.load()  # WebP sets a frame's duration when it is loaded
                frames.append(im.convert("RGBA"))
                durations.append(float(im.info.get("duration") or 0))
    except (UnidentifiedImageError, OSError, ValueError, EOFError) as e:
        raise AnimationError(f"not a readable animation: {path} ({e})") from None
    if all(f.getchannel("A").getextrema()[0] == 255 for f in frames):
        frames = [f.convert("RGB") for f in frames]
    return Animation(frames, durations, plays, info)


def _too_large(src: Path, frames: int, w: int, h: int, scale: int, channels: int) -> None:
    need = frames * w * h * scale**2 * channels
    if need > MAX_BYTES:
        raise AnimationError(f"{src} has {frames} frames of {w}x{h}: {need / 2**30:.1f} GiB at x{scale}, more "
                             f"than an animation is held in ({MAX_BYTES / 2**30:.0f} GiB); write a video file "
                             "(e.g. .mkv), which streams")


def read_video(path: Path, scale: int, notes: list[str]) -> Animation:
    """Every frame of a video file's main video stream as RGB (its own colour matrix and range, as the video
    path reads them), each lasting until the next one's timestamp. What an animation can't hold (sound,
    subtitles) is named in ``notes``."""
    import av

    from .video.color import SWS_SPACE, decide_color
    from .video.reader import main_video

    try:
        c = av.open(str(path))
    except av.error.FFmpegError as e:
        raise AnimationError(f"can't read {path}: {getattr(e, 'strerror', None) or e}") from None
    with c:
        if not c.streams.video:
            raise AnimationError(f"{path} has no video stream")
        s = main_video(c)
        others = sorted({o.type for o in c.streams if o is not s and o.type in ("audio", "subtitle")})
        if others:
            notes.append(f"note: {path.name}'s {' and '.join(others)} can't be held in an animation; left out (write "
                         f"a video file to keep {'them' if len(others) > 1 else 'it'})")
        frames, times = [], []
        try:
            for f in c.decode(s):
                cc = s.codec_context
                info = decide_color(f.colorspace, f.color_range, None, None, f.height, f.format.name)
                if info.from_rgb:
                    img = f.to_image()
                else:
                    img = f.reformat(format="rgb24", src_colorspace=SWS_SPACE.get(info.space, "ITU709"),
                                     src_color_range="JPEG" if info.full_range else "MPEG").to_image()
                frames.append(img.convert("RGBA") if info.alpha else img.convert("RGB"))
                times.append(float(f.time) if f.time is not None else None)
                _too_large(path, len(frames), f.width, f.height, scale, 4 if info.alpha else 3)
        except av.error.FFmpegError as e:
            if not frames:
                raise AnimationError(f"can't decode {path}: {getattr(e, 'strerror', None) or e}") from None
            notes.append(f"warning: {path.name} is damaged after frame {len(frames)}; the frames before it are kept")
        if not frames:
            raise AnimationError(f"no video frames could be decoded from {path}")
        rate = s.average_rate or s.guessed_rate or cc.framerate
    step = 1000 / float(rate) if rate else 40.0
    ms = [t * 1000 if t is not None else None for t in times]
    durations = [(b - a) if a is not None and b is not None and b > a else step for a, b in itertools.pairwise(ms)]
    durations.append(step)
    if any(f.mode == "RGBA" for f in frames) and not all(f.mode == "RGBA" for f in frames):
        frames = [f.convert("RGBA") for f in frames]
    return Animation(frames, durations, 0, {})


def upscale_animation(up: Any, src: Path, dst: Path, upscale_image: Callable[[Any, Any, str, list[str]], Any],
                      say: Callable[[str], None], quiet: bool = False, video: bool = False) -> tuple[list[str], int]:
    """Upscale every frame of ``src`` (an animated picture, or a video file when ``video``) with ``up`` through
    ``upscale_image`` (the stills' own: ``image_upscale.upscale_image``) and write the animation to ``dst`` (its
    format by extension); (the notes on what changed, frames written)."""
    notes: list[str] = []
    anim = read_video(src, up.scale, notes) if video else read(src)
    w, h = anim.frames[0].size
    _too_large(src, len(anim.frames), w, h, up.scale, 4 if anim.alpha else 3)
    out, last = [], time.monotonic()
    for i, frame in enumerate(anim.frames, 1):
        out.append(upscale_image(up, frame, src.name, notes))
        if not quiet and time.monotonic() - last > 5:
            say(f"{src.name}: frame {i}/{len(anim.frames)}")
            last = time.monotonic()
    if not quiet:
        plays = "loops forever" if anim.plays == 0 else "plays once" if anim.plays == 1 else f"plays {anim.plays} times"
        say(f"{src.name}: {len(out)} frames, {sum(anim.durations) / 1000:.2f} s, {plays} -> {dst.name} "
            f"({out[0].width}x{out[0].height} {_FORMATS[dst.suffix.lower()]})")
    write(gif_frames(out) if dst.suffix.lower() == ".gif" else out, anim, dst)
    return notes, len(out)


def gif_frames(frames: list[Any]) -> list[Any]:
    """RGB(A) frames as palette frames for GIF: one palette for the whole animation (median cut over a sample of
    frames, refined by k-means), each pixel mapped to its nearest entry without dithering, and see-through
    pixels (alpha < 50%) on the transparent entry.

    Measured on a 24-frame 320x240 pan of Set14 comic through stream x2, against the full-colour frames (PSNR,
    then the temporal error as in ``psr2video eval --video``): 37.07 dB / 3.29 here; 36.00 / 3.99 with
    Floyd-Steinberg dithering; 35.31 / 3.63 with a palette per frame; 33.35 / 5.54 for Pillow's own GIF
    writer given the RGBA frames. The same colour maps to the same entry in every frame, so still areas
    stay still."""
    import numpy as np
    from PIL import Image

    alpha = frames[0].mode == "RGBA"
    sample = [f.convert("RGB") for f in frames[:: -(-len(frames) // 16)]]  # 16 frames at most
    side = int((_PALETTE_SAMPLE / len(sample)) ** 0.5)  # k-means costs ~3 s per megapixel: 0.5 MP in all
    for s in sample:
        s.thumbnail((side, side))
    strip = Image.new("RGB", (max(s.width for s in sample), sum(s.height for s in sample)))
    y = 0
    for s in sample:
        strip.paste(s, (0, y))
        y += s.height
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


def write(frames: list[Any], anim: Animation, dst: Path) -> None:
    """The frames written to ``dst`` as an animation with ``anim``'s durations, loop and metadata, atomically."""
    ext = dst.suffix.lower()
    # GIF counts in 1/100 s, WebP and APNG (as Pillow writes it) in ms: each frame's start is rounded, not each
    # duration (30 fps into GIF is 30, 40, 30 ms..., not 30 ms each, which would play 10% fast)
    unit = 10 if ext == ".gif" else 1
    ends = [round(t / unit) * unit for t in itertools.accumulate(anim.durations)]
    durations = [b - a for a, b in itertools.pairwise([0, *ends])]
    opts: dict[str, Any] = {"save_all": True, "append_images": frames[1:], "duration": durations}
    if ext == ".gif":
        if anim.plays != 1:  # the loop block counts repeats; without one a GIF plays once
            opts["loop"] = max(0, anim.plays - 1)
        if anim.alpha:  # each frame replaces the last (whole frames are written), so transparent areas clear
            opts.update(transparency=_TRANSPARENT, disposal=2)
        if anim.info.get("comment"):
            opts["comment"] = anim.info["comment"]
    else:
        opts.update({k: v for k, v in anim.info.items() if k in ("icc_profile", "exif")})
        opts["loop"] = anim.plays
        if ext == ".webp":
            opts.update(quality=95, method=4)
    try:
        with atomic_path(dst) as tmp:
            frames[0].save(tmp, format=_FORMATS[ext], **opts)
    except OSError as e:
        raise AnimationError(f"can't write {dst}: {e.strerror or e}") from None
