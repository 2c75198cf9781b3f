"""Demux + decode on its own thread into a bounded queue; frames stay YUV planes (no swscale to RGB).

Items put on the queue, in container order:
- ``VideoItem``: one decoded frame as planes (numpy views of the frame's buffers, or CUDA tensors via
  DLPack with NVDEC), with its pts, time base and colour info;
- ``PacketItem``: a packet of a stream that is copied (audio, subtitles, data), flush packets dropped;
- ``EndItem``: the end, with what went wrong (damaged spans, truncation) if anything.
"""

from __future__ import annotations

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

from ..errors import PsrError
from .color import PLANAR, SEMIPLANAR, ColorInfo, guess_color


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

    @property
    def time(self) -> float:
        return float(self.pts * self.time_base) if self.pts is not None else math.nan


@dataclass
class PacketItem:
    packet: av.Packet


@dataclass
class EndItem:
    frames: int = 0
    damaged: list[tuple[float, float, int]] = field(default_factory=list)  # (start s, end s, packets)
    truncated: str = ""
    error: BaseException | None = None
    stopped: bool = False


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
               warn: Any = None) -> av.container.InputContainer:
    """Open ``path`` ('-' = stdin) or raise InputError with one clear line.

    With ``hwaccel`` a failure to set up the hardware decoder falls back to software decoding (with a
    warning) when the input is a file.
    """
    if hwaccel and path != "-":
        try:
            return _open(path, fmt, hwaccel)
        except InputError as e:
            if not Path(path).exists():
                raise
            if warn is not None:
                warn(f"warning: --hwaccel {hwaccel} unavailable ({e}); decoding in software")
            return _open(path, fmt, None)
    return _open(path, fmt, hwaccel)


def _open(path: str, fmt: str | None, hwaccel: str | None) -> av.container.InputContainer:
    options: dict[str, str] = {}
    kwargs: dict[str, Any] = {}
    if hwaccel:
        from av.codec.hwaccel import HWAccel

        try:  # keep decoded surfaces on the GPU when torch can take them over DLPack
            import torch

            owned = hwaccel == "cuda" and torch.cuda.is_available()
        except ImportError:
            owned = False
        kwargs["hwaccel"] = HWAccel(device_type=hwaccel, allow_software_fallback=True, is_hw_owned=owned)
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
    except InputError:
        raise
    except (av.error.InvalidDataError, av.error.EOFError) as e:
        raise InputError(f"not a readable video file: {path} ({_short(e)})") from None
    except av.error.FFmpegError as e:
        raise InputError(f"can't open {path}: {_short(e)}") from None
    if not c.streams.video:
        c.close()
        raise InputError(f"no video stream in {path}")
    return c


def _short(e: BaseException) -> str:
    s = getattr(e, "strerror", None) or str(e)
    return s.splitlines()[0] if s else type(e).__name__


def stream_info(c: av.container.InputContainer) -> StreamInfo:
    s = c.streams.video[0]
    cc = s.codec_context
    pix = cc.pix_fmt or "yuv420p"
    bits = _bits_of(pix)
    dur = None
    if s.duration is not None and s.time_base:
        dur = float(s.duration * s.time_base)
    elif c.duration:
        dur = c.duration / 1e6
    rate = s.average_rate or s.guessed_rate or None
    frames = s.frames or (int(round(dur * rate)) if dur and rate else 0)
    color = guess_color(cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc, cc.height or 0, pix,
                        getattr(cc, "chroma_location", None))
    return StreamInfo(cc.width, cc.height, pix, bits, s.time_base or Fraction(1, 1000), rate, frames, dur, color,
                      cc.name)


def _bits_of(pix: str) -> int:
    if pix in PLANAR:
        return PLANAR[pix][2]
    if pix in SEMIPLANAR:
        return SEMIPLANAR[pix][0]
    try:
        fmt = av.VideoFormat(pix)
        return max(8, max((c.bits for c in fmt.components), default=8))
    except Exception:
        return 8


def frame_planes(frame: av.VideoFrame, size: tuple[int, int] | None = None) -> tuple[tuple, int, int, int, Any]:
    """(planes, bits, shift_w, shift_h, keep-alive) for a decoded frame, without converting to RGB.

    Planar YUV/grey frames are returned as numpy views of their buffers (no copy). CUDA (NVDEC) frames are
    handed over with DLPack. Anything else (RGB, palette, packed YUV) goes through swscale to yuv444p once.
    """
    if size is not None and (frame.width, frame.height) != size:
        frame = frame.reformat(width=size[0], height=size[1])
    name = frame.format.name
    if name == "cuda":  # NVDEC: hand the device planes over without a copy
        import torch

        sw = frame.sw_format.name if frame.sw_format is not None else "nv12"
        # copy out of the decoder's surface pool at once (device to device): frames wait in a queue and
        # NVDEC has only a few surfaces
        y = torch.from_dlpack(frame.planes[0]).clone()
        uv = torch.from_dlpack(frame.planes[1]).clone()
        bits, shift = SEMIPLANAR.get(sw, (8, 0))
        if shift:
            y, uv = y.to(torch.int32) >> shift, uv.to(torch.int32) >> shift
        return (y, uv[:, 0::2], uv[:, 1::2]), bits, 1, 1, None
    if name in SEMIPLANAR:
        bits, shift = SEMIPLANAR[name]
        dt = np.uint8 if bits == 8 else np.uint16
        y = _view(frame.planes[0], dt, frame.width)
        uv = _view(frame.planes[1], dt, 2 * ((frame.width + 1) // 2))
        if shift:
            y, uv = y >> shift, uv >> shift
        return (y, uv[:, 0::2], uv[:, 1::2]), bits, 1, 1, frame
    if name not in PLANAR:
        frame = frame.reformat(format="yuv444p", dst_colorspace="ITU601", dst_color_range="MPEG")
        name = "yuv444p"
    sw, sh, bits = PLANAR[name]
    dt = np.uint8 if bits == 8 else np.uint16
    planes = []
    for i, p in enumerate(frame.planes[:3]):
        w = frame.width if i == 0 else -(-frame.width >> sw)
        planes.append(_view(p, dt, w))
    return tuple(planes), bits, sw, sh, frame


def _view(plane: Any, dt: Any, width: int) -> np.ndarray:
    itemsize = np.dtype(dt).itemsize
    a = np.frombuffer(plane, dt)
    return a.reshape(plane.height, plane.line_size // itemsize)[:, :width]


class Reader(threading.Thread):
    """Demux every stream, decode the first video stream with frame threading, queue items (bounded)."""

    def __init__(self, container: av.container.InputContainer, copy_streams: list[Any], depth: int = 8,
                 max_frames: int = 0, stop: threading.Event | None = None, stats: Any = None,
                 threads: int = 0) -> None:
        super().__init__(name="psr2-reader", daemon=True)
        self.container = container
        self.vstream = container.streams.video[0]
        self.copy_streams = copy_streams
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.max_frames = max_frames
        self.stop = stop or threading.Event()
        self.stats = stats
        cc = self.vstream.codec_context
        cc.thread_type = "AUTO"  # frame + slice threading
        cc.thread_count = threads
        self.size = (cc.width, cc.height) if cc.width and cc.height else None
        self.end = EndItem()

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
        tb = self.vstream.time_base or Fraction(1, 1000)
        n = 0
        last_good = 0.0
        try:
            streams = [self.vstream, *self.copy_streams]
            for pkt in self.container.demux(*streams):
                if self.stop.is_set():
                    end.stopped = True
                    break
                if pkt.stream is not self.vstream:
                    if pkt.dts is None:  # demuxer flush packet
                        continue
                    if not self._put(PacketItem(pkt)):
                        break
                    continue
                t0 = time.perf_counter()
                try:
                    frames = pkt.decode()
                    bad = pkt.is_corrupt
                except av.error.FFmpegError:
                    frames, bad = [], True
                if bad:
                    t = float(pkt.pts * tb) if pkt.pts is not None else last_good
                    self._damage(t)
                for fr in frames:
                    if fr.is_corrupt:
                        self._damage(fr.time if fr.pts is not None else last_good)
                    if self.size is None:
                        self.size = (fr.width, fr.height)
                    planes, bits, sw, sh, keep = frame_planes(fr, self.size)
                    item = VideoItem(n, fr.pts, fr.time_base or tb, planes, bits, sw, sh, keep)
                    if fr.pts is not None:
                        last_good = float(fr.pts * item.time_base)
                    if self.stats is not None:
                        self.stats.add("decode", time.perf_counter() - t0)
                        t0 = time.perf_counter()
                    if not self._put(item):
                        break
                    n += 1
                    if self.max_frames and n >= self.max_frames:
                        break
                if self.max_frames and n >= self.max_frames:
                    break
                if self.stop.is_set():
                    end.stopped = True
                    break
            else:
                # drain the decoder (frame threading holds frames back)
                try:
                    for fr in self.vstream.codec_context.decode(None):
                        planes, bits, sw, sh, keep = frame_planes(fr, self.size)
                        if not self._put(VideoItem(n, fr.pts, fr.time_base or tb, planes, bits, sw, sh, keep)):
                            break
                        n += 1
                        last_good = fr.time if fr.pts is not None else last_good
                except av.error.EOFError:
                    pass  # the demuxer's flush packet already drained the decoder
                except av.error.FFmpegError:
                    self._damage(last_good)
                dur = self._expected_duration()
                rate = self.vstream.average_rate or self.vstream.guessed_rate
                slack = 2.0 / float(rate) if rate else 0.2
                if dur is not None and not self.max_frames and last_good + max(slack, 0.5) < dur:
                    end.truncated = f"input stops at {last_good:.2f} s of {dur:.2f} s (truncated or damaged)"
        except av.error.FFmpegError as e:  # demuxer gave up (truncated/corrupt container)
            end.truncated = f"input unreadable after {last_good:.2f} s ({_short(e)})"
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            end.error = e
        end.frames = n
        # the end marker must arrive even when the consumer is slow
        while True:
            try:
                self.queue.put(end, timeout=0.1)
                break
            except queue.Full:
                if self.stop.is_set():
                    try:
                        self.queue.get_nowait()
                    except queue.Empty:
                        pass

    def _expected_duration(self) -> float | None:
        """End time the video stream announces: its duration, MKV's DURATION tag, or (video-only files) the
        container's; None when unknown (then truncation can't be told from a normal end)."""
        s = self.vstream
        start = float(s.start_time * s.time_base) if s.start_time is not None and s.time_base else 0.0
        tag = (s.metadata or {}).get("DURATION")  # Matroska's per-track figure (its stream.duration is the file's)
        if tag:
            try:
                h, m, sec = tag.split(":")
                return int(h) * 3600 + int(m) * 60 + float(sec)
            except ValueError:
                pass
        if s.duration is not None and s.time_base:
            return start + float(s.duration * s.time_base)
        if self.container.duration and len(self.container.streams) == 1:
            return (self.container.duration + (self.container.start_time or 0)) / 1e6
        return None

    def _damage(self, t: float) -> None:
        spans = self.end.damaged
        if spans and t - spans[-1][1] < 1.0:
            a, _, k = spans[-1]
            spans[-1] = (a, max(t, spans[-1][1]), k + 1)
        else:
            spans.append((t, t, 1))
