"""Demux + decode on its own thread into a bounded queue; frames stay YUV planes (no swscale to RGB).

Items put on the queue, in container order:
- ``VideoItem``: one decoded frame as planes (numpy views of the frame's buffers, or CUDA tensors via
  DLPack with NVDEC), with its pts, time base and colour info; for NVDEC frames ``keep`` is the CUDA
  event after which the planes are ready;
- ``PacketItem``: a packet of a stream that is copied (audio, subtitles, data), flush packets dropped;
- ``EndItem``: the end, with what went wrong (damaged spans, truncation) if anything.
"""

from __future__ import annotations

import collections
import math
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.codec.codec import Capabilities
from av.codec.context import ThreadType

from ..errors import PsrError
from ..names import image_sequence
from . import sws
from .color import PLANAR, SEMIPLANAR, ColorInfo, decide_color
from .continuity import Continuity, video_rate
from .display_order import DisplayOrder, sorts_times
from .trim import SEEK_PAD, SEEK_RETRY, PacketCut, Window, container_origin, seek, worth_seeking

# --start/--end
PROBE_SECONDS = 60  # how far into a file FFmpeg looks for a track it found no parameters for (``unprobed``)
INTERLEAVE = 30.0  # s: how far past a part's end other streams' packets may still come (muxers interleave closer)
SUBTITLE_LOOKBACK = 30  # s: how long before a part a subtitle still shown when it starts may begin


class InputError(PsrError):
    """The input can't be read as a video (missing, not a video, no video stream)."""


@dataclass
class VideoItem:
    index: int
    pts: int | None
    time_base: Fraction
    planes: tuple[Any, ...]  # Y[, U, V] 2-D arrays (numpy uint8/uint16 or torch on CUDA)
    bits: int
    shift_w: int
    shift_h: int
    keep: Any = None  # the av.VideoFrame the planes point into
    # the frame's own pts (its packet's) when ``pts`` was guessed otherwise (decode-order times): what a
    # scale-out plan cuts by
    own_pts: int | None = None
    duration: int = 0  # how long the frame is shown (``time_base`` ticks; 0 = not said): a GIF's 3 s last frame

    @property
    def time(self) -> float:
        return float(self.pts * self.time_base) if self.pts is not None else math.nan


@dataclass
class PacketItem:
    packet: av.Packet


@dataclass
class Damage:
    """A stretch of input that did not decode: damaged packets, or a hole the demuxer skipped."""

    start: float
    end: float
    packets: int = 0  # packets the decoder rejected
    missing: int = 0  # frames lost in a skipped stretch (from the frame rate)
    skipped: int = 0  # bytes the demuxer skipped

    def __str__(self) -> str:
        what = []
        if self.skipped:
            what.append(f"{self.skipped} bytes skipped")
        if self.packets:
            what.append(f"{self.packets} damaged packet{'s' if self.packets != 1 else ''}")
        if self.missing:
            what.append(f"~{self.missing} frame{'s' if self.missing != 1 else ''} missing")
        return f"{self.start:.2f}-{self.end:.2f} s" + (f" ({', '.join(what)})" if what else "")


@dataclass
class EndItem:
    frames: int = 0
    damaged: list[Damage] = field(default_factory=list)
    truncated: str = ""
    error: BaseException | None = None
    stopped: bool = False
    resized: str = ""  # the first mid-stream size change, if any


@dataclass
class FirstFrame:
    """What only a decoded frame tells: display rotation, interlacing, HDR10 side data, where it was decoded."""

    rotation: int = 0  # degrees counter-clockwise (display matrix)
    interlaced: bool = False
    field_order: int = 0  # FFmpeg AVFieldOrder (0 unknown, 1 progressive, 2 tt, 3 bb, 4 tb, 5 bt)
    mastering: bytes = b""  # AVMasteringDisplayMetadata
    light_level: bytes = b""  # AVContentLightMetadata
    hw_decoded: bool = False  # by the hardware decoder (a CUDA frame, or one it handed back as NV12/P010)
    lost: tuple[str, ...] = ()  # what rides in the video bitstream and no re-encode carries (captions, DV, HDR10+)


@dataclass
class StreamInfo:
    width: int
    height: int
    pix_fmt: str
    bits: int
    time_base: Fraction
    rate: Fraction | None
    frames: int
    duration: float | None
    color: ColorInfo
    codec: str


def open_input(path: str, fmt: str | None = None, hwaccel: str | None = None,
               warn: Any = None, gpu: int | None = None, fps: Fraction | None = None) -> av.container.InputContainer:
    """Open ``path`` ('-' = stdin) or raise InputError with one clear line.

    With ``hwaccel`` a failure to set up the hardware decoder falls back to software decoding (with a
    warning) when the input is a file. ``gpu``: the CUDA device index that consumes the frames; NVDEC
    decodes there and its frames stay on it (DLPack), else they are downloaded.
    """
    if fmt and fmt not in av.formats_available:
        raise InputError(f"unknown --input-format {fmt!r}; FFmpeg reads e.g. matroska, mov, mpegts, nut, "
                         "yuv4mpegpipe, rawvideo")
    if hwaccel:
        from av.codec.hwaccel import hwdevices_available

        kind = hwaccel.partition(":")[0]
        if kind not in hwdevices_available():
            raise InputError(f"unknown --hwaccel {hwaccel!r}; this FFmpeg has {', '.join(hwdevices_available())}")
    if (seq := image_sequence(path)) is not None:  # frames/f_%04d.png: FFmpeg's image2, at --fps (default 25)
        return _open_sequence(path, seq[0], fps)
    if hwaccel and path != "-":
        try:
            return _open(path, fmt, hwaccel, gpu)
        except InputError:
            if not Path(path).exists():
                raise
            c = _open(path, fmt, None)  # the file opens: the hardware decoder is what failed
            if warn is not None:
                warn(f"warning: --hwaccel {hwaccel} can't start here (no usable {kind} device or driver for "
                     f"{main_video(c).codec_context.name}); decoding in software")
            return c
    return _open(path, fmt, hwaccel, gpu)


def hwaccel_args(hwaccel: str, gpu: int | None) -> dict[str, Any]:
    """``HWAccel`` arguments for ``--hwaccel`` (``cuda`` or ``cuda:N``) feeding CUDA device ``gpu`` (or None).

    NVDEC runs on the device the model runs on (not always GPU 0), and its surfaces stay there for
    DLPack only when a CUDA consumer exists.
    """
    kind, _, index = hwaccel.partition(":")
    device = index or (str(gpu) if kind == "cuda" and gpu is not None else None)
    owned = kind == "cuda" and gpu is not None
    return {"device_type": kind, "device": device, "allow_software_fallback": True, "is_hw_owned": owned}


def _open_sequence(path: str, first: int, fps: Fraction | None) -> av.container.InputContainer:
    """A numbered picture sequence as a video: FFmpeg's image2 demuxer from the sequence's ``first`` number (a
    render's 1001 too), ``fps`` frames a second."""
    rate = Fraction(fps) if fps else Fraction(25)
    options = {"start_number": str(first), "framerate": f"{rate.numerator}/{rate.denominator}"}
    try:
        c = av.open(path, "r", format="image2", options=options)
    except av.error.FFmpegError as e:
        raise InputError(f"can't open the picture sequence {path}: {_short(e)}") from None
    return _with_video(c, f"no pictures in the sequence {path}")


def _with_video(c: av.container.InputContainer, missing: str) -> av.container.InputContainer:
    """``c``, or InputError(``missing``) when it holds no video stream (closed). Cover art alone (an audio
    file's picture) is no video: upscaled as one, it was a one-frame video said to be truncated at 0 s."""
    if not c.streams.video:
        c.close()
        raise InputError(missing)
    if all(s.disposition & av.stream.Disposition.attached_pic for s in c.streams.video):
        c.close()
        raise InputError(f"{missing}, only cover art (an audio file's picture); to upscale the picture, save it "
                         "as one first (e.g. ffmpeg -i IN -an -c:v copy cover.jpg) and give that")
    return c


def _open(path: str, fmt: str | None, hwaccel: str | None, gpu: int | None = None) -> av.container.InputContainer:
    options: dict[str, str] = {}
    kwargs: dict[str, Any] = {}
    if hwaccel:
        from av.codec.hwaccel import HWAccel

        kwargs["hwaccel"] = HWAccel(**hwaccel_args(hwaccel, gpu))
    try:
        if path == "-":
            c = av.open(sys.stdin.buffer, "r", format=fmt, options=options, **kwargs)
        else:
            p = Path(path)
            if not p.exists():
                raise InputError(f"input not found: {path}")
            if p.is_dir():
                raise InputError(f"input is a directory, not a video: {path}")
            c = av.open(path, "r", format=fmt, options=options, **kwargs)
            # a track that begins past FFmpeg's first look: a file is looked at again, further (a pipe can't be
            # read twice, and looking further at once would hold a live pipe's start for up to a minute)
            if p.is_file() and any(unprobed(s) for s in c.streams):
                c.close()
                c = av.open(path, "r", format=fmt, options={**options, **DEEP_PROBE}, **kwargs)
    except InputError:
        raise
    except (av.error.InvalidDataError, av.error.EOFError) as e:
        raise InputError(f"not a readable video file: {path} ({_short(e)})") from None
    except av.error.FFmpegError as e:
        raise InputError(f"can't open {path}: {_short(e)}") from None
    return _with_video(c, f"no video stream in {path}")


# FFmpeg looks 5 s (and 5 MB) into a file for its streams' parameters; a broadcast's second sound track may begin
# later (a programme starting mid-recording): a minute, as ffmpeg's own -analyzeduration 60M would
DEEP_PROBE = {"analyzeduration": str(PROBE_SECONDS * 1_000_000), "probesize": str(256 << 20)}


def unprobed(s: Any) -> bool:
    """Whether FFmpeg found no parameters (no sample rate, no size) for an audio or video stream in what it read."""
    cc = s.codec_context
    return (s.type == "audio" and not (cc.sample_rate and cc.channels)) or (
        s.type == "video" and not (cc.width and cc.height))


def main_video(c: av.container.Container) -> av.video.stream.VideoStream:
    """The video stream psr2video upscales, chosen as ffmpeg chooses: not cover art (an attached picture),
    the most pixels, the first of equals (a file with only covers is refused when opened)."""
    vids = list(c.streams.video)
    films = [s for s in vids if not s.disposition & av.stream.Disposition.attached_pic] or vids[:1]
    return max(films, key=lambda s: (s.codec_context.width or 0) * (s.codec_context.height or 0))


def pixel_shape(s: av.video.stream.VideoStream) -> Fraction:
    """A video stream's sample aspect ratio (1 for square pixels or none said): the container's value first,
    as FFmpeg's own guess does, then the bitstream's."""
    sar = next((r for r in (getattr(s, "sample_aspect_ratio", None), s.codec_context.sample_aspect_ratio)
                if r and r.numerator > 0 and r.denominator > 0), None)
    return Fraction(sar) if sar is not None else Fraction(1)


def _short(e: BaseException) -> str:
    s = getattr(e, "strerror", None) or str(e)
    return s.splitlines()[0] if s else type(e).__name__


def sw_pix_fmt(c: av.container.InputContainer) -> str:
    """The stream's software pixel format, also under hwaccel.

    PyAV sets a hardware decoder's ``pix_fmt`` to the device format (``cuda``) before the first frame, and
    ``sw_format`` is known only once the decoder has set up its surfaces; the demuxer's parameters still
    say what the stream holds (bit depth, 4:2:0 / 4:4:4), so a file is probed once in software.
    """
    cc = main_video(c).codec_context
    pix = cc.pix_fmt
    if pix and pix != "cuda" and not getattr(cc, "is_hwaccel", False):
        return pix
    sw = getattr(cc, "sw_format", None)
    if sw is not None:
        return sw.name
    if pix and pix != "cuda":
        return pix
    name = getattr(c, "name", "")
    if name and Path(name).is_file():
        with av.open(name) as probe:
            got = main_video(probe).codec_context.pix_fmt if probe.streams.video else None
        if got:
            return got
    return "yuv420p"


def stream_info(c: av.container.InputContainer) -> StreamInfo:
    s = main_video(c)
    cc = s.codec_context
    pix = sw_pix_fmt(c)  # under hwaccel pix_fmt is "cuda": the stream holds sw_format
    end = video_end(c)
    dur = None if end is None else max(end - video_start(c), 0.0)
    rate = video_rate(s)
    # the container's count, else length x rate where the stream's average rate is its base rate (FFmpeg's
    # r_frame_rate, within 0.5 %: a 23.976 fps file timed in ms); where they differ it is VFR (or timed in a 1 ms
    # tick), and the product is no count
    even = bool(s.average_rate and s.guessed_rate) and abs(s.average_rate / s.guessed_rate - 1) < Fraction(1, 200)
    frames = s.frames or (int(round(dur * rate)) if dur and rate and even else 0)
    color = decide_color(cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc, cc.height or 0, pix,
                         cc.chroma_sample_location)
    return StreamInfo(cc.width, cc.height, pix, color.bits, s.time_base or Fraction(1, 1000), rate, frames, dur,
                      color, cc.name)


def video_end(c: av.container.InputContainer) -> float | None:
    """When the video stream ends (s): Matroska's per-track DURATION tag (its ``stream.duration`` is unset and
    the container's is the longest track's), else its start + duration, else (a file with no other stream) the
    container's end; None when unknown (then truncation can't be told from a normal end)."""
    s = main_video(c)
    tag = (s.metadata or {}).get("DURATION")
    if tag:
        try:
            h, m, sec = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(sec)
        except ValueError:
            pass
    if s.duration is not None and s.time_base:
        return video_start(c) + float(s.duration * s.time_base)
    if c.duration and len(c.streams) == 1:
        return (c.duration + (c.start_time or 0)) / 1e6
    return None


TRUNCATION_FLOOR = 0.05  # s: the least slack, for timestamp rounding (Matroska's milliseconds, MP4 time scales)


def truncation(c: av.container.InputContainer, last: float, frame_period: float = 0.0) -> str:
    """'input stops at ...' when the last frame (starting at ``last`` s) comes well before the end the file
    announces (truncated, or its tail lost), else ''.

    An intact stream ends one frame period after its last frame starts (that frame's duration), so more than
    two periods (never less than ``TRUNCATION_FLOOR``) is a lost tail. The period is the largest of what the
    caller saw (``frame_period``: the last frame's duration, the step to it from the frame before) and the
    stream's frame rate (FFmpeg's guessed rate first: AVI's average rate is its tick rate, 1000 fps), so a VFR
    stream's long last frame does not read as truncation."""
    end = video_end(c)
    if end is None:
        return ""
    s = main_video(c)
    rate = s.guessed_rate or s.average_rate
    period = max(frame_period, 1.0 / float(rate) if rate else 0.0)
    slack = max(2.0 * period, TRUNCATION_FLOOR) if period > 0 else 0.2
    if last + slack < end:
        return f"input stops at {last:.2f} s of {end:.2f} s (truncated or damaged)"
    return ""


def shown_length(c: av.container.InputContainer) -> float | None:
    """The video's length as a player counts it, and --start with it: its end less the container's start (MPEG-TS
    starts at 1.4 s); None when the end is unknown."""
    end = video_end(c)
    return None if end is None else end - float(container_origin(c))


def video_start(c: av.container.InputContainer) -> float:
    s = main_video(c)
    return float(s.start_time * s.time_base) if s.start_time is not None and s.time_base else 0.0


def frame_planes(frame: av.VideoFrame, size: tuple[int, int] | None = None,
                 color: ColorInfo | None = None) -> tuple[tuple, int, int, int, Any]:
    """(planes, bits, shift_w, shift_h, keep-alive) for a decoded frame, without converting to RGB.

    Planar YUV/grey frames are returned as numpy views of their buffers (no copy). CUDA (NVDEC) frames are
    handed over with DLPack. Anything else (RGB, palette, packed YUV) goes through swscale once, to the
    planar format, matrix and range of ``color`` (the stream's one colour decision, see ``decide_color``);
    a frame of another size is scaled to ``size``.
    """
    if color is None:
        color = decide_color(frame.colorspace, frame.color_range, frame.color_primaries, frame.color_trc,
                             frame.height, frame.format.name)
    name = frame.format.name
    planar_work = color.work_fmt in PLANAR
    if name != "cuda" and name not in SEMIPLANAR and (name not in PLANAR or planar_work and name != color.work_fmt):
        frame = sws.reformat(frame, **color.sws_args(), **_size_args(frame, size))
        name = frame.format.name
    elif size is not None and (frame.width, frame.height) != size:
        frame = sws.reformat(frame, width=size[0], height=size[1])
    if name == "cuda":  # NVDEC: hand the device planes over without a copy
        sw = frame.sw_format.name if frame.sw_format is not None else "nv12"
        if sw in DLPACK_CUDA:
            return cuda_planes(frame, sw)
        # PyAV exports only NV12/P010/P016 CUDA frames over DLPack (4:4:4 is yuv444p/yuv444p16le): download
        frame = sws.reformat(frame, format=sw)
        name = sw
    if name in SEMIPLANAR:
        bits, shift = SEMIPLANAR[name]
        dt = np.uint8 if bits == 8 else np.uint16
        y = _view(frame.planes[0], dt, frame.width)
        uv = _view(frame.planes[1], dt, 2 * ((frame.width + 1) // 2))
        if shift:
            y, uv = y >> shift, uv >> shift
        return (y, uv[:, 0::2], uv[:, 1::2]), bits, 1, 1, frame
    sw, sh, bits = PLANAR[name]
    dt = np.uint8 if bits == 8 else np.uint16
    planes = []
    for i, p in enumerate(frame.planes[:3]):
        w = frame.width if i == 0 else -(-frame.width >> sw)
        planes.append(_view(p, dt, w))
    return tuple(planes), bits, sw, sh, frame


def frame_rgb(frame: av.VideoFrame, color: ColorInfo | None = None) -> Any:
    """A decoded frame as a 1x3xHxW float32 torch tensor of RGB in [0, 1], converted as the video path converts
    it: ``frame_planes``, then ``color.yuv_to_rgb`` (the frame's matrix, range and chroma siting, the chroma
    interpolated). For what reads video outside the pipeline (stills, animations, the eval's pans, the training's
    compressed LR, the stress suite's frames): swscale's own YUV to RGB takes the nearest chroma sample, so
    colour edges came out blocky and the models were measured and trained on another picture than they get."""
    import torch

    from .color import yuv_to_rgb

    if color is None:
        color = decide_color(frame.colorspace, frame.color_range, frame.color_primaries, frame.color_trc,
                             frame.height, frame.format.name, frame.chroma_location)
    planes, bits, _, _, keep = frame_planes(frame, None, color)
    t = [torch.from_numpy(np.ascontiguousarray(p))[None] for p in planes]
    del keep  # the planes were views of its buffers: copied above
    with torch.no_grad():
        return yuv_to_rgb(t[0], *(t[1:3] if len(t) == 3 else (None, None)), bits, color)


def _size_args(frame: av.VideoFrame, size: tuple[int, int] | None) -> dict[str, int]:
    if size is None or (frame.width, frame.height) == size:
        return {}
    return {"width": size[0], "height": size[1]}


DLPACK_CUDA = ("nv12", "p010le", "p016le")  # what PyAV 19's VideoPlane.__dlpack__ exports from CUDA frames


def cuda_planes(frame: Any, sw: str) -> tuple[tuple, int, int, int, Any]:
    """NVDEC frame -> (Y, U, V) tensors on its GPU, copied out of the decoder's surface pool.

    - PyAV's ``VideoPlane.__dlpack__(stream=...)`` raises for any stream but None, and ``torch.from_dlpack``
      passes the consumer's stream for CUDA producers: take the capsule (``__dlpack__()``) instead.
    - FFmpeg copies each decoded picture into the frame on the CUDA device context's stream, which it leaves
      as the legacy default stream; the copy-out runs on that same stream, so it is ordered after the
      decode and the next decode into the recycled surface is ordered after it. The event recorded after it
      lets the device stage's own streams wait without blocking this thread.
    - The chroma plane comes as (H/2, W/2, 2) interleaved U, V: U = [..., 0], V = [..., 1].
    - P010/P016 keep the value in the high bits: shift down to the stream's bit depth.
    """
    import torch

    y = torch.from_dlpack(frame.planes[0].__dlpack__())
    uv = torch.from_dlpack(frame.planes[1].__dlpack__())
    bits, shift = SEMIPLANAR[sw]

    def copy_out(y: torch.Tensor, uv: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not shift:
            return y.clone(), uv[..., 0].clone(), uv[..., 1].clone()
        planes = tuple(p.to(torch.int32, copy=True) for p in (y, uv[..., 0], uv[..., 1]))  # the copy out of the surface
        for p in planes:
            p >>= shift
        return planes

    if not y.is_cuda:  # a software frame handed over the same way (stand-ins, CPU DLPack)
        return copy_out(y, uv), bits, 1, 1, None
    with torch.cuda.device(y.device), torch.cuda.stream(torch.cuda.default_stream(y.device)):
        planes = copy_out(y, uv)
        ready = torch.cuda.Event()
        ready.record()
    return planes, bits, 1, 1, ready


def _view(plane: Any, dt: Any, width: int) -> np.ndarray:
    itemsize = np.dtype(dt).itemsize
    a = np.frombuffer(plane, dt)
    return a.reshape(plane.height, plane.line_size // itemsize)[:, :width]


# a Matroska demuxer that meets garbage skips to the next cluster: packet positions jump by more than the
# few bytes of block and cluster headers between two packets
HOLE_BYTES = 1024
# a stream whose frames have come exactly every 1/rate so far and then skip this many frame times lost some
GAP_FRAMES = 2.5
JOIN_SLACK = 4  # video packets: how soon after a flagged packet a timestamp jump shows it was a join


class DamageLog:
    """Finds damage three ways: packets the demuxer or decoder flags, stretches the demuxer skipped (packet
    positions and frame timestamps, Matroska), and frames missing from a so-far regular sequence (MPEG-TS) where
    the demuxer saw the packets' continuity counter break beside it: a longer step alone is a VFR stream changing
    pace (a valid 25 fps / 5 fps capture failed as '~4 frames missing')."""

    def __init__(self, container: av.container.InputContainer, rate: Fraction | None) -> None:
        self.spans: list[Damage] = []
        names = container.format.name
        self.by_position = "matroska" in names or "webm" in names
        # broadcast captures are constant rate: a stretch of missing frames there is damage, where in other
        # containers it may be a VFR pause
        self.by_time = "mpegts" in names
        self.period = float(1 / rate) if rate else 0.0
        self._end_pos = -1
        self._hole = 0  # bytes skipped since the last video frame
        self._hole_from = math.nan  # media time where the skipped stretch began
        self._hole_to = math.nan  # and where reading resumed
        self._last_time = math.nan  # the latest packet's end time (any stream)
        self._last_frame = math.nan
        self._last_video = math.nan  # the latest video packet's pts
        self._regular = 0  # consecutive frame steps of exactly one period
        self._broken: list[float] = []  # times of the latest video packets the demuxer flagged (MPEG-TS: counter)

    def packet(self, pkt: av.Packet) -> None:
        """Every demuxed packet (all streams, in file order)."""
        t = float(pkt.pts * pkt.time_base) if pkt.pts is not None and pkt.time_base else math.nan
        video = pkt.stream.type == "video"
        if self.by_position and pkt.pos is not None and pkt.pos >= 0:
            if self._end_pos >= 0 and pkt.pos > self._end_pos + HOLE_BYTES:
                if not self._hole:
                    self._hole_from = self._last_time
                self._hole += pkt.pos - self._end_pos
                self._hole_to = t
            self._end_pos = max(self._end_pos, pkt.pos + pkt.size)
        if self._hole and video and t == t and self._last_video == self._last_video:
            # the first video packet after a skipped stretch: the frames between were in it
            missing = int(round((t - self._last_video) / self.period)) - 1 if self.period else 0
            if missing >= 1:
                self._add(Damage(self._last_video + self.period, t, missing=missing, skipped=self._hole))
                self._hole = 0
            else:
                self.flush()
        if self.by_time and video and t == t and pkt.is_corrupt:
            self._broken = [*self._broken[-7:], t]
        if t == t:
            dur = float(pkt.duration * pkt.time_base) if pkt.duration and pkt.time_base else 0.0
            self._last_time = t + dur if self._last_time != self._last_time else max(self._last_time, t + dur)
            if video:
                self._last_video = t if self._last_video != self._last_video else max(self._last_video, t)

    def frame(self, t: float) -> None:
        """Every decoded video frame's time, in output order (MPEG-TS: missing stretches of a regular stream)."""
        prev, self._last_frame = self._last_frame, t
        if t != t or prev != prev or not self.by_time:
            return
        step = t - prev
        if self._regular >= 4 and step > GAP_FRAMES * self.period > 0 and self._counter_broke(prev, t):
            self._add(Damage(prev + self.period, t, missing=int(round(step / self.period)) - 1))
        self._regular = self._regular + 1 if abs(step - self.period) < 0.02 * self.period else 0

    def _counter_broke(self, prev: float, t: float) -> bool:
        """Whether a video packet the demuxer flagged lies beside the step from ``prev`` to ``t``: lost packets
        break the continuity counter (flagging the packet being gathered, a frame or two before the gap; B-frames
        move it a few more), where a change of pace leaves it whole."""
        slack = JOIN_SLACK * self.period
        return any(prev - slack <= b <= t + slack for b in self._broken)

    def flush(self) -> None:
        """A skipped stretch that lost no video frame (or ended the file) is reported by packet times."""
        if self._hole:
            self._add(Damage(self._hole_from, self._hole_to, skipped=self._hole))
        self._hole = 0

    def bad_packet(self, t: float) -> None:
        self._add(Damage(t, t, packets=1))

    def _add(self, d: Damage) -> None:
        if d.start != d.start:
            d.start = d.end
        if d.end != d.end:
            d.end = d.start
        if self.spans and d.start - self.spans[-1].end < 1.0:
            last = self.spans[-1]
            last.start, last.end = min(last.start, d.start), max(last.end, d.end)
            last.packets += d.packets
            last.missing += d.missing
            last.skipped += d.skipped
        else:
            self.spans.append(d)


class PtsGuess:
    """A decoded frame's time as FFmpeg's best-effort timestamp (libavcodec's guess_correct_pts): the frame's
    own pts unless those go backwards more often than the packets' dts do. Files muxed without composition
    offsets (B-frames whose container pts are decode-order times) give display-order frames scrambled pts;
    their dts still increase, and that is what players and ffmpeg show."""

    def __init__(self, faulty_pts: int = 0, faulty_dts: int = 0) -> None:
        self.faulty_pts, self.faulty_dts = faulty_pts, faulty_dts  # a scale-out segment starts with the source's
        self.last_pts: int | None = None
        self.last_dts: int | None = None

    def __call__(self, pts: int | None, dts: int | None) -> int | None:
        if dts is not None:
            self.faulty_dts += self.last_dts is not None and dts <= self.last_dts
            self.last_dts = dts
        elif pts is not None:
            self.last_dts = pts
        if pts is not None:
            self.faulty_pts += self.last_pts is not None and pts <= self.last_pts
            self.last_pts = pts
        elif dts is not None:
            self.last_pts = dts
        if pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None):
            return pts
        return dts


@dataclass(frozen=True)
class SourceTiming:
    """What a scale-out segment's reader needs to time its frames as a single-process run over the whole source
    does: the source's dts of the cut's video packets (decode order, in ``time_base``) and the state of the
    source's best-effort timestamp guess (``PtsGuess``'s faulty pts / dts counts) going into the segment."""

    dts: tuple[int | None, ...]
    time_base: Fraction
    guess: tuple[int, int] = (0, 0)
    sorted: bool = False  # the source's frames are timed by ``DisplayOrder`` (AVI, decode-order MP4): the cut's too
    # the source's frame rate, given to every segment's encoder: a cut's own average (a short VFR tail: none)
    # made x264 pick another level for one segment, and the join refused it after all the work
    rate: Fraction | None = None


def exact_ticks(v: Fraction) -> int:
    """A time converted between time bases: exact when one refines the other, else the nearest tick, a half
    rounded up (Python's round() takes halves to even: frames half a tick apart, as a part's moved times into
    AVI's frame ticks, came out two on one tick)."""
    return int(v) if v.denominator == 1 else math.floor(v + Fraction(1, 2))


def fill_dts(packets: list[Any]) -> None:
    """dts for leading packets that have none (a B-frame stream's reorder delay): back from the last packet's dts
    by their durations (one tick where none is given), or their pts when no packet has a dts."""
    if not packets or packets[-1].dts is None:
        for q in packets:
            q.dts = q.pts
        return
    d = packets[-1].dts
    for q in reversed(packets[:-1]):
        d -= q.duration or 1
        q.dts = d


def guess_state(container: av.container.InputContainer, frames: int = 64) -> tuple[int, int]:
    """``PtsGuess``'s counts after the first ``frames`` frames of ``container``'s main video: a source whose
    frames' pts go back (decode-order times) has faulty_pts > faulty_dts, and a single-process run times its
    frames by dts from then on."""
    s = main_video(container)
    g = PtsGuess()
    try:
        for n, fr in enumerate(container.decode(s)):
            g(fr.pts, getattr(fr, "dts", None))
            if n + 1 >= frames:
                break
    except av.error.FFmpegError:  # damaged start: what was seen decides
        pass
    return g.faulty_pts, g.faulty_dts


class Reader(threading.Thread):
    """Demux every stream, decode the first video stream with frame threading, queue items (bounded).

    ``prime()``, called before ``start()``, decodes up to the first frame so that the writer can be set up with
    what only a frame tells (``FirstFrame``); what it read is queued first when the thread runs. Only packets of
    the streams in ``copy_ids`` (set before ``start()``) are queued.
    """

    def __init__(self, container: av.container.InputContainer, color: ColorInfo, depth: int = 8,
                 max_frames: int = 0, stop: threading.Event | None = None, stats: Any = None, threads: int = 0,
                 deinterlace: bool = False, warn: Any = None, timing: SourceTiming | None = None,
                 window: Window | None = None) -> None:
        super().__init__(name="psr2-reader", daemon=True)
        self.container = container
        self.vstream = main_video(container)
        self.color = color
        self.copy_ids: set[int] = set()
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.max_frames = max_frames
        self._abandoned = False  # the consumer is gone (``abandon``)
        self.stop = stop or threading.Event()
        self.stats = stats
        self.warn = warn or (lambda msg: None)
        cc = self.vstream.codec_context
        cc.thread_type = "AUTO"  # frame + slice threading
        cc.thread_count = threads
        self.size = (cc.width, cc.height) if cc.width and cc.height else None
        self.tb = self.vstream.time_base or Fraction(1, 1000)
        self.end = EndItem()
        self._rate = video_rate(self.vstream)  # (fixed for the stream: asked per untimed frame)
        self.damage = DamageLog(container, self._rate)
        self.first: FirstFrame | None = None
        self.continuity = Continuity(container)  # joined recordings' timestamps made to follow on (MPEG-TS/PS)
        self._demux = self.continuity.packets(container.demux())  # every stream: positions show skipped stretches
        self._held: list[Any] = []  # packets and frames read by prime()
        self._undated: dict[int, list[av.Packet]] = {}  # copied video stream -> its leading packets without dts
        self._fed: collections.deque[int | None] = collections.deque(maxlen=64)  # pts of the video packets fed
        self._deinterlace = Deinterlacer() if deinterlace else None
        self._n = 0
        self._last_good = 0.0
        self._latest = 0.0  # the latest frame time seen (s): with decode-order times the last frame isn't it
        self._period = 0.0  # the latest frame's duration, or the step to it from the one before (s)
        self._timed = False  # a frame with a timestamp has been seen
        self._pts_guess = PtsGuess(*(timing.guess if timing is not None else (0, 0)))
        # frames timed by their packets' times in display order: AVI; a file with decode-order times (decided at
        # the first frame); a scale-out cut as its source was decided
        self._sorts: bool | None = timing.sorted if timing is not None else (True if sorts_times(container) else None)
        self._order = self._display_order()
        # a scale-out cut (NUT) loses the source's dts and its demuxer derives others: the source's, per packet
        self._dts = [] if timing is None else [exact_ticks(d * timing.time_base / self.tb) if d is not None else None
                                               for d in timing.dts]
        self._vpackets = 0
        self._flag: tuple[float, int, int] | None = None  # a flagged packet: its time, jumps known then, packets since
        # --start/--end: the part kept, in the file's times; kept times move back by ``window.moved``
        self.window = window
        self._seeked = False
        self._reset_part()
        if window is not None and worth_seeking(container, self.vstream, window):
            # a pipe is read anyway (and a subtitle begun before the part could not be read back)
            self._seek(window.lo - SEEK_PAD)

    # --- before the thread starts ---------------------------------------------------------------------
    def prime(self) -> FirstFrame:
        """Read up to the first decoded frame (held for ``run``) and describe it. After a seek to a part (--start)
        whose first frame is past the part's start (a coarse index, an MPEG-TS seek landing mid-GOP), the reading
        starts again further back; where that never reaches it, the part begins at its first frame reached, said."""
        try:
            first = self._prime()
        except av.error.FFmpegError as e:  # nothing read yet: the input is the trouble, in one line
            name = str(self.container.name)
            piped = not Path(name).is_file()  # stdin, a named pipe
            mp4 = "mp4" in self.container.format.name.split(",")
            hint = ("; an MP4/MOV whose index (moov) is at its end can't be read from a pipe: give the file's name, "
                    "or remux it with ffmpeg -movflags +faststart" if piped and mp4 else "")
            shown = "stdin" if name in ("<stdin>", "-", "") else name
            raise InputError(f"can't read {shown}: {_short(e)}{hint}") from None
        for back in SEEK_RETRY:
            if not self._late():
                return first
            assert self.window is not None
            self._reset_part()
            self._seek(self.window.lo - back)
            if not self._seeked:  # it sought before: not expected; the reading goes on from where it is
                self.warn("note: seeking back to the part's start failed; the part begins at the first frame read")
                return self._prime()
            first = self._prime()
        if self._late():
            self.warn("note: seeking to the part's start landed after it, however far back (the file's index is "
                      "coarse); the part begins at the first frame reached")
        return first

    def _prime(self) -> FirstFrame:
        for pkt in self._demux:
            if pkt.stream is not self.vstream:
                self._packet(pkt, hold=True)
                continue
            frames = self._decode(pkt)
            self._held.extend(frames)
            if frames:
                self._first_pts = frames[0].pts
                self.first = first_frame(frames[0], self.vstream.codec_context)
                return self.first
        self.first = FirstFrame()
        return self.first

    # --- the thread ---------------------------------------------------------------------------------------
    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        end = self.end
        try:
            if self._read():
                self._drain()
                self._check_end()
        except av.error.FFmpegError as e:  # demuxer gave up (truncated/corrupt container)
            end.truncated = f"input unreadable after {self._last_good:.2f} s ({_short(e)})"
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            end.error = e
        self._settle_flag(final=True)
        self.damage.flush()
        end.frames = self._n
        end.damaged = self.damage.spans
        self._finish()

    def _read(self) -> bool:
        """Queue what prime() held, then demux and decode to the end; False when stopped or at --max-frames."""
        held, self._held = self._held, []
        if self.window is not None and self._seeked:
            held = self._lead_subtitles() + held
        for item in held:
            if isinstance(item, PacketItem):
                if item.packet.stream.index in self.copy_ids and not self._put(item):
                    return False
            elif not self._frame(item):
                return False
        for pkt in self._demux:
            if self.stop.is_set():
                self.end.stopped = True
                return False
            if pkt.stream is not self.vstream:
                if not self._packet(pkt):
                    return False
                if self._past_end and self._part_done():
                    break
                continue
            if self._past_end:  # the part's end came out of the decoder: the rest is only read for other streams
                self._note_reach(pkt)
                if self._part_done():
                    break
                continue
            t0 = time.perf_counter()
            for fr in self._decode(pkt):
                if self.stats is not None:
                    self.stats.add("decode", time.perf_counter() - t0)
                if not self._frame(fr):
                    return False
                t0 = time.perf_counter()
        return self._flush_undated() and not self.stop.is_set()

    def _packet(self, pkt: av.Packet, hold: bool = False) -> bool:
        """A packet of another stream: noted for damage, queued (or held by prime) when its stream is copied."""
        attached = False
        if pkt.dts is None:
            if not pkt.size:  # demuxer flush packet
                return True
            attached = pkt.pts is None or bool(pkt.stream.disposition & av.stream.Disposition.attached_pic)
            if attached:
                pkt.pts = pkt.dts = 0  # an attached picture (cover art) has no time of its own
            elif pkt.stream.type == "video":  # a second video stream's first packets (B-frame delay): their dts
                self._undated.setdefault(pkt.stream.index, []).append(pkt)  # come back from the first dated one
                return True
            else:
                pkt.dts = pkt.pts
        elif held := self._undated.pop(pkt.stream.index, None):
            fill_dts([*held, pkt])
            for q in held:
                if not self._dated(q, hold):
                    return False
        return self._dated(pkt, hold, attached)

    def _flush_undated(self) -> bool:
        """A copied video stream that never gave a dts (its end came first): timed by pts."""
        for held in self._undated.values():
            fill_dts(held)
            for q in held:
                if not self._dated(q):
                    return False
        self._undated.clear()
        return True

    def _dated(self, pkt: av.Packet, hold: bool = False, attached: bool = False) -> bool:
        if not self._past_end:  # past a part's end the video is no longer read: no gap is damage there
            self.damage.packet(pkt)
        if self.window is not None and not attached:
            if not self._cut_packet(pkt):
                return True
            assert self._cut is not None
            for q in self._cut.on_screen():  # the part has begun: the bitmap subtitles on screen go first
                if not self._queue(q, hold):
                    return False
        return self._queue(pkt, hold)

    def _queue(self, pkt: av.Packet, hold: bool) -> bool:
        if hold:
            self._held.append(PacketItem(pkt))
            return True
        return pkt.stream.index not in self.copy_ids or self._put(PacketItem(pkt))

    def _decode(self, pkt: av.Packet) -> list[av.VideoFrame]:
        if pkt.size and self._dts:
            if self._vpackets < len(self._dts) and self._dts[self._vpackets] is not None:
                pkt.dts = self._dts[self._vpackets]
            self._vpackets += 1
        if pkt.size:
            self._fed.append(pkt.pts)
            if self._order is not None:
                self._order.fed(pkt.pts, pkt.dts, bool(pkt.is_keyframe))
        if pkt.dts is not None or pkt.size:
            self.damage.packet(pkt)
        self._settle_flag()
        try:
            frames = pkt.decode()
            bad = flagged = pkt.is_corrupt
        except av.error.FFmpegError:
            frames, bad, flagged = [], True, False
        failed = pkt.pts if not bad or flagged else self._failed_pts()  # (a decoding error: a packet fed before)
        if bad and not flagged and self._order is not None:
            self._order.failed(failed)
        if bad and not (self.window is not None and failed is not None and self.window.before(failed * self.tb)):
            # (before the part: leading frames of an open GOP after the seek lack their references, as expected)
            at = float(failed * self.tb) if failed is not None else self._last_good
            if flagged and self.continuity.active:  # the demuxer's flag, the decoder content: a join's?
                self._settle_flag(final=True)  # one at a time
                self._flag = (at, len(self.continuity.jumps), 0)
            else:
                self.damage.bad_packet(at)
        if not pkt.size:  # the demuxer's flush packet drains the decoder
            for fr in frames:
                self._flushed(fr)
        return frames

    def _failed_pts(self) -> int | None:
        """The pts of the packet a decoding error is about: with frame threading FFmpeg reports it when the packet
        ``thread_count - 1`` later is fed (the times would follow the machine's cores), else the one just fed."""
        cc = self.vstream.codec_context
        threads = (cc.thread_count if cc.codec.capabilities & Capabilities.frame_threads
                   and cc.thread_type & ThreadType.FRAME else 1)
        back = max(1, threads)
        return self._fed[-back] if len(self._fed) >= back else None

    def _settle_flag(self, final: bool = False) -> None:
        """A video packet the MPEG-TS demuxer flagged (continuity counter broken) that decoded is damage unless the
        timestamps jump within the next ``JOIN_SLACK`` video packets: joined recordings (``cat a.ts b.ts``) break
        the counter at the join, flagging one of the first file's last, whole, packets."""
        if self._flag is not None:
            at, jumps, waited = self._flag
            if len(self.continuity.jumps) > jumps:
                self._flag = None
            elif final or waited >= JOIN_SLACK:
                self._flag = None
                self.damage.bad_packet(at)
            else:
                self._flag = (at, jumps, waited + 1)

    def _flushed(self, fr: av.VideoFrame) -> None:
        """A frame drained at the end of the input. A scale-out cut ends before the source does: a single-process
        run gets this frame out while decoding the packets after the cut, with their dts."""
        if fr.dts is None and self._vpackets < len(self._dts):
            fr.dts = self._dts[self._vpackets]
            self._vpackets += 1

    def _frame(self, fr: av.VideoFrame) -> bool:
        """One decoded frame: deinterlaced if asked, checked, converted to planes and queued."""
        frames = self._deinterlace(fr) if self._deinterlace is not None else [fr]
        for f in frames:
            if not self._emit(f):
                return False
        return True

    def _emit(self, fr: av.VideoFrame) -> bool:
        if self.max_frames and self._n >= self.max_frames:
            return False
        if self._past_end:  # the part is over: frames the decoder still held (drained, timed otherwise) are not in it
            return True
        tb = fr.time_base or self.tb
        order = self._order
        if order is not None and order.active is None:
            order.decide(bool(self.vstream.codec_context.has_b_frames))
        # every frame, kept or not: the guess's state goes on
        pts = self._pts_guess(fr.pts, getattr(fr, "dts", None)) if order is None or not order.active else order(fr.pts)
        place = self._place(pts, tb) if self.window is not None else 0
        if place > 0:  # past the part's end: nothing of it is reported (the reading stops soon)
            return True
        self._track(fr, pts, tb)
        if place < 0:  # before the part (decoded from the keyframe before it): timed, not kept
            return True
        if self._cut is not None and self._cut.shown:  # the part's first frame: bitmap subtitles on screen go first
            for q in self._cut.on_screen():
                if q.stream.index in self.copy_ids and not self._put(PacketItem(q)):
                    return False
        if fr.is_corrupt:
            self.damage.bad_packet(fr.time if fr.pts is not None else self._last_good)
        if self.size is None:
            self.size = (fr.width, fr.height)
        elif (fr.width, fr.height) != self.size and not self.end.resized:
            self.end.resized = (f"input changes size at {fr.time or 0:.2f} s ({self.size[0]}x{self.size[1]} -> "
                                f"{fr.width}x{fr.height}); those frames are scaled to {self.size[0]}x{self.size[1]} "
                                "before upscaling (one output size per file)")
            self.warn(f"warning: {self.end.resized}")
        planes, bits, sw, sh, keep = frame_planes(fr, self.size, self.color)
        shift = self._ticks(tb)  # the part's start: its frames are timed from 0 (0 without --start)
        duration = int(getattr(fr, "duration", 0) or 0)
        if duration and pts is not None and self.window is not None and self.window.hi is not None:
            duration = max(0, min(duration, math.ceil(self.window.hi / tb) - pts))  # shown to the part's end
        item = VideoItem(self._n, None if pts is None else pts - shift, tb, planes, bits, sw, sh, keep,
                         None if fr.pts is None else fr.pts - shift, duration)
        if not self._put(item):
            return False
        self._n += 1
        return not (self.max_frames and self._n >= self.max_frames)

    @property
    def capped(self) -> bool:
        """Whether the reading stopped at --max-frames."""
        return bool(self.max_frames and self._n >= self.max_frames)

    def _track(self, fr: av.VideoFrame, pts: int | None, tb: Fraction) -> None:
        """How far the stream got, for truncation and damage (frames before a part too): the frame's own time as
        well (decode-order times are guessed from dts, a reorder delay behind the container's end, which read as a
        truncated tail)."""
        if fr.pts is None:
            return
        at = float(pts * tb) if pts is not None else math.nan
        t = max(at, float(fr.pts * tb))
        if not self._timed or t >= self._latest:  # decode-order times come out of order
            step = t - self._latest if self._timed else 0.0
            dur = float(fr.duration * tb) if getattr(fr, "duration", 0) else 0.0
            self._period, self._latest, self._timed = max(dur, step), t, True
        self._last_good = at
        self.damage.frame(at)

    def _display_order(self) -> DisplayOrder | None:
        return None if self._sorts is False else DisplayOrder(self._sorts)

    # --- --start/--end ----------------------------------------------------------------------------------
    def _seek(self, target: Fraction) -> None:
        """Read from the keyframe at or before ``target`` (s, the file's times), decoding from there; where that
        fails, on from where it is (the start: nothing was read yet)."""
        self._seeked = seek(self.container, target)

    def _reset_part(self) -> None:
        """What reading a part has found so far, forgotten: at the start, and before seeking again."""
        if self._seeked:
            self.vstream.codec_context.flush_buffers()
            self.continuity = Continuity(self.container)  # the jumps before the seek's keyframe are not known
            self._demux = self.continuity.packets(self.container.demux())  # the last reading may have met the end
            self._held.clear()
            self._undated.clear()
            self._pts_guess = PtsGuess()
            self._order = self._display_order()
            self._rate = video_rate(self.vstream)
            self.damage = DamageLog(self.container, self._rate)
        self._past_end = False  # a frame at or past the part's end came out of the decoder: no more decoding
        self._reach: dict[int, float] = {}  # stream -> the latest packet time read (s)
        self._first_seen: dict[int, float] = {}  # stream -> its first packet's time read (s): passed over?
        self.kept: dict[int, int] = {}  # copied stream -> packets kept in the part
        self._clock: Fraction | None = None  # the latest frame's time in the file (s), for frames without one
        self._cut = None if self.window is None else PacketCut(self.window)  # the other streams' packets
        self._first_pts: int | None = None  # the first decoded frame's (after a seek: is it late?)
        self._waited_for: list[int] | None = None  # copied audio/video streams the part's end waits for
        self._subtitles_copied = False  # a copied subtitle stream: the part's end waits INTERLEAVE s for it

    def _late(self) -> bool:
        """Whether a seek passed over some of the part: its first frame is past the part's start, no frame came
        before the file's end (an MPEG-TS seek into the last GOP), or an audio stream that has begun by the part's
        start has its first packet after it (sound muxed ahead of the video)."""
        if self.window is None or not self._seeked:
            return False
        lo = self.window.lo
        if self._first_pts is None or self._first_pts * self.tb > lo:
            return True
        begun = {s.index for s in self.container.streams if s.type == "audio" and s.time_base and (
            s.start_time is None or s.start_time * Fraction(s.time_base) <= lo)}
        return any(t > lo for i, t in self._first_seen.items() if i in begun)

    def _ticks(self, tb: Fraction) -> int:
        """How far kept times move back, in ``tb`` ticks; 0 without --start/--end."""
        return 0 if self._cut is None else self._cut.ticks(tb)

    def _place(self, pts: int | None, tb: Fraction) -> int:
        """Where a decoded frame lies: -1 before the part, 0 in it, 1 at or past its end (which also ends the
        decoding). A frame without a timestamp (a raw stream) is timed one frame period after the one before."""
        assert self.window is not None
        if pts is not None:
            t: Fraction | float = pts * Fraction(tb)
        else:
            rate = self._rate  # (exact: 30 x 1/30 s as floats fell short of 1 s, a frame off a part)
            t = (Fraction(container_origin(self.container)) if self._clock is None
                 else self._clock + (1 / Fraction(rate) if rate else Fraction(1, 25)))
        self._clock = Fraction(t)
        if self.window.after(t):
            self._past_end = True
            return 1
        return -1 if self.window.before(t) else 0

    def _cut_packet(self, pkt: av.Packet) -> bool:
        """A copied stream's packet: whether it is kept (in the part, ``PacketCut``), then moved with it; how far
        each stream got is noted for ``_part_done``."""
        t = self._note_reach(pkt)
        if t is not None:
            self._first_seen.setdefault(pkt.stream.index, t)
        if not self._cut(pkt):
            return False
        self.kept[pkt.stream.index] = self.kept.get(pkt.stream.index, 0) + 1
        return True

    def _note_reach(self, pkt: av.Packet) -> float | None:
        """How far ``pkt``'s stream got (its time, s), for ``_part_done``; None for a packet without a time."""
        at = pkt.pts if pkt.pts is not None else pkt.dts
        if at is None or not pkt.time_base:
            return None
        t = float(at * Fraction(pkt.time_base))
        self._reach[pkt.stream.index] = max(self._reach.get(pkt.stream.index, -math.inf), t)
        return t

    def empty_in_part(self) -> list[int]:
        """The copied audio streams that have no packet in the part (one that ends before it, or is muxed further
        from the video than the reading goes), for a note: their track is empty."""
        if self.window is None:
            return []
        return [s.index for s in self.container.streams if s.type == "audio" and s.index in self.copy_ids
                and not self.kept.get(s.index)]

    def _lead_subtitles(self) -> list[PacketItem]:
        """The subtitles on screen when the part starts that the seek passed over (a line begun 0.5 s before a
        keyframe at 1 s, still shown at 1.3 s): a second reading of the file, from the keyframe before
        ``SUBTITLE_LOOKBACK`` s ahead of the part to the part's first video packet, demuxed, not decoded."""
        assert self.window is not None
        subs = {s.index for s in self.container.streams if s.type == "subtitle" and s.index in self.copy_ids}
        if not subs:
            return []
        lo = self.window.lo
        found: list[PacketItem] = []
        try:
            with av.open(self.container.name, format=self.container.format.name.split(",")[0]) as c:
                c.seek(max(math.floor((lo - SUBTITLE_LOOKBACK) * 1_000_000), c.start_time or 0), backward=True)
                for pkt in c.demux():
                    at = pkt.pts if pkt.pts is not None else pkt.dts
                    if at is None:
                        continue
                    if at * Fraction(pkt.time_base) >= lo and pkt.stream.index == self.vstream.index:
                        break  # past the part's start in the file (the video is interleaved closest)
                    if pkt.stream.index in subs and pkt.size and at * Fraction(pkt.time_base) < lo:
                        own = av.Packet(bytes(pkt))  # of this reading's container, which is closed after
                        own.stream = self.container.streams[pkt.stream.index]
                        own.time_base, own.pts, own.dts, own.duration = pkt.time_base, pkt.pts, pkt.dts, pkt.duration
                        if self._cut_packet(own):  # once: the main reading may have met it too
                            found.append(PacketItem(own))
        except (av.error.FFmpegError, OSError, ValueError):
            return []
        assert self._cut is not None
        return found + [PacketItem(q) for q in self._cut.on_screen()]

    def _part_done(self) -> bool:
        """The part's end is behind: the video's, and every copied audio (or video) stream's, or the demuxer
        has gone ``INTERLEAVE`` s past it (a stream that ended early, or interleaves loosely). A copied subtitle
        stream, whose packets are sparse and may be muxed late (after the video they go with), is waited for
        that far in any case."""
        if self.window is None or not self._past_end or self.window.hi is None:
            return False
        hi = float(self.window.hi)
        if max(self._reach.values(), default=-math.inf) >= hi + INTERLEAVE:
            return True
        if self._waited_for is None:  # once: copy_ids is fixed before the reading starts
            copied = [s for s in self.container.streams if s.index in self.copy_ids]
            self._subtitles_copied = any(s.type == "subtitle" for s in copied)
            self._waited_for = [s.index for s in copied if s.type in ("audio", "video")
                                and not s.disposition & av.stream.Disposition.attached_pic]
        if self._subtitles_copied:
            return False
        return all(self._reach.get(i, -math.inf) >= hi for i in self._waited_for)

    def _drain(self) -> None:
        """Flush the decoder (frame threading holds frames back) and the deinterlacer."""
        try:
            for fr in self.vstream.codec_context.decode(None):
                self._flushed(fr)
                if not self._frame(fr):
                    return
        except av.error.EOFError:
            pass  # the demuxer's flush packet already drained the decoder
        except av.error.FFmpegError:
            self.damage.bad_packet(self._last_good)
        if self._deinterlace is not None:
            for fr in self._deinterlace(None):
                if not self._emit(fr):
                    return

    def _check_end(self) -> None:
        """A stream that stops well before the end it announced was truncated (or lost its tail); a part that
        ended where it was asked to is not."""
        if not self.max_frames and not self._past_end:
            self.end.truncated = truncation(self.container, self._latest, self._period)

    def _finish(self) -> None:
        """Queue the end marker behind every item queued: a stopped run's consumer drains them all (making room
        by dropping the oldest queued frame cut a frame out of the middle of a stopped output: 8 frames before
        its end, the queue's depth). A consumer that is gone (``abandon``) takes nothing more: given up then."""
        while not self._abandoned:
            try:
                self.queue.put(self.end, timeout=0.1)
                return
            except queue.Full:
                continue

    def abandon(self) -> None:
        """The consumer reads no more (a failed or closed run): the end marker is not waited for."""
        self._abandoned = True


def one_filter_graph(width: int, height: int, fmt: str, time_base: Fraction, name: str,
                     args: str) -> tuple[av.filter.Graph, Any, Any]:
    """(graph, buffer, sink) of buffer -> ``name=args`` -> buffersink, configured."""
    g = av.filter.Graph()
    src = g.add_buffer(width=width, height=height, format=fmt, time_base=time_base)
    sink = g.add("buffersink")
    g.link_nodes(src, g.add(name, args), sink).configure()
    return g, src, sink


class Deinterlacer:
    """FFmpeg's bwdif (one output frame per input frame, timestamps kept), on request (``--deinterlace``)."""

    def __init__(self) -> None:
        self.graph: av.filter.Graph | None = None

    def __call__(self, frame: av.VideoFrame | None) -> list[av.VideoFrame]:
        if self.graph is None:
            if frame is None:
                return []
            self.graph = one_filter_graph(frame.width, frame.height, frame.format.name,
                                          frame.time_base or Fraction(1, 1000),
                                          "bwdif", "mode=send_frame:parity=auto:deint=all")[0]
        self.graph.push(frame)
        out = []
        while True:
            try:
                out.append(self.graph.pull())
            except (av.error.BlockingIOError, av.error.EOFError):
                return out


def _bitstream_only() -> tuple[tuple[tuple[Any, ...], str], ...]:
    from av.sidedata.sidedata import Type

    return (((Type.A53_CC,), "closed captions (EIA-608/708)"),
            ((Type.DOVI_RPU_BUFFER, Type.DOVI_METADATA), "Dolby Vision metadata"),
            ((Type.DYNAMIC_HDR_PLUS,), "HDR10+ dynamic metadata"))


# side data of the first frame that lives in the source's bitstream (SEI, RPU) and that a re-encode here can't carry:
# PyAV can't attach side data to the frames handed to the encoder
BITSTREAM_ONLY = _bitstream_only()


def top_field_first(frame: av.VideoFrame) -> bool | None:
    """The interlaced frame's own top-field-first flag, which PyAV doesn't expose: FFmpeg's ``separatefields``
    gives the first field in time first, so it is the top field's rows (0, 2, ...) or the bottom's; None when the
    rows can't tell (a flat picture, or planes that are not in memory: a CUDA frame)."""
    if frame.format.name == "cuda" or frame.height < 2:  # (any software format: its first plane's rows)
        return None
    try:
        graph, src, sink = one_filter_graph(frame.width, frame.height, frame.format.name, Fraction(1, 25),
                                            "separatefields", "")
        src.push(frame)
        first = sink.pull()
    except (av.error.FFmpegError, ValueError):
        return None

    def luma(f: av.VideoFrame, rows: int) -> np.ndarray:
        plane = f.planes[0]
        step = 2 if f.format.components[0].bits > 8 else 1
        return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:rows, :f.width * step]

    y, field = luma(frame, frame.height), luma(first, first.height)
    top, bottom = np.array_equal(field, y[0::2][:len(field)]), np.array_equal(field, y[1::2][:len(field)])
    return top if top != bottom else None


def first_frame(frame: av.VideoFrame, cc: Any) -> FirstFrame:
    """The facts only a decoded frame (and the decoder after it) carries."""
    from av.sidedata.sidedata import Type

    side: dict[Any, bytes] = dict(getattr(cc, "decoded_side_data", None) or {})
    for kind, sd in frame.side_data.items():
        side.setdefault(kind, bytes(sd))
    order = int(getattr(cc, "field_order", 0) or 0)
    interlaced = frame.interlaced_frame or order > 1
    if frame.interlaced_frame and (top := top_field_first(frame)) is not None and (order < 2 or (order in (2, 4))
                                                                                != top):
        # the frame's own flag (what bwdif follows), over the parser's stream-level guess, or where the container
        # says none (DV, always bottom field first, was written top field first)
        order = 2 if top else 3
    lost = tuple(what for kinds, what in BITSTREAM_ONLY if any(k in side for k in kinds))
    return FirstFrame(rotation=int(frame.rotation or 0), interlaced=interlaced, lost=lost,
                      field_order=order if order > 1 else (2 if interlaced else 1),
                      mastering=side.get(Type.MASTERING_DISPLAY_METADATA, b""),
                      light_level=side.get(Type.CONTENT_LIGHT_LEVEL, b""),
                      hw_decoded=frame.format.name == "cuda" or (bool(getattr(cc, "is_hwaccel", False))
                                                                 and frame.format.name in SEMIPLANAR))
