"""Encode + mux on its own thread: YUV planes to the encoder without copies, every other stream copied.

- video: ``--codec`` (libx264 default, libx265, libsvtav1, ffv1, libvpx-vp9, *_nvenc when present), CRF,
  preset, pixel format, colour tags; each frame keeps the input's pts in the input's time base;
- audio, subtitle, attachment and data streams: copied packet for packet (``add_stream_from_template``)
  when the output format can hold them; otherwise text subtitles are converted, audio re-encoded
  (``AudioTranscode``) and anything else dropped with a warning per stream;
- chapters, container and stream metadata and dispositions are kept.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import io
import math
import os
import queue
import re
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.logging

from ..errors import PsrError, first_line
from ..names import DEFAULT_CRF, DEFAULT_PRESET
from .bitmap_subs import BitmapEdit, dvd_canvas, dvd_extradata_sized
from .color import PLANAR, PRIM_BT709, SPACE_BT709, TRC_BT709
from .reader import (
    PROBE_SECONDS,
    FirstFrame,
    PacketItem,
    exact_ticks,
    main_video,
    one_filter_graph,
    pixel_shape,
    unprobed,
    video_start,
)
from .subtitles import (
    ASS_HEADER,
    MOV_TEXT_TIME_BASE,
    TEXT_SUBS,
    CueTimeline,
    codec_name,
    convert_text_sub,
    pack_sub_text,
    sub_text,
)
from .trim import Window, shift_timecode, trim_chapters

EXT_FORMAT = {".mkv": "matroska", ".mka": "matroska", ".webm": "webm", ".mp4": "mp4", ".m4v": "mp4",
              ".mov": "mov", ".ts": "mpegts", ".m2ts": "mpegts", ".avi": "avi", ".nut": "nut", ".y4m": "yuv4mpegpipe"}


# ISO 639-2 has two codes for 20 languages (B: fre, ger, chi; T: fra, deu, zho). MOV keeps a language as a
# Macintosh code whose table FFmpeg keys by one of the two (fra but ger, chi, dut): Matroska's B codes (mkvmerge
# writes fre, cze) were lost in .mov. The other code of each pair, and the one MOV holds (measured, FFmpeg 7)
_ISO639_PAIRS = (("alb", "sqi"), ("arm", "hye"), ("baq", "eus"), ("bur", "mya"), ("chi", "zho"), ("cze", "ces"),
                 ("dut", "nld"), ("fre", "fra"), ("geo", "kat"), ("ger", "deu"), ("gre", "ell"), ("ice", "isl"),
                 ("mac", "mkd"), ("mao", "mri"), ("may", "msa"), ("per", "fas"), ("rum", "ron"), ("slo", "slk"),
                 ("tib", "bod"), ("wel", "cym"))
ISO639_OTHER = {a: b for pair in _ISO639_PAIRS for a, b in (pair, pair[::-1])}
_MOV_HOLDS = {"alb", "arm", "baq", "bur", "chi", "ces", "dut", "fra", "geo", "ger", "gre", "ice", "mac", "may",
              "per", "ron", "slk", "tib", "wel"}
MOV_LANGUAGE = {code: ISO639_OTHER[code] for code in ISO639_OTHER if ISO639_OTHER[code] in _MOV_HOLDS
                and code not in _MOV_HOLDS}


class OutputError(PsrError):
    """The output can't be written (bad path, unwritable, disk full, codec/container mismatch)."""


# channel counts whose layout every player reads the same way: a stream that stores only its count (PCM in
# Matroska) gets this one, as FFmpeg's command line guesses it; MP4 refuses a layout-less PCM at its trailer
DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}
ATTACHED_PIC = av.stream.Disposition.attached_pic
# muxers that write no chapters / no container-level tags (FFmpeg's mpegts keeps only service names)
NO_CHAPTERS = {"mpegts", "avi", "mpeg", "vob", "yuv4mpegpipe", "flv", "h264", "hevc"}
# muxers that take chapters until their trailer (set at close, they can be cut to a run that ended early)
LATE_CHAPTERS = {"matroska", "webm", "mp4", "mov", "ipod"}
NO_CONTAINER_TAGS = {"mpegts", "mpeg", "vob", "yuv4mpegpipe", "h264", "hevc"}
# a stream's tags not named when a container loses them: said otherwise (language, title), the muxer's own
# (handler, vendor, encoder, creation time), or carried otherwise (MOV/MP4's timecode track, VP9's alpha mode)
NOT_NAMED_TAGS = ("LANGUAGE", "TITLE", "HANDLER_NAME", "VENDOR_ID", "ENCODER", "CREATION_TIME", "TIMECODE",
                  "ALPHA_MODE")
CONTAINER_BOOKKEEPING = {"encoder", "major_brand", "minor_version", "compatible_brands", "creation_time", "duration"}
# a phone's QuickTime metadata keys and the key FFmpeg's MOV/MP4 muxer writes an atom for (its own keys are dropped
# unless written as mdta, which players read less widely), per muxer: read back, MOV keeps all three (udta ©xyz,
# ©mak, ©mod), MP4 (ipod, 3gp...) only the place
APPLE_TAGS = {"com.apple.quicktime.location.iso6709": "location", "com.apple.quicktime.make": "make",
              "com.apple.quicktime.model": "model"}
APPLE_TAGS_HELD = {"mov": ("location", "make", "model"),
                   **{f: ("location",) for f in ("mp4", "ipod", "3gp", "3g2", "ismv", "f4v")}}

# What a (codec, container) pair records of the output's colour tags, where it records less than all of them
# (range, matrix, primaries, transfer); "*": every other container; pairs not listed keep all four. Measured (this
# build: libavformat/libavcodec 63.1 through PyAV 19, 256x144, two frames): every encoder of the build written into
# each container it takes (matroska, webm, mp4, mov, avi, nut, mpegts, mpeg, vob, dvd, svcd, mxf, ipod, 3gp, 3g2,
# ismv, f4v, yuv4mpegpipe), once at full range with BT.709 (8-bit) and once at limited range with BT.2020 matrix and
# primaries and PQ transfer (10-bit where the encoder has it), then read back with PyAV: the decoded frame's tags,
# the container's merged with the bitstream's, as a player gets them. H.264, HEVC and AV1 carry all four in their
# bitstream (VUI / sequence header) in every container; VP9 its matrix and range; ProRes and MPEG-1/2 no range
# (their decoders say limited whatever the container holds); MOV has no range field (DNxHR's own atom has one).
_TAGS3 = frozenset({"matrix", "primaries", "transfer"})
_NONE: frozenset[str] = frozenset()
_ALL = frozenset({"range", "matrix", "primaries", "transfer"})
_IN_AVI_NUT = {"avi": _NONE, "nut": _NONE}
COLOUR_KEPT: dict[str, dict[str, frozenset[str]]] = {
    "vp9": {"avi": frozenset({"range", "matrix"}), "nut": frozenset({"range", "matrix"})},
    "vp8": {"matroska": frozenset({"primaries", "transfer"}), "webm": frozenset({"primaries", "transfer"}),
            **_IN_AVI_NUT},
    "ffv1": {**_IN_AVI_NUT, "ismv": _NONE},
    "prores": {"*": _TAGS3},
    "v210": {"mov": _TAGS3, **_IN_AVI_NUT},
    "mpeg4": {"matroska": _ALL, "mp4": _ALL, "mov": _TAGS3, "*": _NONE},
    "mpeg2video": {"*": _TAGS3},
    "mpeg1video": {"matroska": _TAGS3, "mp4": _TAGS3, "mov": _TAGS3, "*": _NONE},
    "dnxhd": {"mov": frozenset({"range", "primaries", "transfer"})},
    "cfhd": {"mov": _TAGS3, **_IN_AVI_NUT},
    "magicyuv": {"mov": _TAGS3, **_IN_AVI_NUT},
    "rawvideo": {"yuv4mpegpipe": frozenset({"range"}), **_IN_AVI_NUT},
    **{c: _IN_AVI_NUT for c in ("utvideo", "huffyuv", "ffvhuff", "h263p", "snow")},
}
COLOUR_FIELDS = ("range", "matrix", "primaries", "transfer")
# decoders that read every stream with one value of a field, whatever was written (measured as above, with BT.601,
# BT.470BG, SMPTE 240M and BT.2020 matrices): lost only where the output's value is another
DECODER_READS = {"dnxhd": {"matrix": ("colorspace", SPACE_BT709)}, "vp8": {"matrix": ("colorspace", 5)}}
NO_COLOUR_FIELDS = ("avi", "nut", "mpegts", "mpeg", "vob", "dvd")  # containers without colour fields of their own


def colour_kept(codec: str, fmt: str) -> frozenset[str]:
    """Which of the output's colour tags (``COLOUR_FIELDS``) encoder ``codec`` in container ``fmt`` records
    (``COLOUR_KEPT``, measured); all four for a pair not measured."""
    kept = COLOUR_KEPT.get(_canonical(codec), {})
    return kept.get(fmt.split(",")[0], kept.get("*", _ALL))


def _canonical(codec: str) -> str:
    """The format an encoder writes (libvpx -> vp8, prores_ks -> prores); the name itself when unknown."""
    try:
        return av.codec.Codec(codec, "w").canonical_name
    except Exception:  # noqa: BLE001 - an unknown encoder
        return codec


def or_mkv(fmt: str, codec: str) -> str:
    """The end of a "can't hold" line: use Matroska, where it holds ``codec`` and OUT is not one already (a .mkv
    that can't hold libwebp was told to use .mkv, and so was an .mp4, though Matroska can't hold it either)."""
    return " or use .mkv" if fmt != "matroska" and _mkv_holds(codec) else ""


def _mkv_holds(codec: str) -> bool:
    """Whether Matroska holds ``codec`` (asked of its muxer, in memory)."""
    mkv = av.open(io.BytesIO(), "w", format="matroska")
    try:
        return _holds(mkv, codec)
    finally:
        mkv.close()


@contextlib.contextmanager
def ffmpeg_errors():
    """FFmpeg's own error line for a failure inside (PyAV appends "last error log: [mp4] ..." to the
    exception's text while logging is on); captured, never printed. Logging is on only here: the muxer's
    header and trailer, where FFmpeg's reason is all a user gets."""
    prev = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture():
            yield
    finally:
        av.logging.set_level(prev)


MKV_STATISTICS = ("BPS", "NUMBER_OF_FRAMES", "NUMBER_OF_BYTES")  # mkvmerge's, with _STATISTICS_* and DURATION


CODEC_TAG = {"chroma_location": "chroma_sample_location"}  # a frame's colour tag -> the codec context's name


def carried_tags(tags: dict[str, str], stats: bool, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """A stream's tags for its copy (an MP4 track's ``name`` as its title): never the input's DURATION (a piped
    header would promise the input's length); with ``stats`` (a re-encoded stream, or a part of one) not
    mkvmerge's statistics either, which MediaInfo and players show as the stream's bitrate and frame count. Tags
    may carry a language (``BPS-eng``)."""
    def gone(key: str) -> bool:
        base = key.split("-")[0].upper()
        return base in ("DURATION", *drop) or stats and (base in MKV_STATISTICS or base.startswith("_STATISTICS_"))

    out = {k: v for k, v in tags.items() if not gone(k)}
    if "name" in out and not any(k.lower() == "title" for k in out):  # MP4/MOV's track title as FFmpeg reads it
        out["title"] = out.pop("name")  # back, which its muxer writes only from "title" (the title was lost)
    return out


def user_tags(tags: dict[str, str]) -> list[str]:
    """A container's tags that say something of the film (not CONTAINER_BOOKKEEPING, nor the software that wrote
    it: AVI's ``software``, an MP4's ``encoder-eng``), whose loss is worth naming."""
    return [k for k in tags if k.split("-")[0].lower() not in (*CONTAINER_BOOKKEEPING, "software")]


def ffmpeg_reason(e: BaseException) -> str:
    """FFmpeg's reason for ``e``: its logged line when there is one, else the error's own text."""
    text = str(e)
    m = re.search(r"last error log: (?:\[[^\]]*\] )?(.+)", text)
    if m:
        return m.group(1).strip()
    return getattr(e, "strerror", None) or first_line(e)


@dataclass
class EncodeItem:
    index: int
    pts: int | None
    time_base: Fraction
    planes: tuple[Any, ...]  # CPU torch tensors (uint8 / uint16), one per plane
    ready: Any = None  # a CUDA event to wait for before touching the planes (download in flight)
    duration: int = 0  # how long the frame is shown, in ``time_base`` ticks (0: not said)


@dataclass
class EndOfVideo:
    pass


def stream_from_template(out: av.container.OutputContainer, template: Any) -> Any:
    """``add_stream_from_template`` for a stream copied packet for packet, whatever decoder reads it: PyAV looks a
    video template's codec up as an encoder by its decoder's name, and a decoder named apart from its format
    (``libdav1d`` for AV1) raised UnknownCodecError: every AV1 source or output in scale-out, and AV1 extra video
    streams in any copy. The template's own codec (what a copy needs: the codec id) is used then."""
    try:
        return out.add_stream_from_template(template)
    except av.codec.codec.UnknownCodecError:
        return out.add_stream_from_template(template, opaque=True)


# muxers that take any stream at add_stream and refuse some only when the header is written (FFmpeg's mov: Opus
# and FLAC "only supported in MP4", AV1 video; mp4: MP3 below 16 kHz, an old FLV's or AVI's, "not standard"): a
# copied stream is tried on a probe in memory first, so audio can be
# re-encoded and anything else named as dropped
HEADER_REFUSERS = {"mov", "mp4", "ipod", "mpeg", "vob", "dvd", "svcd", "ogg", "ogv", "yuv4mpegpipe"}


def header_takes(fmt: str, make: Callable[[Any], Any], always: bool = False) -> bool:
    """Whether a ``fmt`` container writes its header with the stream ``make(container)`` adds, its encoder (if
    any) opened: asked of muxers that refuse only there, or of any with ``always`` (an encoder that can't open
    with a layout, e.g. libopus with 5.1(side), is found here, not when the real file starts)."""
    if not always and fmt not in HEADER_REFUSERS:
        return True
    import io

    try:
        with av.open(io.BytesIO(), "w", format=fmt) as probe:
            make(probe)
            probe.start_encoding()  # FFmpeg's log is off outside ffmpeg_errors(): its complaint is not printed
        return True
    except Exception:  # noqa: BLE001 - refused: the caller re-encodes it or says it is dropped
        return False


FILL_MAX = Fraction(60)  # the longest hole in a copied PCM track filled with silence (s); a longer one is said


def sample_timed(fmt: str, codec: str) -> bool:
    """Whether a ``fmt`` container times a copied ``codec`` audio track by its samples, not its timestamps, so
    that a hole in it closes up: AVI, any audio (its audio has no times); MOV/MP4, PCM (measured: AAC keeps its
    times there)."""
    return fmt == "avi" or (fmt in ("mov", "mp4", "ipod") and codec.startswith("pcm_"))


def pcm_silence(codec: str, samples: int, channels: int) -> bytes | None:
    """``samples`` x ``channels`` of silence in linear PCM ``codec`` (signed and float: zeros; unsigned: the
    middle value), or None for another codec (A-law, mu-law, compressed audio)."""
    m = re.fullmatch(r"pcm_([suf])(\d+)(le|be)?(?:_planar)?", codec)
    if m is None or int(m[2]) % 8:
        return None
    size = int(m[2]) // 8
    middle = (1 << (8 * size - 1) if m[1] == "u" else 0).to_bytes(size, "big" if m[3] == "be" else "little")
    return middle * (samples * channels)


# DNxHR's profile for each pixel format FFmpeg's dnxhd encoder takes (HQ: 8-bit 4:2:2, HQX: 10-bit 4:2:2, 444: 10-bit
# 4:4:4); any size from DNXHR_MIN up (measured: 256x120 opens, 255x120 and 256x119 are refused "too small")
DNXHR_PROFILES = {"yuv422p": "dnxhr_hq", "yuv422p10le": "dnxhr_hqx", "yuv444p10le": "dnxhr_444",
                  "gbrp10le": "dnxhr_444"}
DNXHR_MIN = (256, 120)


def dnxhr_profile(pix_fmt: str) -> str:
    """The DNxHR profile ``dnxhd`` encodes ``pix_fmt`` with (HQ for a format it has no profile for)."""
    return DNXHR_PROFILES.get(pix_fmt, "dnxhr_hq")


def turn_words(degrees: int) -> str:
    """How a display matrix's counter-clockwise ``degrees`` (0-359) turn the picture, in words."""
    if degrees in (90, 270):
        return f", a quarter turn {'counter-clockwise' if degrees == 90 else 'clockwise'}"
    return ", upside down" if degrees == 180 else ""


def keep_colour_hint(codec: str, fmt: str) -> str:
    """How to keep the colour tags ``codec`` in ``fmt`` loses: Matroska where it holds the codec and them all, else
    an encoder whose bitstream carries them."""
    if fmt != "matroska" and mkv_keeps_colour(codec):
        return "use .mkv"
    return "use --codec libx264, libx265 or libsvtav1"


def mkv_keeps_colour(codec: str) -> bool:
    """Whether Matroska holds ``codec`` and records every colour tag of it."""
    return len(colour_kept(codec, "matroska")) == len(COLOUR_FIELDS) and _mkv_holds(codec)


def codec_available(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
        return True
    except Exception:
        return False


SUBSAMPLING = {(1, 1): "420", (1, 0): "422", (0, 0): "444"}  # (chroma shift w, h) -> its name
SUBSAMPLING_NAME = {(1, 1): "4:2:0", (1, 0): "4:2:2", (0, 0): "4:4:4"}
DEPTHS = (8, 10, 12, 16)


def pick_pix_fmt(codec: str, bits: int, shift_w: int, shift_h: int, gray: bool, requested: str | None) -> str:
    """The output pixel format: as requested, else the input's subsampling and depth where the codec has them
    (a 12-bit 4:4:4 source stays 12-bit 4:4:4 in FFV1 or x265; they were written 10-bit), else the nearest deeper,
    else the deepest shallower, then 4:2:0."""
    formats = [f.name for f in (av.codec.Codec(codec, "w").video_formats or [])]
    if requested:
        if formats and requested not in formats:
            # only those the pipeline writes (planar YUV and grey): it refused the rest (nv12...) once asked for
            writable = [f for f in formats if f in PLANAR]
            raise OutputError(f"{codec} can't encode --pix-fmt {requested} ("
                              + (f"it takes {', '.join(writable)})" if writable else
                                 "it takes no planar YUV/grey format the pipeline writes)"))
        return requested
    depths = _depths(bits)
    kinds = (["gray"] if gray else []) + [f"yuv{SUBSAMPLING.get((shift_w, shift_h), '420')}p", "yuv420p"]
    for c in (_pix_name(k, b) for k in kinds for b in depths):
        if not formats or c in formats:
            return c
    if "nv12" in formats:
        return "nv12"
    for c in (_pix_name(k, b) for b in depths for k in ("yuv422p", "yuv444p")):  # DNxHR: 10-bit 4:2:2 for a
        if c in formats:  # 10-bit 4:2:0 source (its first format is 8-bit)
            return c
    return formats[0]


def encodes(codec: str, pix_fmt: str) -> bool:
    """Whether this build has ``codec`` and it encodes ``pix_fmt``."""
    return codec_available(codec) and pix_fmt in [f.name for f in av.codec.Codec(codec, "w").video_formats or []]


def ideal_pix_fmt(bits: int, shift_w: int, shift_h: int, gray: bool) -> str:
    """The pixel format that keeps the input's subsampling and depth (what ``pick_pix_fmt`` tries first)."""
    return _pix_name("gray" if gray else f"yuv{SUBSAMPLING.get((shift_w, shift_h), '420')}p", _depths(bits)[0])


def _depths(bits: int) -> list[int]:
    return [b for b in DEPTHS if b >= bits] + [b for b in reversed(DEPTHS) if b < bits]


def _pix_name(kind: str, bits: int) -> str:
    return kind if bits == 8 else f"{kind}{bits}le"


def guess_format(path: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    if path == "-":
        return "matroska"
    return EXT_FORMAT.get(Path(path).suffix.lower(), "")


def output_ticks(path: str, fmt: str | None, rate: Fraction | None) -> tuple[Fraction, ...]:
    """The output's own tick where it counts time in frames (AVI: 1/rate, as the writer sets it), for a part's
    grid: a part moved by a whole number of them lands every frame on a tick, the same in a single-process run
    and a scale-out join; () elsewhere."""
    return (1 / Fraction(rate),) if rate and guess_format(path, fmt) == "avi" else ()


def _what(s: Any) -> str:
    """A stream as a warning names it: cover art for an attached picture (an MP4's cover into .webm was "video
    stream #5")."""
    return f"cover art (stream #{s.index})" if s.disposition & ATTACHED_PIC else f"{s.type} stream #{s.index}"


def _lead(streams: list[Any]) -> Fraction:
    """How long before 0 the earliest of ``streams`` starts (seconds; 0 when none does)."""
    starts = [Fraction(s.start_time) * Fraction(s.time_base) for s in streams
              if s.start_time is not None and s.time_base]
    return max(Fraction(0), -min(starts, default=Fraction(0)))


def quiet_encoder_logs(codec: str) -> None:
    """SVT-AV1 prints a 20-line banner (and thread-priority warnings) per encoder unless SVT_LOG says otherwise;
    errors only, as x265 gets log-level=error. A user's own SVT_LOG wins. Read when the encoder starts."""
    if codec == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")


def is_disk_full(e: BaseException) -> bool:
    return getattr(e, "errno", None) == errno.ENOSPC or "No space left" in str(e)


class Writer(threading.Thread):
    """Owns the output container; ``queue`` takes EncodeItem / PacketItem / EndOfVideo."""

    def __init__(self, path: str, inp: av.container.InputContainer, copy_streams: list[Any], *, width: int,
                 height: int, codec: str, pix_fmt: str, crf: float | None, preset: str | None,
                 time_base: Fraction, rate: Fraction | None, color_tags: dict[str, int], fmt: str | None = None,
                 depth: int = 8, stats: Any = None, warn: Callable[[str], None] = print,
                 first: FirstFrame | None = None, deinterlaced: bool = False, video_template: Any = None,
                 mux_options: dict[str, str] | None = None, out_name: str | None = None,
                 square_pixels: bool = False, window: Window | None = None, crop: Any = None) -> None:
        super().__init__(name="psr2-writer", daemon=True)
        self.path = path
        self.shown = out_name or path  # errors name the user's OUT, not our temporary file for it
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stats = stats
        self.warn = warn
        self.error: BaseException | None = None
        self.frames = 0
        self.bytes_hint = 0
        self.pix_fmt = pix_fmt
        self.color_tags = color_tags
        self.time_base = time_base
        self.window = window  # --start/--end: the part copied; chapters and timecode move with it
        self.crop = crop if crop else None  # --crop (T:B:L:R of the source): bitmap subtitles placed on what is left
        self._rate = rate
        self._last_pts: int | None = None
        self._fixed_pts = 0
        self._tick = 1  # one tick of the muxer's time base in ours (set with the header): a nudged time stays apart
        # a frame without any time (raw .h264/.hevc elementary streams) comes one frame after the last
        self._frame_step = int(round(1 / (Fraction(rate) * time_base))) if rate and time_base else 0
        self._missing_pts = 0
        self._enc_dts: int | None = None  # the last encoded packet's dts
        self.dropped = 0  # frames AVI (Y4M, MPEG-2 video) had no tick for (a VFR source faster than its average)
        self.repeated = 0  # Y4M: frames repeated across a longer gap (it has no times)
        self._shown: av.VideoFrame | None = None  # Y4M: the last frame written, repeated across a gap
        self._durations: dict[int, int] = {}  # output pts -> the frame's length (output ticks), for its packet
        self._last_exact: Fraction | int = 0  # the last frame's own time in output ticks (unrounded)
        self.fixups: dict[int, TimestampFixup] = {}  # output stream index -> what was fixed
        self._muxed: dict[int, int] = {}  # output stream index -> copied packets muxed
        self._fed: collections.deque[int] = collections.deque()  # AVI: the times of frames given to the encoder
        self._held: av.Packet | None = None  # MP4/MOV: the latest encoded packet, muxed when the next comes
        self._shown_end: int | None = None  # MP4/MOV: where the last frame shown ends (packet time base)
        self._delay: int | None = None  # MP4/MOV: the first packet's pts - dts (the encoder's reorder delay)
        self._dts_shift: int | None = None  # AVI: what moves a first frame before 0 to 0
        self._late_audio: dict[int, Fraction] = {}  # input index -> a copied AVI audio track's start (it plays early)
        self._audio_next: dict[int, int | None] = {}  # output index -> where a copied audio track's last packet ended
        self._filled: dict[int, list[tuple[Fraction, Fraction]]] = {}  # input index -> (at, length) filled
        self._holes: dict[int, list[tuple[Fraction, Fraction]]] = {}  # input index -> (at, length) closed up (said)
        self._fields: Any = None  # (graph, buffer, sink) of setfield: marks frames interlaced (libx264)
        self._chapters: list[dict[str, Any]] = []  # set at close (LATE_CHAPTERS), cut where the run ended early
        self._end = Fraction(0)  # where the written picture and sound end (s, the chapters' times)
        self._video_end = Fraction(0)  # where the written picture ends (s): copied subtitles wait to be cut there
        self._sub_wait: collections.deque[tuple[av.Packet, int]] = collections.deque()  # (see _hold_subtitle)
        self._bitmaps: dict[int, BitmapEdit] = {}  # input index -> its bitmap subtitle packets' edit (crop, MP4)
        if guess_format(path, fmt) == "avi" and window is None and rate \
                and _lead(copy_streams) < 1 / Fraction(rate):
            # AVI places a video chunk by its dts in whole ticks: FFmpeg's shift of every stream by the earliest
            # negative time, when it is less than a tick (AAC's priming, 21 ms), moved frame 1 on a tick and left
            # an empty chunk, every frame after the first a tick late: off for such a lead (the frames keep their
            # own ticks, see _encode). A longer lead (sound from 0.5 s before the picture) needs the shift: AVI
            # holds it as the video's delay (with it off, the sound played that much late)
            mux_options = {**(mux_options or {}), "avoid_negative_ts": "disabled"}
        self.out = self._open(path, fmt, mux_options)
        self._avi = self.out.format.name == "avi"
        self._track_ends_by_dts = self.out.format.name in ("mp4", "mov", "ipod", "3gp", "3g2", "psp", "ismv", "f4v")
        # AVI has one frame per tick of its time base: the input's (1 ms for Matroska) made a "1000 fps" header
        # padded with empty frames and broke B-frame order; Y4M writes the tick as its rate (F1000:1: a 25 fps clip
        # played 40x too fast) and MPEG-1/2 video only opens at one frame per tick. Frame times become frame
        # numbers (the scale-out join's copied packets too: it retimes them to this time base)
        self._per_tick = (("AVI" if self._avi else "Y4M" if self.out.format.name == "yuv4mpegpipe"
                           else "MPEG-2 video" if codec in ("mpeg1video", "mpeg2video") and video_template is None
                           else None) if rate else None)
        if self._per_tick:
            self.time_base = time_base = 1 / Fraction(rate)
            self._frame_step = 1
        if video_template is not None:  # scale-out join: encoded segments are copied (PacketItems on vstream)
            self.vstream = stream_from_template(self.out, video_template)
            self.vstream.time_base = time_base
            if rate:  # the segments' NUT has its own (Matroska read it back as "1000 fps"): the source's, as encoded
                self.vstream.codec_context.framerate = Fraction(rate)
            for k, v in color_tags.items():  # the segments' container (NUT) has none
                setattr(self.vstream.codec_context, CODEC_TAG.get(k, k), v)
        else:
            self.vstream = self._add_video(codec, width, height, pix_fmt, crf, preset, time_base, rate)
        if not square_pixels:  # --size resamples to square pixels: nothing to carry (the join: nor does NUT)
            self._carry_sar(inp)
        self._say_lost_colour_tags(codec)
        self._encodes = video_template is None  # else the video is copied (a scale-out join): no encoder to flush
        self._carry_frame_facts(codec, first or FirstFrame(), deinterlaced)
        self.copy_map: dict[int, Any] = {}
        self.convert: dict[int, Callable[[bytes], bytes | None]] = {}  # input index -> payload rewrite
        self.transcode: dict[int, AudioTranscode] = {}  # input index -> audio re-encoded for this container
        self.cues: dict[int, tuple[CueTimeline, str]] = {}  # input index -> text cues merged for mov_text
        self._inp = inp
        self._timecode: str | None = None  # a timecode track's start, for the video stream's tag
        for s in copy_streams:
            self._add_copy(s)
        self._copy_metadata(inp)
        self._write_header(codec if video_template is None else codec_name(video_template),
                           encodes=video_template is None)
        # (output index, input index, kind) of the copied streams and the video's index, for ``lost_facts``
        # (the output's stream objects can't be asked once it is closed)
        self._layout = sorted((o.index, i, o.type) for i, o in self.copy_map.items())
        self._vindex = self.vstream.index

    def _write_header(self, codec: str, encodes: bool) -> None:
        """The container's header now, at set-up: muxers without a codec table (MPEG-PS, Ogg, Y4M) take any
        stream at add_stream and refuse it only here, and that refusal, said before any frame is upscaled, names
        the streams, not FFmpeg's "Invalid argument" about a partial file."""
        cc = self.vstream.codec_context
        if encodes and not cc.is_open:  # the encoder first: its refusal is about --codec/--crf/--preset
            try:
                with ffmpeg_errors():  # the encoder's own reason ("input must be at least ..."), not just EINVAL
                    cc.open()
            except Exception as e:  # noqa: BLE001 - FFmpeg's errno-typed errors
                raise OutputError(f"encoder {codec} can't start with these settings ({ffmpeg_reason(e)})") from None
        # named now: after a failed start PyAV can crash reading a stream's codec context
        held = [f"video {codec}"] + [f"{o.type} {codec_name(o) or '?'} (#{i})" for i, o in self.copy_map.items()]
        try:
            with ffmpeg_errors():
                self.out.start_encoding()
        except Exception as e:  # noqa: BLE001 - FFmpeg's errno-typed errors
            if is_disk_full(e) or getattr(e, "errno", None) in (errno.EACCES, errno.EPERM, errno.EROFS,
                                                                errno.ENOENT, errno.EISDIR, errno.ENAMETOOLONG,
                                                                errno.ENOTDIR):
                raise OutputError(describe_output_error(self.shown, e)) from None
            fmt = self.out.format.name
            why = ffmpeg_reason(e)
            if len(held) == 1:
                raise OutputError(f"{fmt} can't hold {codec} video ({why}); pick a --codec it holds{or_mkv(fmt, codec)}"
                                  ) from None
            fix = "" if fmt == "matroska" else "; use .mkv, which holds them all, or a container made for these codecs"
            raise OutputError(f"{fmt} can't start with {', '.join(held)} ({why}){fix}") from None
        if self.vstream.time_base and self.time_base:  # e.g. Matroska's 1 ms for a 1 us input time base
            self._tick = max(1, math.ceil(Fraction(self.vstream.time_base) / Fraction(self.time_base)))

    # --- set-up, one job each ---------------------------------------------------------------------------
    def _open(self, path: str, fmt: str | None, mux_options: dict[str, str] | None = None
              ) -> av.container.OutputContainer:
        options = dict(mux_options or {})
        fmt = guess_format(path, fmt)
        if path == "-" and fmt in ("mp4", "mov", "ipod"):
            # A pipe can't seek back to write the index, so the file is fragmented. delay_moov (not empty_moov)
            # writes the header once the first fragment is known, with the edit list that starts B-frame video at
            # its first pts: with empty_moov the video played two frames (80 ms at 25 fps) after the audio.
            options["movflags"] = "frag_keyframe+delay_moov+default_base_moof"
        if fmt in ("", "mpegts") and path != "-" and Path(path).suffix.lower() in (".m2ts", ".mts"):
            # Blu-ray's .m2ts and AVCHD's .mts are M2TS (192-byte packets), which holds PGS; FFmpeg's muxer turns it
            # on for .m2ts only (the same, said here for both: _m2ts is read from it)
            options.setdefault("mpegts_m2ts_mode", "1")
        if fmt == "yuv4mpegpipe":  # 10/12/16-bit and 4:4:4 Y4M (x264, x265 and aomenc read them) are "unofficial"
            options.setdefault("strict", "unofficial")
        try:
            if path == "-":
                out = av.open(sys.stdout.buffer, "w", format=fmt or "matroska", options=options)
            else:
                out = av.open(path, "w", format=fmt or None, options=options)
        except av.error.FFmpegError as e:
            raise OutputError(describe_output_error(self.shown, e)) from None
        except ValueError as e:
            raise OutputError(f"can't write {self.shown}: {e}") from None
        # MPEG-TS written as Blu-ray's M2TS (192-byte packets), which also holds PGS subtitles
        self._m2ts = out.format.name == "mpegts" and str(options.get("mpegts_m2ts_mode", "")) in ("1", "true")
        return out

    def _add_video(self, codec: str, width: int, height: int, pix_fmt: str, crf: float | None, preset: str | None,
                   time_base: Fraction, rate: Fraction | None) -> Any:
        try:
            vcodec = av.codec.Codec(codec, "w")
        except Exception:
            raise OutputError(f"encoder {codec} is not in this FFmpeg build") from None
        quiet_encoder_logs(codec)
        try:
            if vcodec.canonical_name not in VIDEO_ONLY.get(self.out.format.name, (vcodec.canonical_name,)):
                raise ValueError("format does not support it")  # written as data: refused as the muxers refuse
            vs = self.out.add_stream(codec, rate=rate if rate else None)
        except ValueError as e:
            if not _refused(e):
                raise OutputError(f"can't use encoder {codec}: {e}") from None
            fmt = self.out.format.name
            held = [c for c in ("libx264", "libx265", "libsvtav1", "libvpx-vp9", "ffv1")
                    if c != codec and _holds(self.out, c)]
            raise OutputError(f"{fmt} can't hold {vcodec.canonical_name} video; pick a --codec it can hold"
                              + (f" ({', '.join(held)})" if held else "") + or_mkv(fmt, codec)) from None
        except Exception as e:  # noqa: BLE001
            raise OutputError(f"can't use encoder {codec}: {e}") from None
        if codec == "dnxhd" and (width < DNXHR_MIN[0] or height < DNXHR_MIN[1]):
            raise OutputError(f"dnxhd (DNxHR) codes pictures of at least {DNXHR_MIN[0]}x{DNXHR_MIN[1]}; this output is "
                              f"{width}x{height} (--size for a larger one, or another --codec)")
        vs.width, vs.height, vs.pix_fmt = width, height, pix_fmt
        vs.time_base = time_base
        cc = vs.codec_context
        cc.time_base = time_base
        for k, v in self.color_tags.items():
            setattr(cc, CODEC_TAG.get(k, k), v)
        cc.thread_count = 0
        if vcodec.name in ("hevc", "libx265", "hevc_nvenc") or vcodec.canonical_name == "hevc":
            if self.out.format.name in ("mp4", "mov", "ipod"):
                cc.codec_tag = "hvc1"  # what Apple's players need (FFmpeg writes hev1 unless told)
        vs.options = self._codec_options(codec, crf, preset, pix_fmt)
        return vs

    def _say_lost_colour_tags(self, codec: str) -> None:
        """The colour tags the output can't record (``colour_kept``: AVI and NUT have no colour fields, MOV no
        range; a bitstream may hold them: H.264, HEVC and AV1 fully, VP9 its matrix and range), which a player then
        guesses (BT.601 for SD). A full-range source is written limited where the range is lost (the pipeline
        folds it into the conversion and says so, ``output_colour``); the others are named here. Y4M: below."""
        fmt = self.out.format.name
        if fmt == "yuv4mpegpipe":
            lost = []
        else:
            kept = colour_kept(codec, fmt)
            reads = DECODER_READS.get(_canonical(codec), {})
            lost = [f for f in ("matrix", "primaries", "transfer") if f not in kept
                    and not (f in reads and self.color_tags.get(reads[f][0]) == reads[f][1])]
            if "range" not in kept and self.color_tags.get("color_range") == 2 and not self.pix_fmt.startswith("gray"):
                lost.append("range")  # (untagged grey is read as full range: the pipeline writes it so)
        if lost:
            what = ", ".join(lost[:-1]) + (" and " if len(lost) > 1 else "") + lost[-1]
            where = f"{keep_colour_hint(codec, fmt)} to keep them"
            them = "it" if len(lost) == 1 else "them"
            if fmt in NO_COLOUR_FIELDS:
                self.warn(f"warning: {fmt} has no colour tags and {codec} does not carry its colour {what} itself: "
                          f"players will guess {them} ({where})")
            else:
                self.warn(f"warning: {codec} in {fmt} can't record the video's colour {what}: players will guess "
                          f"{them} ({where})")
        tags = self.color_tags
        if fmt == "yuv4mpegpipe" and (tags.get("colorspace"), tags.get("color_primaries"),
                                      tags.get("color_trc")) != (SPACE_BT709, PRIM_BT709, TRC_BT709):
            # the encoder it feeds (x264 --demuxer y4m) writes none, and players take an upscaled frame as BT.709
            self.warn("warning: Y4M holds no colour matrix, primaries or transfer and this video is not BT.709: "
                      "give them to the encoder it feeds (x264/x265: --colormatrix, --colorprim, --transfer)")

    def _mov_language(self, stream: Any) -> None:
        """A stream's language as MOV holds it (``MOV_LANGUAGE``: Matroska's fre, cze, deu...)."""
        if self.out.format.name == "mov" and (lang := stream.metadata.get("language")) in MOV_LANGUAGE:
            stream.metadata["language"] = MOV_LANGUAGE[lang]

    def _carry_sar(self, inp: av.container.InputContainer) -> None:
        """The input's pixel shape (a DVD's or a 1440x1080 HDV capture's non-square pixels): both axes are scaled
        alike, so the same sample aspect ratio keeps the picture's shape (without it a player shows the stored
        width). The container's value first, as FFmpeg's own guess does, then the bitstream's."""
        sar = pixel_shape(main_video(inp))
        if sar == 1:
            return
        self.vstream.codec_context.sample_aspect_ratio = sar
        # PyAV can't set the stream-level SAR that Matroska/NUT/WebM write: it survives where the bitstream holds
        # it (H.264/HEVC VUI) or the muxer reads the encoder's value (MP4/MOV 'pasp'); measured, see the tests
        codec, fmt = self.vstream.codec_context.name, self.out.format.name
        if codec not in SAR_IN_BITSTREAM and not {"mp4", "mov"} & set(fmt.split(",")):
            self.warn(f"warning: the input has non-square pixels (sample aspect ratio {sar.numerator}:"
                      f"{sar.denominator}), which {codec} in {fmt} can't be given here: the output is shown with "
                      "square pixels (use libx264 or libx265, or an .mp4 / .mov file, to keep the shape)")

    def _carry_frame_facts(self, codec: str, first: FirstFrame, deinterlaced: bool) -> None:
        """Display rotation, field order and HDR10 side data of the input, carried or named; what rides in its
        bitstream only (captions, Dolby Vision, HDR10+) named as lost."""
        vs = self.vstream
        if first.lost:
            hints = []
            if any("captions" in w for w in first.lost):
                hints.append("extract the captions first (e.g. ccextractor IN) to keep them as a subtitle file")
            if any("Dolby Vision" in w for w in first.lost):
                hints.append("players show its HDR10 base layer; a profile 5 stream has none, and its colours will "
                             "be wrong")
            self.warn(f"warning: the input's {' and '.join(first.lost)} can't be carried (held in the source's video "
                      "bitstream, which is re-encoded)" + "".join(f"; {h}" for h in hints))
        turn = first.rotation % 360  # FFmpeg's angle is counter-clockwise in -180..180: "-90" was a phone's 270
        if first.rotation and self.out.format.name.split(",")[0] in DISPLAY_MATRIX:
            vs.set_display_rotation(first.rotation)
            self.warn(f"note: the input is shown rotated by {turn} degrees (display matrix){turn_words(turn)}; the "
                      "output carries the same display matrix (the pixels are not rotated)")
        elif first.rotation:
            self.warn(f"warning: the input is shown rotated by {turn} degrees (display matrix), which "
                      f"{self.out.format.name} can't hold: the output shows the pixels unrotated (use .mp4, .mov or "
                      ".mkv to keep the rotation)")
        if first.interlaced and not deinterlaced:
            order = {2: "top field first", 3: "bottom field first", 4: "top field first", 5: "bottom field first"}
            vs.codec_context.field_order = first.field_order
            if codec in FIELD_CODERS:
                vs.codec_context.flags |= av.codec.context.Flags.interlaced_dct
                # x264, MPEG-2, ProRes... code interlaced pictures from frame flags that PyAV can't set: setfield
                # sets them (MPEG-2 flagged every frame progressive: a DVD's fields were shown combed; ProRes was
                # coded progressive while its MOV said bottom field first)
                self._fields = one_filter_graph(vs.width, vs.height, vs.pix_fmt, self.time_base, "setfield",
                                                "bff" if first.field_order in (3, 5) else "tff")
            what = order.get(first.field_order, "field order unknown")
            if self.out.format.name == "webm":  # FFmpeg's WebM muxer writes no field order, and VP9/AV1 hold none
                self.warn(f"note: interlaced input ({what}): the model ran on whole frames, but webm can't say the "
                          "field order (players take it as progressive): use .mkv to keep it, or --deinterlace")
            else:
                self.warn(f"note: interlaced input ({what}): the model ran on whole frames and the output keeps the "
                          "field order; --deinterlace gives progressive output")
        if first.mastering or first.light_level:
            key, params = hdr10_params(codec, first.mastering, first.light_level)
            if key:
                opts = dict(vs.options)
                opts[key] = ":".join(p for p in (opts.get(key, ""), params) if p)
                vs.options = opts
            else:
                self.warn(f"warning: the input's HDR10 mastering display / content light level metadata can't be "
                          f"given to {codec}; not carried (use --codec libx265, libsvtav1 or libx264 to keep it)")

    def _add_copy(self, s: Any) -> None:
        """One stream copied packet for packet (or converted, or dropped with a warning)."""
        name = codec_name(s)
        kind = s.type
        fmt = self.out.format.name
        if kind == "attachment":
            if fmt != "matroska":
                self.warn(f"warning: attachment stream #{s.index} ({_stream_label(s)}) can't be carried in {fmt}; "
                          "dropped (use .mkv)")
                return
            try:
                self.out.add_attachment(s.name, s.mimetype, s.data)
            except Exception as e:  # noqa: BLE001
                self.warn(f"warning: attachment {_stream_label(s)} can't be copied: {e}; dropped")
            return
        if kind == "data" and s.codec_context is None:  # PyAV opens no decoder for data: its codec by name
            name = getattr(s, "name", None) or ""
            if name in ("", "none") or self._carried_otherwise(s):  # nothing FFmpeg can copy as a stream
                self._say_codecless_data(s)
                return
            if not header_takes(fmt, lambda p: stream_from_template(p, s), always=True):  # KLV into Matroska
                self.warn(f"warning: data stream #{s.index} ({name}) can't be carried in {fmt}; dropped (use "
                          f"{'.ts' if name == 'klv' else 'the input container'} to keep it)")
                return
            self.copy_map[s.index] = stream_from_template(self.out, s)  # KLV (drone telemetry) into MPEG-TS
            return
        if unprobed(s):
            # no muxer starts with it ("sample rate not set"): a DVB recording's programme lists an audio
            # description or second language it never sends
            what = "sound" if kind == "audio" else "picture"
            where = (f"the first {PROBE_SECONDS} s of the file" if Path(str(self._inp.name)).is_file()
                     else "the part of the pipe it looked at (5 s; give the file's name to look a minute in)")
            self.warn(f"warning: {kind} stream #{s.index} ({name or '?'}) has no {what} parameters: FFmpeg found no "
                      f"packet of it in {where} (a track the file lists but never carries, as DVB recordings do); "
                      "left out")
            return
        if kind == "video" and s.disposition & ATTACHED_PIC and fmt == "matroska" and self._cover_attachment(s):
            return
        if kind == "video" and s.disposition & ATTACHED_PIC and fmt == "mov":
            # FFmpeg's mov muxer takes the stream and writes cover art only in MP4 mode: it vanished in silence
            self.warn(f"warning: cover art (stream #{s.index}) can't be carried in mov; dropped (use .mp4 or .mkv "
                      "to keep it)")
            return
        # the muxer's own answer (PyAV refuses only what FFmpeg says a format can't hold; the supported_codecs
        # list is no guide: formats without codec tables, mpegts among them, list only their default codecs)
        if kind == "video" and name not in VIDEO_ONLY.get(fmt, (name,)):
            self.warn(f"warning: {_what(s)} ({name or '?'}) can't be carried in {fmt} (it would be written as a data "
                      "stream no player shows); dropped (use .mkv to keep it)")
            return
        if kind == "subtitle" and fmt in BITMAP_SUBTITLES_ONLY and name not in BITMAP_SUBTITLES_ONLY[fmt] \
                and not (name == "hdmv_pgs_subtitle" and self._m2ts):
            # FFmpeg's mpegts muxer takes any subtitle but writes it as untyped private data (it would read back as
            # a "data" stream no player shows), MPEG-PS as a DVD subpicture stream (read back as garbage dvdsub):
            # named as dropped, not carried in name only
            kinds = "DVB" if fmt == "mpegts" else "DVD"
            also = " (PGS in .m2ts)" if fmt == "mpegts" else ""
            self.warn(f"warning: subtitle stream #{s.index} ({name or '?'}) can't be carried in {fmt} (it holds only "
                      f"{kinds} subtitles{also}); dropped (use .mkv to keep it)")
            return
        if kind == "subtitle" and fmt == "nut" and name in TEXT_SUBS:
            # NUT stores no packet durations: every text cue reads back 0 s long (ASS copied there was never
            # shown); bitmap subtitles carry their own end and are copied
            self.warn(f"warning: subtitle stream #{s.index} ({name}) can't be carried in nut (it stores no "
                      "subtitle durations: every cue would last 0 s and never be shown); dropped (use .mkv to keep "
                      "it)")
            return
        try:
            if (kind == "audio" and (name not in AUDIO_ONLY.get(fmt, (name,)) or name in AUDIO_MISTIMED.get(fmt, ()))
                    ) or not header_takes(
                    fmt, lambda p: stream_from_template(p, s)):
                # MOV with Opus/FLAC, TS with PCM: audio re-encoded; MOV with an extra AV1 video: named as dropped
                raise ValueError("format does not support it")
            o = stream_from_template(self.out, s)
        except Exception as e:  # noqa: BLE001
            if not _refused(e):
                self.warn(f"warning: {kind} stream #{s.index} ({name or '?'}) can't be copied: {e}; dropped")
                return
            o = None
        if o is not None and name == "mov_text" and self.path == "-" and fmt in ("mp4", "mov", "ipod"):
            # fragmented (see _open): a sample of no length last in a fragment (FFmpeg writes them) made FFmpeg's
            # muxer abort the run; the cues are laid out again as converted ones are (see MOV_TEXT_TIME_BASE)
            o.time_base = MOV_TEXT_TIME_BASE
            self.cues[s.index] = (CueTimeline.for_mov_text(s.time_base), name)
            self.warn(f"note: subtitle stream #{s.index} (mov_text) is written again for the fragmented {fmt} on "
                      "stdout (text and times kept, styling dropped)")
        if o is None and name in TEXT_SUBS:  # text subtitles the container can't hold as they are: the text in
            for target in ("mov_text", "subrip", "webvtt"):  # a text format it can hold
                try:
                    o = self.out.add_stream(target)
                except ValueError:
                    continue
                o.codec_context.subtitle_header = ASS_HEADER
                o.time_base = MOV_TEXT_TIME_BASE if target == "mov_text" else s.time_base  # (see there)
                self.convert[s.index] = lambda data, a=name, b=target: convert_text_sub(data, a, b)
                if target == "mov_text":  # one sample at a time: overlapping cues merged, not moved
                    self.cues[s.index] = (CueTimeline.for_mov_text(s.time_base), name)
                self.warn(f"note: subtitle stream #{s.index} ({name}) is written as {target} for {fmt} (text kept, "
                          "styling dropped)")
                break
        if o is None and kind == "audio" and (t := AudioTranscode.add(self.out, s)) is not None:
            if self._avi:  # AVI's audio has no start time: a late start is silence in front (else it plays early)
                t.starts_at(Fraction(0))
            self.transcode[s.index] = t
            o = t.stream
            self.warn(f"note: audio stream #{s.index} ({name or '?'}) can't be carried in {fmt} as it is: re-encoded "
                      f"as {t.describe()} (timing kept; use .mkv to copy it untouched)")
        if o is None:
            keep = "use .mkv to keep it" if fmt != "matroska" else "it has no Matroska form"
            self.warn(f"warning: {_what(s)} ({name or '?'}) can't be carried in {fmt}; dropped ({keep})")
            return
        try:
            o.metadata.update(carried_tags(s.metadata, stats=self.window is not None))  # a part: not the whole's
            self._mov_language(o)
            o.disposition = s.disposition
        except Exception:  # noqa: BLE001 - cosmetic
            pass
        if kind == "subtitle" and s.index not in self.convert and s.index not in self.cues:
            self._edit_subtitles(s, o, name)
        if kind == "audio" and s.index not in self.transcode:
            layout = o.codec_context.layout
            if layout.name == f"{layout.nb_channels} channels" and layout.nb_channels in DEFAULT_LAYOUTS:
                o.codec_context.layout = DEFAULT_LAYOUTS[layout.nb_channels]  # the label only; samples as they are
        self.copy_map[s.index] = o

    def _edit_subtitles(self, s: Any, o: Any, name: str) -> None:
        """A copied subtitle stream's geometry under --crop, and DVD subpictures' lengths in MP4/MOV: DVD and PGS
        rectangles moved onto the cropped frame (``BitmapEdit``), ASS named as placed on the uncropped one."""
        crop = self.crop
        dvd, pgs = name == "dvd_subtitle", name == "hdmv_pgs_subtitle"
        if crop is not None and name in ("ass", "ssa"):
            # ASS places its lines on a PlayResX x PlayResY canvas that players fit over the picture: \pos, \move,
            # \clip, margins and drawings would all have to move, and the canvas change shape (left as written)
            self.warn(f"note: subtitle stream #{s.index} ({name}) is positioned on the uncropped frame (--crop "
                      f"{crop}): players fit its canvas over the cropped picture, so its lines can sit higher or "
                      "lower and look squeezed (extract it and fix PlayResX/PlayResY and positions to match)")
        elif crop is not None and (dvd or pgs):
            # (--crop is in the video's pixels: a canvas of another size, a 1080p PGS kept with a 720p encode, gets
            # it scaled to its own)
            edit = BitmapEdit(name, crop, self._source_size())
            if dvd:
                canvas = dvd_canvas(s.codec_context.extradata) or edit.video
                area = None if canvas is None else edit.area(canvas, self.warn, s.index)
                if area is not None:
                    edit.canvas = canvas
                    o.codec_context.extradata = dvd_extradata_sized(s.codec_context.extradata, *area[2:])
            self._bitmaps[s.index] = edit
        elif crop is not None and name in ("dvb_subtitle", "xsub"):
            self.warn(f"note: subtitle stream #{s.index} ({name}) is placed on the uncropped frame (--crop {crop}): "
                      "players fit it over the cropped picture (moved and squeezed)")
        if dvd and self._track_ends_by_dts:  # its subpictures need a length there (see BitmapEdit)
            self._bitmaps.setdefault(s.index, BitmapEdit(name, None)).lengths = True

    def _source_size(self) -> tuple[int, int] | None:
        """The size of the picture upscaled (``main_video``: --crop is in its pixels; the first video stream of a
        file with a preview track first is not it), where a DVD subtitle stream names no canvas of its own."""
        if not self._inp.streams.video:
            return None
        cc = main_video(self._inp).codec_context
        return (cc.width, cc.height) if cc is not None and cc.width else None

    def _carried_otherwise(self, s: Any) -> bool:
        """Whether a data stream is a timecode or chapter track (carried as a tag or as chapters, not copied)."""
        md = s.metadata or {}
        if md.get("timecode") or "timecode" in md.get("handler_name", "").lower():
            return True
        try:
            return bool(self._inp.chapters()) and getattr(s, "name", None) in ("text", "bin_data", None, "", "none")
        except Exception:  # noqa: BLE001
            return False

    def _say_codecless_data(self, s: Any) -> None:
        """A data stream without a codec (an MP4 chapter text track, a QuickTime timecode track): what it
        held is carried another way, or the stream is named as dropped."""
        md = s.metadata or {}
        handler = md.get("handler_name", "")
        if md.get("timecode") or "timecode" in handler.lower():
            tc = md.get("timecode") or main_video(self._inp).metadata.get("timecode")
            self._timecode = self._timecode or tc  # given to the video stream with its metadata
            self.warn(f"note: timecode track #{s.index} is not copied as a stream"
                      + (f"; its timecode {tc} is carried as the video's timecode tag" if tc else
                         "; it holds no timecode tag to carry"))
            return
        try:
            chapters = bool(self._inp.chapters())
        except Exception:  # noqa: BLE001
            chapters = False
        if chapters:
            self.warn(f"note: data stream #{s.index} ({handler or 'no codec'}) is the input's chapter track; "
                      "the chapters are carried as chapters, not as that stream")
            return
        self.warn(f"warning: data stream #{s.index} ({handler or 'no codec'}) has no codec FFmpeg can copy; dropped")

    def _cover_attachment(self, s: Any) -> bool:
        """Cover art (an attached picture) into Matroska as the attachment Matroska keeps covers in; FFmpeg's
        muxer would write it as a one-frame video track. Its one packet is read from the input file."""
        name = getattr(self._inp, "name", "")
        if not name or not Path(name).is_file():
            return False  # a pipe can't be read twice: copied as a video track, like FFmpeg
        try:
            with av.open(name) as again:
                pkt = next((p for p in again.demux(again.streams[s.index]) if p.size), None)
                data = bytes(pkt) if pkt is not None else b""
        except Exception:  # noqa: BLE001 - then copied as FFmpeg would
            return False
        if not data:
            return False
        md = s.metadata or {}
        ext = {"mjpeg": "jpg", "png": "png", "bmp": "bmp", "webp": "webp"}.get(codec_name(s), "bin")
        filename = md.get("filename") or f"cover.{ext}"
        mimetype = md.get("mimetype") or {"jpg": "image/jpeg", "png": "image/png", "bmp": "image/bmp",
                                          "webp": "image/webp"}.get(ext, "application/octet-stream")
        try:
            self.out.add_attachment(filename, mimetype, data)
        except Exception:  # noqa: BLE001
            return False
        return True

    def _copy_metadata(self, inp: av.container.InputContainer) -> None:
        try:
            vin = main_video(inp)
            # not VP9's ALPHA_MODE (WebM's AlphaMode element): the output has no alpha plane to go with it
            self.vstream.metadata.update(carried_tags(vin.metadata, stats=True, drop=("ENCODER", "ALPHA_MODE")))
            # its dispositions (default, original...): a .mkv of a .mkv had lost them
            self.vstream.disposition = av.stream.Disposition(int(vin.disposition) & ~int(ATTACHED_PIC))
            self._mov_language(self.vstream)
            if self._timecode and not any(k.lower() == "timecode" for k in self.vstream.metadata):
                self.vstream.metadata["timecode"] = self._timecode  # MOV/MP4 rebuild a tmcd track from it
            self.out.metadata.update({k: v for k, v in inp.metadata.items() if k.lower() != "encoder"})
            for key, atom in self._apple_tags(inp.metadata).items():  # a phone's place, make and model: under the
                self.out.metadata.setdefault(atom, inp.metadata[key])  # keys FFmpeg's MOV/MP4 muxer writes
            chapters = inp.chapters()
            if self.window is not None:
                chapters = trim_chapters(chapters, self.window)
                self._move_timecodes(inp)
            fmt = self.out.format.name
            if chapters and fmt in NO_CHAPTERS:
                self.warn(f"warning: the input's {len(chapters)} chapter(s) can't be carried in {fmt}; dropped "
                          "(use .mkv or .mp4 to keep them)")
            elif chapters and self.path != "-" and fmt in LATE_CHAPTERS:
                self._chapters = chapters
            elif chapters:
                self.out.set_chapters(chapters)
            tags = sorted(user_tags(inp.metadata))
            if tags and fmt in NO_CONTAINER_TAGS:
                self.warn(f"warning: the input's container tags ({', '.join(tags)}) can't be carried in {fmt}; "
                          "dropped (use .mkv or .mp4 to keep them)")
        except Exception as e:  # noqa: BLE001
            self.warn(f"warning: metadata/chapters not copied: {e}")

    def _apple_tags(self, tags: dict[str, str]) -> dict[str, str]:
        """The input's QuickTime keys (``APPLE_TAGS``) this output's muxer writes under its own key: input key ->
        that key."""
        held = APPLE_TAGS_HELD.get(self.out.format.name.split(",")[0], ())
        return {k: APPLE_TAGS[k.lower()] for k in tags if APPLE_TAGS.get(k.lower()) in held}

    def _move_timecodes(self, inp: av.container.InputContainer) -> None:
        """A part's timecode names its own first frame: the source's, that many frames on (or left out, said,
        where it can't be told)."""
        assert self.window is not None
        frames = max(0, math.ceil((self.window.lo - Fraction(video_start(inp)).limit_denominator(10**6))
                                  * Fraction(self._rate or 0) - Fraction(1, 1000)))
        for md in (self.vstream.metadata, self.out.metadata):
            for k in [k for k in md if k.lower() == "timecode"]:
                tc = md[k]
                moved = shift_timecode(tc, frames, self._rate)
                if moved is None:
                    del md[k]
                    self.warn(f"note: the timecode {tc} names the source's first frame and can't be moved to the "
                              "part's (no frame rate, or not HH:MM:SS:FF); left out")
                else:
                    md[k] = moved

    @staticmethod
    def _codec_options(codec: str, crf: float | None, preset: str | None, pix_fmt: str = "") -> dict[str, str]:
        if codec == "ffv1":
            return {"level": "3", "slices": "4", "slicecrc": "1"}
        if codec == "dnxhd":  # FFmpeg's default profile (DNxHD) takes only some 1080/720 sizes and bitrates
            return {"profile": dnxhr_profile(pix_fmt)}
        crf = DEFAULT_CRF.get(codec, 20) if crf is None else crf
        preset = preset or DEFAULT_PRESET.get(codec)
        opts: dict[str, str] = {}
        if codec.endswith("_nvenc"):
            opts = {"rc": "vbr", "cq": str(int(crf)), "b": "0"}
        elif codec == "libvpx-vp9":
            opts = {"crf": str(int(crf)), "b": "0", "row-mt": "1"}
        else:
            opts = {"crf": f"{crf:g}"}
        if codec == "libx265":
            opts["x265-params"] = "log-level=error"
        if preset and codec != "libvpx-vp9":
            opts["preset"] = str(preset)
        return opts

    # --- the thread ---------------------------------------------------------------------------------------
    def put(self, item: Any) -> None:
        """Queue an item for the encoder; re-raises the writer's error instead of blocking on a dead thread."""
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if not self.is_alive():
                    raise (self.error or RuntimeError("writer stopped")) from None

    def _frame(self, item: EncodeItem) -> av.VideoFrame | None:
        """The frame to encode, timed in the output's time base; None for a frame AVI has no tick left for."""
        if item.ready is not None:
            item.ready.synchronize()
        pts = exact = item.pts
        if pts is not None and item.time_base != self.time_base:
            exact = Fraction(pts) * Fraction(item.time_base) / Fraction(self.time_base)
            pts = exact_ticks(exact)
        if pts is None:  # no time at all: one frame period after the last (as FFmpeg's frame-rate guess does)
            pts = (self._last_pts + max(self._tick, self._frame_step)) if self._last_pts is not None else 0
            self._missing_pts += 1
        elif self._last_pts is not None and pts < self._last_pts + self._tick:
            if self._per_tick and 0 <= exact - self._last_exact < 1 and (self._last_pts + 1 - exact > 1
                                                                         or exact == self._last_exact):
                # AVI holds one frame per tick (1/average rate): a VFR source's faster stretch (frames less than a
                # tick apart in its own times), nudged a tick on each, fell behind its sound by a frame per frame;
                # dropped instead, as ffmpeg does (said), and so is a frame at the same time as the one before (each
                # nudged a tick on, they drifted behind the sound). Decode-order times that go back are nudged.
                self.dropped += 1
                self._last_exact = exact
                return None
            pts = self._last_pts + self._tick
            self._fixed_pts += 1
        fr = av.VideoFrame.from_dlpack(tuple(item.planes), format=self.pix_fmt)
        for k, v in self.color_tags.items():
            setattr(fr, k, v)
        self._last_pts, self._last_exact = pts, (exact if exact is not None else pts)
        if item.duration and not self._avi:  # given to the packet the encoder makes of it (they drop it)
            self._durations[pts] = max(1, exact_ticks(Fraction(item.duration) * Fraction(item.time_base)
                                                      / Fraction(self.time_base)))
        fr.pts = pts
        fr.time_base = self.time_base
        length = self._durations.get(pts) or self._frame_step
        self._video_end = max(self._video_end, (pts + length) * Fraction(self.time_base))
        if self._chapters:  # (read only to cut them at close)
            self._end = max(self._end, self._video_end)
        if self._fields is not None:  # mark the frame interlaced with its field order
            self._fields[1].push(fr)
            fr = self._fields[2].pull()
        return fr

    def _copy(self, item: PacketItem) -> None:
        """Mux a copied packet; timestamps that don't increase are fixed like FFmpeg's muxer front end does."""
        pkt = item.packet
        if pkt.stream is self.vstream:  # a copied video packet (scale-out join)
            if pkt.pts is not None and pkt.time_base:
                self._video_end = max(self._video_end, (pkt.pts + (pkt.duration or 0)) * Fraction(pkt.time_base))
            self.out.mux(pkt)
            self.frames += 1
            self._release_subtitles()
            return
        idx = pkt.stream.index
        o = self.copy_map.get(idx)
        if o is None:
            return
        if (t := self.transcode.get(idx)) is not None:
            for out_pkt in t.encode(pkt):
                self._mux_copy(out_pkt, idx)
            return
        if idx in self.cues:
            self._mux_cues(idx, pkt, o)
            return
        conv = self.convert.get(idx)
        if conv is not None:
            data = conv(bytes(pkt))
            if data is None:
                return
            new = av.Packet(data)
            new.pts, new.dts, new.duration, new.time_base = pkt.pts, pkt.dts, pkt.duration, pkt.time_base
            pkt = new
        if (edit := self._bitmaps.get(idx)) is not None:
            for q in edit.feed(pkt, self.warn, idx):
                q.stream = o
                self._mux_copy(q, idx)
            return
        pkt.stream = o
        self._mux_copy(pkt, idx)

    def _mux_cues(self, idx: int, pkt: av.Packet | None, o: Any) -> None:
        """A text cue into mov_text through its stream's ``CueTimeline`` (None: the end, the rest given out)."""
        timeline, src = self.cues[idx]
        if pkt is None:
            ready, tb = timeline.flush(), timeline.time_base  # (the input's ticks, as every cue's)
        else:
            text = sub_text(bytes(pkt), src)
            if pkt.pts is None or not text:
                return
            end = pkt.pts + pkt.duration if pkt.duration else math.inf
            ready, tb = timeline.add(pkt.pts, end, text), pkt.time_base
        if pkt is None and self.path == "-" and timeline.at is not None:
            # the last cue's end: FFmpeg's muxer writes an empty sample of no length there, which a fragment
            # gives the length of the one before (a part's MP4 on stdout lasted 1.9 s for 1.2 s of picture); one
            # of ours, 1 tick long, ends it instead (the muxer writes none after an empty sample)
            ready.append((timeline.at, timeline.at + 1, ""))
        for start, stop, text in ready:
            new = av.Packet(pack_sub_text(text, "mov_text"))
            new.pts = new.dts = start
            new.duration, new.time_base, new.stream = stop - start, tb, o
            self._mux_copy(new, idx)

    def _mux_copy(self, pkt: av.Packet, idx: int) -> None:
        """Mux a packet of the output stream made for input stream ``idx``, its timestamps made increasing in the
        output's own time base (two times that differ in the input's can meet in a coarser one: a part's moved
        AAC, stored in Matroska's milliseconds, on AVI's one tick per 1024 samples)."""
        o = pkt.stream
        _rescale(pkt, o.time_base)
        fix = self.fixups.get(o.index)
        if fix is None:
            fix = self.fixups[o.index] = TimestampFixup(f"{o.type} stream #{idx}", self.out.format.flags)
        fix(pkt)
        if o.type == "subtitle" and self._hold_subtitle(pkt, idx):
            return
        if self._chapters and pkt.pts is not None and pkt.time_base and o.type == "audio":  # (a subtitle may run on)
            self._end = max(self._end, (pkt.pts + (pkt.duration or 0)) * Fraction(pkt.time_base))
        if o.type == "audio" and idx not in self.transcode and pkt.pts is not None and pkt.time_base:
            self._mind_gap(pkt, idx)
        self.out.mux(pkt)
        self._muxed[o.index] = self._muxed.get(o.index, 0) + 1

    # a copied subtitle waits (at most this long past its start, s) for the picture to reach its end, so that a run
    # ended early (--max-frames, Ctrl-C) ends it with the picture; what the muxers themselves buffer (FFmpeg's
    # max_interleave_delta), and what a cue usually lasts
    SUBTITLE_WAIT = 10

    def _hold_subtitle(self, pkt: av.Packet, idx: int) -> bool:
        """Whether a subtitle packet (its times final) waits for the picture to pass its end (``_release``):
        one with a length, in Matroska/WebM or a seekable MP4/MOV, whose muxers take a packet a few seconds late.
        Once a stream has packets waiting, every later packet of it waits too, in order (one of no length muxed at
        once went out before an earlier held one, and FFmpeg refused the stream's time going back)."""
        if not self._waits:
            return False
        if not pkt.duration or pkt.pts is None or not pkt.time_base:
            at = pkt.stream.index
            if not any(q.stream.index == at for q, _ in self._sub_wait):
                return False
        self._sub_wait.append((pkt, idx))
        self._release_subtitles()
        return True

    @property
    def _waits(self) -> bool:
        return self.out.format.name in ("matroska", "webm") or (self._track_ends_by_dts and self.path != "-")

    def _release_subtitles(self, end: Fraction | None = None, final: bool = False) -> None:
        """Mux the waiting subtitles the picture has passed (or waited SUBTITLE_WAIT for); ``final``: all of them,
        each cut at ``end`` (the picture's end, the run ended early) where given."""
        while self._sub_wait:
            pkt, idx = self._sub_wait[0]
            if pkt.pts is not None and pkt.time_base:  # (one of no time only waited its turn)
                tb = Fraction(pkt.time_base)
                start, stop = pkt.pts * tb, (pkt.pts + (pkt.duration or 0)) * tb  # (no length: it ends where it starts)
                if not final and stop > self._video_end and self._video_end - start < self.SUBTITLE_WAIT:
                    return
            self._sub_wait.popleft()
            if final and end is not None and pkt.pts is not None and pkt.time_base:
                if start >= end:
                    continue  # begins after the picture's end
                if stop > end:
                    pkt.duration = max(1, math.ceil(end / tb) - pkt.pts)
            self.out.mux(pkt)
            self._muxed[pkt.stream.index] = self._muxed.get(pkt.stream.index, 0) + 1

    def _mind_gap(self, pkt: av.Packet, idx: int) -> None:
        """A hole in a copied audio track (a recorder's dropout; in AVI, a late start too) where the container
        times audio by its samples, not its timestamps (``sample_timed``: AVI; PCM in MOV/MP4): it closed up, and
        all that followed played early (0.5 s after a 0.5 s hole), in silence. Linear PCM gets the silence it held;
        other audio, and a hole longer than FILL_MAX (a broken timestamp: 10 minutes of silence made a 1 s clip
        115 MB), is said."""
        o = pkt.stream
        cc = o.codec_context
        if not sample_timed(self.out.format.name, cc.name):  # (most outputs: nothing to track)
            return
        tb = Fraction(pkt.time_base)
        end = self._audio_next.get(o.index, 0 if self._avi else None)
        self._audio_next[o.index] = pkt.pts + pkt.duration if pkt.duration else None  # (no length: nothing known)
        if end is None or (pkt.pts - end) * tb <= AudioTranscode.GAP:
            return
        step = max(1, round(Fraction(4096) / (tb * cc.sample_rate))) if cc.sample_rate else 0  # 4096 samples a packet
        if step and pcm_silence(cc.name, 1, cc.channels) is not None and (pkt.pts - end) * tb <= FILL_MAX:
            for t in range(end, pkt.pts, step):
                n = min(step, pkt.pts - t)
                fill = av.Packet(pcm_silence(cc.name, round(n * tb * cc.sample_rate), cc.channels))
                fill.pts = fill.dts = t
                fill.duration, fill.time_base, fill.stream = n, pkt.time_base, o
                self.out.mux(fill)
            self._filled.setdefault(idx, []).append((end * tb, (pkt.pts - end) * tb))
        elif o.index not in self._muxed:  # AVI: a copied track that starts late plays from 0 (said)
            self._late_audio[idx] = pkt.pts * tb
        else:
            self._holes.setdefault(idx, []).append((end * tb, (pkt.pts - end) * tb))

    def _sane_dts(self, pkt: av.Packet) -> None:
        """x265 (FFmpeg's wrapper) can give a clip shorter than its reorder delay (1-2 frames, a fine time base)
        a dts of about -2**46 (a delay it never set): MP4/MOV refused the packet ('pts/dts pair unsupported') after
        the work. Such a dts, more than a day before its pts, becomes the packet's pts (no reordering); a real one
        can lag its pts by seconds (a VFR pause before a B-frame group)."""
        if pkt.pts is not None and pkt.dts is not None:
            if pkt.dts < pkt.pts - 86400 / Fraction(self.time_base):
                pkt.dts = pkt.pts if self._enc_dts is None else max(self._enc_dts + 1, pkt.pts)
            self._enc_dts = pkt.dts

    def _fill_to(self, pts: int) -> None:
        """Y4M has no times (a frame per tick): the frame before a longer gap in a variable-rate video is repeated
        on every tick until ``pts`` (a 1 s hold was squeezed out, a 12.5 fps stretch played twice as fast); its
        encoder (rawvideo) takes each at once, so one frame object serves them all."""
        if self._per_tick != "Y4M" or self._shown is None:
            return
        prev = self._shown.pts
        for t in range(prev + 1, pts):
            self._shown.pts = t
            self._encode(self._shown)
            self.repeated += 1
        self._shown.pts = prev

    def _encode(self, frame: av.VideoFrame | None) -> None:
        t0 = time.perf_counter()
        if self._avi and frame is not None:
            self._fed.append(frame.pts)
        for pkt in self.vstream.encode(frame):
            if self._avi and self._fed:
                # AVI stores no pts: a chunk's time is its place (its dts), and a reader times the k-th frame shown
                # with the k-th earliest. The encoder's dts are its pts shifted by the reorder delay in frames,
                # which for a variable-rate source are other ticks than the frames' own (63 of 68 frames of a VFR
                # AVI landed up to 0.4 s late with x264's B-frames): the k-th packet takes the k-th frame's time
                # (the muxer's own shift is off for a lead under a tick, see __init__)
                if self._dts_shift is None:
                    self._dts_shift = -min(0, self._fed[0])
                pkt.dts = pkt.pts = self._fed.popleft() + self._dts_shift
            self._sane_dts(pkt)
            if (d := self._durations.pop(pkt.pts, None)) is not None and pkt.time_base:
                # the frame's own length (encoders give every packet 1/rate): a VFR source's, and the last
                # frame's, which is how long the video lasts (a GIF's 3 s hold became 0.82 s)
                pkt.duration = exact_ticks(Fraction(d) * Fraction(self.time_base) / Fraction(pkt.time_base))
            self.bytes_hint += pkt.size
            if not self._track_ends_by_dts:
                self.out.mux(pkt)
                continue
            # MP4/MOV end a track at its last packet in decode order (dts + duration): with B-frames that is not
            # the last frame shown, and the last frame's hold was lost (a GIF's 2 s hold: the MP4 lasted 1.0 s, the
            # MKV 3.0 s). Each packet waits for the next; the last is made to reach the end of the last frame
            if pkt.pts is not None and pkt.duration:
                self._shown_end = max(self._shown_end or 0, pkt.pts + pkt.duration)
            if self._delay is None and pkt.pts is not None and pkt.dts is not None:
                self._delay = pkt.pts - pkt.dts  # the edit list shows the track from its first pts
            if self._held is not None:
                self.out.mux(self._held)
            self._held = pkt
        if frame is None and self._held is not None:
            last, self._held = self._held, None
            end = None if self._shown_end is None else self._shown_end - (self._delay or 0)  # in dts terms
            if last.dts is not None and end is not None and end > last.dts + last.duration:
                last.duration = end - last.dts
            self.out.mux(last)
        if self.stats is not None:
            self.stats.add("encode", time.perf_counter() - t0, 1 if frame is not None else 0)
            self.stats.set_encoded(self.frames, self.bytes_hint)

    def run(self) -> None:
        try:
            while True:
                item = self.queue.get()
                if isinstance(item, EndOfVideo):
                    break
                if isinstance(item, PacketItem):
                    self._copy(item)
                    continue
                fr = self._frame(item)
                if fr is not None:  # (None: an AVI tick already taken, see _frame)
                    self.frames += 1
                    self._fill_to(fr.pts)
                    self._encode(fr)
                    self._shown = fr
                    if self._sub_wait:
                        self._release_subtitles()
            if self._encodes:  # the encoder's lookahead: most of the time with slow presets
                self._encode(None)
            for idx, t in self.transcode.items():  # the audio decoders' and encoders' last samples
                for out_pkt in t.encode(None):
                    self._mux_copy(out_pkt, idx)
            for idx in self.cues:  # the cues still on screen at the end
                self._mux_cues(idx, None, self.copy_map[idx])
            for idx, edit in self._bitmaps.items():  # a PGS display set left unfinished, DVD's last subpicture
                for q in edit.feed(None, self.warn, idx, self._video_end):
                    q.stream = self.copy_map[idx]
                    self._mux_copy(q, idx)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self.error = e
            # keep draining so the producer never blocks on a dead writer
            try:
                while True:
                    self.queue.get(timeout=0.5)
            except queue.Empty:
                pass

    def close(self, cut: bool = False) -> None:
        """Finish the file; ``cut``: the run ended early (Ctrl-C, --max-frames), and the chapters end with it (a
        10-frame try of a film kept its 40 chapters, 39 past the end)."""
        t0 = time.perf_counter()
        if self.error is None:
            try:  # the subtitles still waiting, cut with the picture where the run ended early
                self._release_subtitles(self._video_end if cut else None, final=True)
            except Exception as e:  # noqa: BLE001
                self.error = e
        # (nothing written, the header neither: a run that failed before its first frame is said by the run; the
        # chapters' "Container is not open" came before that one line)
        if self._chapters and self.error is None and (self.frames or any(self._muxed.values())):
            chapters = self._chapters
            if cut:
                chapters = [ch for ch in trim_chapters(chapters, Window(Fraction(0), self._end, Fraction(0), True))
                            if ch["end"] > ch["start"]]
            try:
                self.out.set_chapters(chapters)
            except Exception as e:  # noqa: BLE001
                self.warn(f"warning: chapters not copied: {e}")
        try:
            with ffmpeg_errors():
                self.out.close()
        except BaseException as e:  # noqa: BLE001
            if self.error is None:
                self.error = e if is_disk_full(e) or not isinstance(e, av.error.FFmpegError) else OutputError(
                    f"FFmpeg could not finish {self.shown}: {ffmpeg_reason(e)}")
        if self.stats is not None:
            self.stats.add("encode", time.perf_counter() - t0, 0)

    def lost_facts(self) -> list[str]:
        """What the finished file lost of the input's streams without a word from the muxer, read back from it:
        a language, a title, a disposition (default, forced, commentary...) the container has no place for
        (MPEG-TS keeps no titles, AVI no languages, MOV no commentary flag, nor a language outside its Macintosh
        codes), or an empty track it left out (MP4); the upscaled video's too. Nothing for
        stdout or a failed run."""
        if self.path == "-" or self.error is not None:
            return []
        try:
            with av.open(self.path) as back:
                got = [(s.type, dict(s.metadata or {}), s.disposition) for s in back.streams
                       if s.index != self._vindex]
                video = (dict(back.streams[self._vindex].metadata or {}), back.streams[self._vindex].disposition)
                have = {k.lower() for k in back.metadata}
        except (av.error.FFmpegError, OSError, IndexError):
            return []
        fmt = self.out.format.name
        main = main_video(self._inp)
        moved = self._apple_tags(self._inp.metadata)  # (carried under the muxer's own key)
        tags = [k for k in user_tags(self._inp.metadata) if k.lower() not in have and moved.get(k) not in have]
        # (MOV/MP4 could hold any tag, a phone's com.apple.* location too, but FFmpeg's muxer writes only those it
        # has an atom for; the formats that keep none are said at the start)
        why = (f"FFmpeg's {fmt} muxer writes no atom for" if fmt in ("mov", "mp4", "ipod") else f"{fmt} can't hold")
        notes = [f"the input's container tag(s) {', '.join(tags)}: {why} them; lost (.mkv keeps them)"
                 ] * bool(tags and fmt not in NO_CONTAINER_TAGS)
        notes += [f"video stream #{main.index}: its {lost} can't be held in {fmt}; lost (.mkv keeps them)"
                  for lost in [", ".join(self._lost(main, *video, MAIN_DISPOSITIONS))] if lost]
        for kind in ("audio", "subtitle", "video", "data"):  # (attachments, chapter and timecode tracks are extra)
            made = [(o, i) for o, i, k in self._layout if k == kind]
            back_kind = [(md, d) for k, md, d in got if k == kind]
            if len(back_kind) < len(made):  # left out: those that had no packet (MP4 writes no empty track)
                empty = [i for o, i in made if not self._muxed.get(o)]
                if len(back_kind) != len(made) - len(empty):
                    continue  # an unexpected shape: no guessing
                notes += [f"{kind} stream #{i} has no packet (an empty track) and {fmt} leaves empty tracks out"
                          for i in empty]
                made = [(o, i) for o, i in made if self._muxed.get(o)]
            elif len(back_kind) > len(made):  # a stream the muxer added (MP4's chapter text track): no guessing
                continue
            for (_, i), (md, disposition) in zip(made, back_kind, strict=True):
                src = self._inp.streams[i]
                if lost := self._lost(src, md, disposition):
                    notes.append(f"{kind} stream #{i}: its {', '.join(lost)} can't be held in {fmt}; lost (.mkv "
                                 "keeps them)")
                if kind == "subtitle" and disposition & _D.default and not src.disposition & _D.default:
                    # FFmpeg's MOV/MP4 muxer enables the first track of a kind when none is default: no way out
                    notes.append(f"subtitle stream #{i} is not a default track, but {fmt} marks it default (its muxer "
                                 "enables the first subtitle track when none is): players may show it (.mkv keeps "
                                 "it off)")
        return notes

    @staticmethod
    def _lost(src: Any, md: dict[str, str], disposition: Any, flags: tuple[Any, ...] = ()) -> list[str]:
        """What of ``src``'s language, title, dispositions (``flags``, default KEPT_DISPOSITIONS) and other tags
        its copy, read back as ``md`` and ``disposition``, does not hold."""
        kept = {"language": {md.get("language"), ISO639_OTHER.get(md.get("language") or "")},
                # MP4 reads a track's title back as its "name"
                "title": {md.get("title"), md.get("name"), md.get("handler_name")}}
        given = carried_tags(src.metadata, stats=True)  # (an MP4 track's "name" is its title)
        lost = [f"{key} {given[key]!r}" for key in ("language", "title")
                if given.get(key) and given[key] not in kept[key] and not (key == "language" and given[key] == "und")]
        lost += [f"{flag.name.replace('_', ' ')} flag" for flag in flags or KEPT_DISPOSITIONS
                 if src.disposition & flag and not disposition & flag]
        have = {k.lower() for k in md}
        tags = [k for k in given if k.split("-")[0].upper() not in NOT_NAMED_TAGS and k.lower() not in have]
        return lost + [f"tag(s) {', '.join(tags)}"] * bool(tags)

    def fixup_notes(self) -> list[str]:
        fmt = self.out.format.name
        rate = f"1/{float(1 / Fraction(self.time_base)):g} s" if self.time_base else "one tick"
        why = {"AVI": "as ffmpeg does, keeping the sound in time (.mkv or .mp4 keep every frame)",
               "Y4M": "as ffmpeg's constant-rate output does",
               "MPEG-2 video": "as ffmpeg does (libx264 or libx265 keep every frame)"}.get(self._per_tick or "", "")
        what = [f"{self.dropped} frame(s) of the variable-rate input that came sooner than that after the one "
                "before were left out"] * bool(self.dropped) + [
            f"{self.repeated} frame(s) were repeated where frames are further apart, so that they keep their times"
            ] * bool(self.repeated)
        return [f"{self._per_tick} holds one frame per {rate} (the video's average rate): {'; '.join(what)}, "
                f"{why}"] * bool(what) + [
            str(f) for f in self.fixups.values() if f.count] + [
            f"audio stream #{i}: {t.damaged} damaged packet(s) could not be decoded for re-encoding; skipped"
            for i, t in self.transcode.items() if t.damaged] + [
            f"audio stream #{i}: {t.gaps} gap(s) in the sound were filled with silence when it was re-encoded "
            "(timing kept)" for i, t in self.transcode.items() if t.gaps] + [
            f"audio stream #{i} starts {float(t):.2f} s into the video, which AVI can't hold (its audio has no start "
            f"time): it plays {float(t):.2f} s early (use .mkv or .mp4 to keep it in time)"
            for i, t in self._late_audio.items()] + [
            f"audio stream #{i}: {len(h)} gap(s) in the sound were filled with silence (the first: "
            f"{float(h[0][1]):.2f} s at {float(h[0][0]):.2f} s; {fmt} times a copied track by its samples, and what "
            "followed a gap played early)" for i, h in self._filled.items()] + [
            f"audio stream #{i} has {len(h)} gap(s) in its sound (the first: {float(h[0][1]):.2f} s at "
            f"{float(h[0][0]):.2f} s), which {fmt} can't hold in a copied track (it times audio by its samples): what "
            f"follows each gap plays that much early (use .mkv{' or .mp4' if self._avi else ''} to keep it in time)"
            for i, h in self._holes.items()]


class AudioTranscode:
    """An audio stream the output container can't hold as it is (AAC, AC-3, PCM in WebM; what a muxer refuses
    at add_stream, or at its header: MOV with Opus or FLAC), decoded and re-encoded into a codec it holds, so the
    sound is kept rather than dropped: a lossless source into FLAC or ALAC where the container takes one, else
    AAC, Opus, Vorbis, FLAC, AC-3 or MP2 (MPEG-PS), in that order. The decoded frames keep their own timestamps
    (PyAV's encoder rebases them and buffers to the encoder's frame size)."""

    LOSSLESS = ("flac", "alac", "truehd", "mlp", "wavpack", "tta", "ape")
    TARGETS = ("aac", "libopus", "libvorbis", "flac", "ac3", "mp2")

    # a gap in the source's audio longer than this is filled with silence (PyAV's encoder counts samples, not
    # times: without it the audio after a gap came early); shorter ones are time-base rounding
    GAP = Fraction(1, 50)

    def __init__(self, stream: Any, decoder: Any) -> None:
        self.stream = stream
        self.decoder = decoder
        self.damaged = 0
        self.gaps = 0
        self._next: Fraction | None = None  # where the next decoded sample belongs, in seconds

    def starts_at(self, t: Fraction) -> None:
        """The sound begins at ``t`` (AVI: 0), so a later first sample gets silence in front, as a gap does."""
        self._next = t

    @classmethod
    def add(cls, out: av.container.OutputContainer, s: Any) -> AudioTranscode | None:
        """The re-encoded stream in ``out`` for input audio stream ``s``, or None when no target fits."""
        src = s.codec_context
        if src is None or not src.sample_rate or not src.channels:
            return None
        lossless = src.name.startswith("pcm_") or src.name in cls.LOSSLESS
        fmt = out.format.name
        # the source's layout, else the usual one of its channel count (5.1(side), what FFmpeg calls DVD AC-3, is
        # refused by libopus and ALAC: 5.1, as ffmpeg's command line remaps it)
        # then, remixed (said: "5.1 (was 2.1)"), the layouts every target opens: 2.1, 4.0 and DVD's 5.0(side) AC-3
        # were dropped from .webm (libopus opens none of them), 7.1 PCM from .ts
        remix = (("5.1", "7.1") if src.channels <= 6 else ("7.1", "5.1")) if src.channels > 2 else ()
        layouts = list(dict.fromkeys(x for x in (src.layout.name, DEFAULT_LAYOUTS.get(src.channels), *remix, "stereo")
                                     if x and x != f"{src.channels} channels"))
        # lossless into FLAC, ALAC, else PCM (AVI, which mistimes FLAC), as deep as the source
        pcm = "pcm_s16le" if src.format is not None and src.format.bytes <= 2 else "pcm_s24le"
        for target in (("flac", "alac", pcm) if lossless else ()) + cls.TARGETS:  # each encoder looked up once
            try:
                enc = av.codec.Codec(target, "w")
            except Exception:  # noqa: BLE001 - not in this FFmpeg build
                continue
            if (fmt in AUDIO_ONLY and enc.name not in AUDIO_ONLY[fmt]) or enc.name in AUDIO_MISTIMED.get(fmt, ()):
                continue
            rates = enc.audio_rates
            rate = src.sample_rate if not rates or src.sample_rate in rates else (
                48000 if 48000 in rates else max(rates))
            lossless_target = target in ("flac", "alac", pcm)
            # the source's sample depth for a lossless target (ALAC defaults to 32-bit)
            depth = next((f for f in enc.audio_formats or [] if lossless_target and src.format is not None
                          and f.bytes == src.format.bytes and not f.name.startswith("flt")), None)
            o = next((o for o in (cls._stream(out, target, rate, x, depth, src.channels, lossless_target)
                                  for x in layouts) if o is not None), None)
            if o is None:
                continue
            o.metadata.update(carried_tags(s.metadata, stats=True))
            o.disposition = s.disposition
            return cls(o, src)
        return None

    @staticmethod
    def _stream(out: av.container.OutputContainer, target: str, rate: int, layout: str, depth: Any, channels: int,
                lossless: bool) -> Any:
        """``target``'s stream in ``out`` with ``layout``, when a probe in memory shows the encoder opens and the
        container takes it (else None)."""
        def make(container: Any) -> Any:
            o = container.add_stream(target, rate=rate)
            o.codec_context.layout = layout
            if depth is not None:
                o.codec_context.format = depth
            if not lossless:  # ~ transparent for these encoders at this rate, per channel pair
                o.codec_context.bit_rate = min(512_000, (96_000 if target == "libopus" else 128_000)
                                               * max(1, (channels + 1) // 2))
            return o

        if not header_takes(out.format.name, make, always=True):
            return None
        try:
            return make(out)
        except Exception:  # noqa: BLE001 - the probe took it: not expected; the next choice
            return None

    def describe(self) -> str:
        cc = self.stream.codec_context
        rate = f"{cc.bit_rate // 1000} kb/s" if cc.bit_rate else "lossless"
        src = self.decoder.layout.name
        # said where the channels were remixed (3 unlabelled channels into 5.1 too), not for a label alone
        remixed = cc.layout.nb_channels != self.decoder.layout.nb_channels
        said = src != cc.layout.name and (remixed or "channels" not in src)
        relabel = f", {cc.layout.name} (was {src})" if said else ""
        return f"{cc.name} {rate}{relabel}"

    def encode(self, pkt: av.Packet | None) -> list[av.Packet]:
        """The output packets for one input packet (None: flush the decoder, then the encoder)."""
        try:
            frames = self.decoder.decode(pkt)
        except av.error.FFmpegError:  # a damaged audio packet: the rest of the sound is still worth keeping
            self.damaged += 1
            frames = []
        out: list[av.Packet] = []
        for fr in frames:
            if fr.pts is not None and fr.time_base is not None:
                t = fr.pts * Fraction(fr.time_base)
                if self._next is not None and t - self._next > self.GAP:
                    quiet = _silence(fr, int(round((t - self._next) * fr.sample_rate)))
                    quiet.pts, quiet.time_base = int(round(self._next / fr.time_base)), fr.time_base
                    out += self.stream.encode(quiet)
                    self.gaps += 1
                self._next = t
            if self._next is not None:
                self._next += Fraction(fr.samples, fr.sample_rate)
            out += self.stream.encode(fr)
        if pkt is None:
            out += self.stream.encode(None)
        return out


def _silence(like: av.AudioFrame, samples: int) -> av.AudioFrame:
    """``samples`` of silence in the format, layout and rate of ``like`` (unsigned 8-bit silence is 128)."""
    import numpy as np

    fmt = like.format
    dtype = {"u8": np.uint8, "s16": np.int16, "s32": np.int32, "s64": np.int64, "flt": np.float32,
             "dbl": np.float64}[fmt.name.rstrip("p")]
    channels = like.layout.nb_channels
    shape = (channels, samples) if fmt.is_planar else (1, samples * channels)
    a = np.full(shape, 128 if fmt.name.startswith("u8") else 0, dtype=dtype)
    silent = av.AudioFrame.from_ndarray(a, format=fmt.name, layout=like.layout.name)
    silent.sample_rate = like.sample_rate
    return silent


def _rescale(pkt: av.Packet, time_base: Any) -> None:
    """``pkt``'s times in ``time_base``, rounded as FFmpeg's muxer rounds them (nearest, halves away from 0)."""
    if not time_base or not pkt.time_base or Fraction(pkt.time_base) == Fraction(time_base):
        return
    ratio = Fraction(pkt.time_base) / Fraction(time_base)

    def near(v: int) -> int:
        x = v * ratio
        return int(math.copysign(math.floor(abs(x) + Fraction(1, 2)), x))

    pts, dts, dur = pkt.pts, pkt.dts, pkt.duration
    pkt.time_base = time_base
    pkt.pts = None if pts is None else near(pts)
    pkt.dts = None if dts is None else near(dts)
    if dur:
        pkt.duration = near(dur)


class TimestampFixup:
    """What FFmpeg's muxing front end does with a copied stream whose dts doesn't increase: move it to just
    after the previous one (pts no earlier than dts), and count it so the summary can name the stream and time."""

    def __init__(self, label: str, fmt_flags: int) -> None:
        self.label = label
        self.strict = not (fmt_flags & 0x20000)  # AVFMT_TS_NONSTRICT: equal dts allowed
        self.last: int | None = None
        self.count = 0
        self.first_time = 0.0
        self.worst = 0.0

    def __call__(self, pkt: av.Packet) -> None:
        if pkt.dts is None:
            return
        if self.last is not None:
            floor = self.last + 1 if self.strict else self.last
            if pkt.dts < floor:
                tb = float(pkt.time_base) if pkt.time_base else 0.0
                if not self.count:
                    self.first_time = pkt.dts * tb
                self.count += 1
                self.worst = max(self.worst, (floor - pkt.dts) * tb)
                if pkt.pts is not None and pkt.pts < floor:
                    pkt.pts = floor
                pkt.dts = floor
        self.last = pkt.dts

    def __str__(self) -> str:
        return (f"{self.label}: {self.count} packet{'s' if self.count != 1 else ''} with non-increasing timestamps "
                f"from {self.first_time:.2f} s moved later by up to {self.worst * 1000:.0f} ms (as ffmpeg does)")


def hdr10_params(codec: str, mastering: bytes, light: bytes) -> tuple[str, str]:
    """(option name, value) that hands HDR10 mastering display + content light level to the encoder, or
    ("", "") when it can't take them through PyAV (NVENC reads them only from frame side data)."""
    md = struct.unpack("<22i", mastering) if len(mastering) == 88 else None
    cll = struct.unpack("<2I", light) if len(light) == 8 else None

    def q(i: int) -> float:
        return md[i] / md[i + 1] if md and md[i + 1] else 0.0

    # FFmpeg stores the primaries as R, G, B (x, y rationals: 4 ints each); the encoders take G, B, R
    order = [(4, "G"), (8, "B"), (0, "R")]
    if codec in ("libx265", "libx264"):
        parts = []
        if md and md[20]:
            xy = "".join(f"{n}({round(q(i) * 50000)},{round(q(i + 2) * 50000)})" for i, n in order)
            wp = f"WP({round(q(12) * 50000)},{round(q(14) * 50000)})"
            lum = f"L({round(q(18) * 10000)},{round(q(16) * 10000)})" if md[21] else "L(0,0)"
            parts.append(f"{'master-display' if codec == 'libx265' else 'mastering-display'}={xy}{wp}{lum}")
        if cll:
            parts.append(f"{'max-cll' if codec == 'libx265' else 'cll'}={cll[0]},{cll[1]}")
        return ("x265-params" if codec == "libx265" else "x264-params"), ":".join(parts)
    if codec == "libsvtav1":
        parts = []
        if md and md[20]:
            xy = "".join(f"{n}({q(i):.4f},{q(i + 2):.4f})" for i, n in order)
            lum = f"L({q(18):.4f},{q(16):.4f})" if md[21] else "L(0,0)"
            parts.append(f"mastering-display={xy}WP({q(12):.4f},{q(14):.4f}){lum}")
        if cll:
            parts.append(f"content-light={cll[0]},{cll[1]}")
        return "svtav1-params", ":".join(parts)
    return "", ""


# a copied stream's dispositions a reader acts on (which track plays, forced subtitles, commentary): named when
# the output container loses them
_D = av.stream.Disposition
KEPT_DISPOSITIONS = (_D.default, _D.forced, _D.comment, _D.hearing_impaired, _D.visual_impaired, _D.dub,
                     _D.original, _D.lyrics, _D.karaoke, _D.captions, _D.descriptions)
# the upscaled video's, named when lost: not "default" (the one video there is: no choice for a player to make)
MAIN_DISPOSITIONS = tuple(f for f in KEPT_DISPOSITIONS if f != _D.default)
# muxers that write a video stream's display matrix (a phone's rotation): MOV/MP4's track matrix, Matroska's
# projection; MPEG-TS, AVI, NUT... drop it without a word
DISPLAY_MATRIX = ("mov", "mp4", "ipod", "3gp", "3g2", "ismv", "f4v", "psp", "matroska", "webm")
SAR_IN_BITSTREAM = ("libx264", "libx265", "h264", "hevc", "h264_nvenc", "hevc_nvenc")
# encoders that code an interlaced picture as fields when asked (the interlaced_dct flag and each frame's field flags,
# set by setfield), measured by reading the field flag back: libx264, MPEG-2/MPEG-4 part 2, ProRes (both; "prores"
# is prores_aw), FFV1 (frame flags only). Not DNxHR (FFmpeg refuses interlaced DNxHR), nor libx265 (x265 takes
# each frame as one field: a field-coded output needs separated fields), VP9 or AV1 (no field coding)
FIELD_CODERS = ("libx264", "mpeg2video", "mpeg4", "prores_ks", "prores_aw", "prores", "ffv1")
# containers whose muxer takes any audio stream but holds only these readably (MPEG-TS wrote PCM as a "vvc" video
# stream and FLAC as data): any other audio is re-encoded
# audio a muxer takes and writes so that it reads back mistimed: re-encoded instead (AVI's FLAC at 96 kHz 5.1:
# 2 s of sound read back as 0.26 s)
AUDIO_MISTIMED = {"avi": ("flac",)}
AUDIO_ONLY = {"mpegts": ("mp2", "mp3", "aac", "aac_latm", "ac3", "eac3", "dts", "truehd", "opus", "s302m")}
# containers whose muxer takes any video stream but holds only these as video (MPEG-TS wrote FFV1, AV1, VP9 and
# a cover's MJPEG as a "data" stream no player shows, and the run ended well): other video is refused or dropped
VIDEO_ONLY = {"mpegts": ("h264", "hevc", "vvc", "mpeg1video", "mpeg2video", "mpeg4", "vc1", "dirac", "cavs", "avs2",
                         "avs3")}
# containers whose muxer takes any subtitle stream but holds only these (the rest would be written unreadable)
BITMAP_SUBTITLES_ONLY = {"mpegts": ("dvb_subtitle", "dvb_teletext"),  # (and PGS in .m2ts: Writer._m2ts)
                         **{f: ("dvd_subtitle",) for f in ("mpeg", "vob", "dvd", "svcd")}}


def _holds(out: av.container.OutputContainer, codec: str) -> bool:
    """Whether FFmpeg's muxer for ``out`` takes ``codec`` (its own codec table; False when unsure)."""
    try:
        c = av.codec.Codec(codec, "w")
        if out.format.name in VIDEO_ONLY:  # (no codec table: its supported_codecs lists only the defaults)
            return bool(codec_available(codec)) and c.canonical_name in VIDEO_ONLY[out.format.name]
        return bool(codec_available(codec)) and c.name in out.supported_codecs
    except Exception:  # noqa: BLE001
        return False


def _refused(e: Exception) -> bool:
    """Whether PyAV's add_stream refused a codec because FFmpeg says the container can't hold it."""
    return isinstance(e, ValueError) and "format does not support" in str(e)


def _stream_label(s: Any) -> str:
    md = s.metadata or {}
    return md.get("filename") or md.get("title") or s.type


def describe_output_error(path: str, e: BaseException) -> str:
    """One line for an OSError met writing ``path`` (also the scale-out's early probe of OUT's folder)."""
    if is_disk_full(e):
        return "disk full while writing to stdout" if path == "-" else f"disk full while writing {path}"
    no = getattr(e, "errno", None)
    if no in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"can't write {path}: permission denied"
    if no == errno.ENOENT:
        if Path(path).parent.is_dir():
            return f"can't write {path}: no file can be created there"
        return f"can't write {path}: folder does not exist"
    return f"can't write {path}: {getattr(e, 'strerror', None) or e}"
