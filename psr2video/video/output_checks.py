"""Output settings checked before a run starts (nothing loaded yet): the container OUT's name or --format picks,
and whether the encoder opens with the --crf/--preset given. A mistake is one line naming the user's own words,
not FFmpeg's text about a partial file after the model has loaded."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from ..errors import first_line
from .writer import EXT_FORMAT, Writer, quiet_encoder_logs


def resolve_encoder(codec: str) -> tuple[str, str | None]:
    """FFmpeg's video encoder for ``--codec`` (``hevc`` -> libx265, ``av1`` -> libsvtav1, as ffmpeg picks it), so
    that every table keyed by encoder (CRF ranges, HDR10, logs) sees the encoder that runs; and why it can't
    encode video (unknown, or an audio/subtitle encoder), or None."""
    try:
        found = av.codec.Codec(codec, "w")
    except Exception:  # noqa: BLE001 - PyAV raises several types for an unknown name
        return codec, f"encoder {codec} is not in this FFmpeg build"
    if found.type != "video":
        article = "an" if found.type[:1] in "aeiou" else "a"  # an audio, a subtitle, a data encoder
        return codec, (f"--codec {codec} is {article} {found.type} encoder; give a video one (e.g. libx264, libx265, "
                       "libsvtav1)")
    return found.name, None


@functools.cache
def encoder_takes(codec: str) -> frozenset[str]:
    """The encoder's own options (FFmpeg's private AVOptions): ``crf``, ``cq``, ``preset``... An encoder without
    them would ignore --crf/--preset without a word (mpeg4, ProRes), so those are refused instead."""
    try:
        ctx = av.codec.CodecContext.create(codec, "w")
    except Exception:  # noqa: BLE001
        return frozenset()
    return frozenset(o.name for o in ctx.supported_options.private)


def probe_pix_fmt(codec: str) -> str:
    """A pixel format the encoder opens with for a probe: yuv420p, or its own first (ProRes: 4:2:2 10-bit)."""
    try:
        formats = [f.name for f in av.codec.Codec(codec, "w").video_formats or ()]
    except Exception:  # noqa: BLE001
        return "yuv420p"
    return "yuv420p" if not formats or "yuv420p" in formats else formats[0]


def output_format_problem(path: str, fmt: str | None) -> str | None:
    """Why FFmpeg could not pick a container for OUT (an unknown ``--format``, an extension no muxer claims),
    or None. Asked before anything loads, so the user's mistake is named with the user's file name."""
    muxers = {}
    for name in av.formats_available:
        try:
            muxers[name] = av.format.ContainerFormat(name, "w")
        except ValueError:  # a demuxer only
            continue
    if fmt:
        if fmt not in muxers:
            return f"unknown --format {fmt!r}; FFmpeg writes e.g. matroska, mp4, mov, webm, nut, mpegts"
        return None
    if path == "-":
        return None
    ext = Path(path).suffix.lower()
    if ext in EXT_FORMAT or (ext and any(ext[1:] in m.extensions for m in muxers.values())):
        return None
    what = f"extension {ext!r}" if ext else "a name without an extension"
    return f"can't tell which container to write for {path} ({what}); use .mkv, .mp4, .mov or .webm, or --format"


# the default encoder, and the ones tried in turn for a container that can't hold H.264 (WebM): SVT-AV1 before
# libvpx-vp9, ffmpeg's own WebM default, which at its default settings encodes an upscaled frame many times slower
DEFAULT_CODECS = ("libx264", "libsvtav1", "libvpx-vp9", "libx265", "rawvideo")  # rawvideo: Y4M (a pipe to x264)


def default_codec(path: str, fmt: str | None) -> tuple[str, str | None]:
    """The encoder for a run without ``--codec``: libx264 wherever the container holds H.264, else the first of
    ``DEFAULT_CODECS`` it holds (``out.webm``: SVT-AV1), with a note saying so (None when it is libx264). The
    container is the one FFmpeg guesses from OUT's name (or ``--format``; Matroska for stdout), asked on a probe
    in memory, and "holds" is what FFmpeg's muxer answers when the stream is added, as for the real file."""
    from .writer import codec_available

    probe = _probe(path, fmt)
    if probe is None:  # no muxer for this name: output_format_problem says so
        return DEFAULT_CODECS[0], None
    with probe:
        for codec in DEFAULT_CODECS:
            if not codec_available(codec):
                continue
            quiet_encoder_logs(codec)
            held = _takes_video(probe, codec)
            if held is False:
                continue
            if held is None:
                return DEFAULT_CODECS[0], None  # some other trouble: the run names it
            if codec == DEFAULT_CODECS[0]:
                return codec, None
            return codec, f"note: {probe.format.name} can't hold H.264 video: encoding with {codec} (--codec to choose)"
    return DEFAULT_CODECS[0], None


def container_problem(path: str, fmt: str | None, codec: str) -> str | None:
    """Why OUT's container can't hold ``codec``'s video, or None: said before anything loads (a scale-out run
    muxes its segments into OUT at the end, where MPEG-TS took FFV1 as a data stream no player shows)."""
    from .writer import codec_available, or_mkv

    probe = _probe(path, fmt)
    if probe is None:
        return None
    with probe:
        if _takes_video(probe, codec) is not False:  # held, or some other trouble the run names
            return None
        name = av.codec.Codec(codec, "w").canonical_name
        others = []
        for c in ("libx264", "libx265", "libsvtav1", "libvpx-vp9", "ffv1"):
            quiet_encoder_logs(c)  # SVT-AV1's banner would come before the one line
            if c != codec and codec_available(c) and _takes_video(probe, c):
                others.append(c)
        return (f"{probe.format.name} can't hold {name} video (--codec {codec}); pick a --codec it can hold"
                + (f" ({', '.join(others)})" if others else "") + or_mkv(probe.format.name, codec))


def _takes_video(probe: av.container.OutputContainer, codec: str) -> bool | None:
    """Whether ``probe``'s kind of container holds ``codec``'s video: at add_stream, and for muxers that refuse
    only at their header (MOV: AV1 "only supported in MP4"), on a header written in memory; None for some other
    trouble."""
    from .writer import DNXHR_MIN, HEADER_REFUSERS, dnxhr_profile, header_takes

    fmt = probe.format.name
    added = _adds_video(probe, codec)
    if not added:
        return added

    def make(p: av.container.OutputContainer) -> None:
        s = p.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, probe_pix_fmt(codec)
        if codec == "libx265":
            s.options = {"x265-params": "log-level=error"}  # its banner, 20 lines on stderr, at every start
        elif codec == "dnxhd":  # DNxHR opens only at its own sizes (from 256x120) with a profile
            s.width, s.height = DNXHR_MIN
            s.options = {"profile": dnxhr_profile(s.pix_fmt)}

    return fmt not in HEADER_REFUSERS or header_takes(fmt, make, always=True)


def _probe(path: str, fmt: str | None) -> av.container.OutputContainer | None:
    """An output container in memory of the kind OUT's name (or --format; Matroska for stdout) makes, or None."""
    import io

    class Named(io.BytesIO):  # PyAV hands a file object's name to FFmpeg, which guesses the muxer from it
        name = "out.mkv" if path == "-" else Path(path).name

    try:
        return av.open(Named(), "w", format=fmt or ("matroska" if path == "-" else None))
    except Exception:  # noqa: BLE001
        return None


def _adds_video(probe: av.container.OutputContainer, codec: str) -> bool | None:
    """Whether ``probe``'s muxer takes ``codec`` as video when the stream is added (FFmpeg's own answer, and
    the writer's ``VIDEO_ONLY`` for muxers that take anything); None for some other trouble."""
    from .writer import VIDEO_ONLY, _refused

    name = av.codec.Codec(codec, "w").canonical_name
    if name not in VIDEO_ONLY.get(probe.format.name, (name,)):
        return False
    try:
        probe.add_stream(codec)
        return True
    except Exception as e:  # noqa: BLE001
        return False if _refused(e) else None


CRF_RANGE = {"libx264": "0-51", "libx265": "0-51", "libsvtav1": "1-63", "libvpx-vp9": "0-63", "h264_nvenc": "0-51",
             "hevc_nvenc": "0-51", "av1_nvenc": "0-63"}
PRESETS = {"libx264": "ultrafast ... veryslow, placebo", "libx265": "ultrafast ... veryslow, placebo",
           "libsvtav1": "-2 ... 13", "h264_nvenc": "p1 ... p7", "hevc_nvenc": "p1 ... p7", "av1_nvenc": "p1 ... p7"}


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 to /dev/null for a moment: x264/x265 print their own errors straight to it."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (an embedding host): nothing to hide
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def encoder_problem(codec: str, crf: float | None, preset: str | None) -> str | None:
    """Why the encoder won't start with these settings, or None: it is opened once on a small picture before
    anything loads, so a mistyped --preset, a --crf out of range or an NVENC encoder without an NVIDIA GPU is one
    line at once, not FFmpeg's avcodec_open2 text after the model has loaded."""
    codec, problem = resolve_encoder(codec)
    if problem is not None:
        return problem
    quiet_encoder_logs(codec)
    if codec == "libvpx-vp9" and preset:
        return "libvpx-vp9 takes no --preset (it would be ignored); leave it out"
    if codec == "ffv1" and (crf is not None or preset):
        return "ffv1 is lossless: it takes no --crf or --preset"
    if codec == "mjpeg":  # (it also opened only at full range: "refused its settings")
        return ("mjpeg stores JPEG's own colours (BT.601, full range), which every decoder assumes and this video's "
                "are not converted to; for an intermediate use ffv1 (lossless) or libx264 --crf 0")
    takes_crf = bool({"crf", "cq"} & encoder_takes(codec))
    if (crf is not None and not takes_crf) or (preset and "preset" not in encoder_takes(codec)):
        what = "--crf" if crf is not None and not takes_crf else "--preset"
        return f"{codec} takes no {what} (it would be ignored); leave it out or pick libx264, libx265 or libsvtav1"
    takes = ", ".join(f for f in (f"--crf {CRF_RANGE[codec]}" if codec in CRF_RANGE else "",
                                  f"--preset {PRESETS[codec]}" if codec in PRESETS else "") if f)
    if crf is not None and codec in CRF_RANGE:  # x264 clamps --crf 100 to 51 without a word: refuse it here
        lo, hi = (float(v) for v in CRF_RANGE[codec].split("-"))
        if not lo <= crf <= hi:
            return f"{codec} refused --crf {crf:g}; it takes {takes}"
    ctx = av.codec.CodecContext.create(codec, "w")
    ctx.width = ctx.height = 256
    ctx.pix_fmt = probe_pix_fmt(codec)
    ctx.time_base, ctx.framerate = Fraction(1, 25), Fraction(25)
    ctx.options = Writer._codec_options(codec, crf, preset, ctx.pix_fmt)
    try:
        with _quiet_stderr():  # the encoder's own complaint ("x264 [error]: invalid preset") is said below
            ctx.open()
    except Exception as e:  # noqa: BLE001 - FFmpeg's errno-typed errors
        if codec.endswith("_nvenc"):
            return f"{codec} can't start: it needs an NVIDIA GPU with NVENC and its driver (use libx264, libx265 " \
                   "or libsvtav1 here)"
        asked = " and ".join(f for f in (f"--crf {crf:g}" if crf is not None else "",
                                         f"--preset {preset}" if preset else "") if f)
        why = "" if asked else f" ({getattr(e, 'strerror', None) or first_line(e)})"
        return f"{codec} refused {asked or 'its settings'}{why}" + (f"; it takes {takes}" if takes else "")
    return None
