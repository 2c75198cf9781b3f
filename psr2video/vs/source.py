"""A frame-accurate VapourSynth source backed by PyAV, for when no source plugin (bs, lsmas, ffms2) is installed.

    from psr2video.vs.source import open_clip, best_source
    clip = open_clip("samples/clip.mp4")       # always PyAV
    clip = best_source("samples/clip.mp4")     # bs / lsmas / ffms2 when installed, else PyAV

The file is indexed once (demux only, no decoding): every non-empty packet of the video stream is a
frame, ordered by presentation time, and keyframes are remembered. ``std.ModifyFrame`` on a
``BlankClip`` of the right format fills each requested frame: a forward request continues decoding,
a backward or far one seeks to the keyframe at or before it. Decoded frames are kept in a small
cache, so the parallel, slightly out-of-order requests of VapourSynth stay cheap. Colour metadata
(_Matrix, _Primaries, _Transfer, _ColorRange) and _SARNum/_SARDen come from the stream.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import PsrError
from ..video.continuity import video_rate

# pix_fmt -> (VapourSynth format name, numpy dtype, plane order to VS planes)
FORMATS: dict[str, tuple[str, type, tuple[int, ...]]] = {
    "yuv420p": ("YUV420P8", np.uint8, (0, 1, 2)), "yuvj420p": ("YUV420P8", np.uint8, (0, 1, 2)),
    "yuv422p": ("YUV422P8", np.uint8, (0, 1, 2)), "yuvj422p": ("YUV422P8", np.uint8, (0, 1, 2)),
    "yuv444p": ("YUV444P8", np.uint8, (0, 1, 2)), "yuvj444p": ("YUV444P8", np.uint8, (0, 1, 2)),
    "yuv420p10le": ("YUV420P10", np.uint16, (0, 1, 2)), "yuv422p10le": ("YUV422P10", np.uint16, (0, 1, 2)),
    "yuv444p10le": ("YUV444P10", np.uint16, (0, 1, 2)), "yuv420p12le": ("YUV420P12", np.uint16, (0, 1, 2)),
    "yuv444p12le": ("YUV444P12", np.uint16, (0, 1, 2)), "gray": ("GRAY8", np.uint8, (0,)),
    "gbrp": ("RGB24", np.uint8, (2, 0, 1)),  # planes are G, B, R
}
FALLBACK = "gbrp"  # anything else (rgb24, pal8, nv12...) is converted to planar RGB
CACHE_FRAMES = 16
FORWARD_DECODE_LIMIT = 120  # decode forward up to this many frames instead of seeking


class SourceError(PsrError, RuntimeError):
    """The file cannot be opened or has no decodable video."""


class PyAVIndex:
    """Presentation-ordered frame timestamps and keyframes of one video stream (demux only)."""

    def __init__(self, path: str | Path, stream_index: int = 0) -> None:
        try:
            container = av.open(str(path))
        except (av.error.FFmpegError, OSError) as e:
            raise SourceError(f"cannot open {path}: {e}") from None
        with container:
            if not container.streams.video:
                raise SourceError(f"{path} has no video stream")
            s = container.streams.video[stream_index]
            pts, keys = [], []
            for p in container.demux(s):
                if p.size == 0:
                    continue
                pts.append(p.pts)
                if p.is_keyframe:
                    keys.append(p.pts)
            self.width, self.height = s.codec_context.width, s.codec_context.height
            self.pix_fmt = s.codec_context.format.name if s.codec_context.format else FALLBACK
            self.fps = video_rate(s) or Fraction(25)
            sar = s.sample_aspect_ratio
            self.sar = (sar.numerator, sar.denominator) if sar and sar.numerator > 0 else None
        if not pts:
            raise SourceError(f"{path}: the video stream has no frames")
        self.seekable = all(p is not None for p in pts)
        self.pts = sorted(pts) if self.seekable else list(range(len(pts)))
        self.keys = sorted(k for k in keys if k is not None) if self.seekable else []
        self.index_of = {p: i for i, p in enumerate(self.pts)}
        self.num_frames = len(self.pts)


class PyAVDecoder:
    """Serves frame ``n`` as a list of VS-ordered numpy planes; thread-safe."""

    def __init__(self, path: str | Path, index: PyAVIndex, stream_index: int = 0) -> None:
        self.path, self.idx, self.stream_index = str(path), index, stream_index
        self.vs_format, self.dtype, self.order = FORMATS.get(index.pix_fmt, FORMATS[FALLBACK])
        self.convert = None if index.pix_fmt in FORMATS else FALLBACK
        self.lock = threading.Lock()
        self.cache: OrderedDict[int, list[np.ndarray]] = OrderedDict()
        self.container = None
        self.frames = None  # decode iterator
        self.last = -1  # index of the last frame the iterator produced
        self.first_frame = None

    def _open(self, seek_pts: int | None) -> None:
        if self.container is None:
            self.container = av.open(self.path)
            self.container.streams.video[self.stream_index].thread_type = "AUTO"
        s = self.container.streams.video[self.stream_index]
        if seek_pts is None:
            self.container.seek(0)
        else:
            self.container.seek(seek_pts, stream=s, backward=True, any_frame=False)
        self.frames = self.container.decode(s)
        self.last = -1

    def _planes(self, frame: av.VideoFrame) -> list[np.ndarray]:
        if self.convert or frame.width != self.idx.width or frame.height != self.idx.height:
            frame = frame.reformat(width=self.idx.width, height=self.idx.height,
                                   format=self.convert or self.idx.pix_fmt)
        out = []
        for p in self.order:
            plane = frame.planes[p]
            row = plane.line_size // np.dtype(self.dtype).itemsize
            a = np.frombuffer(plane, dtype=self.dtype, count=plane.height * row).reshape(plane.height, row)
            out.append(a[:, :plane.width].copy())
        return out

    def _remember(self, i: int, planes: list[np.ndarray]) -> None:
        self.cache[i] = planes
        self.cache.move_to_end(i)
        while len(self.cache) > CACHE_FRAMES:
            self.cache.popitem(last=False)

    def get(self, n: int) -> list[np.ndarray]:
        n = min(max(n, 0), self.idx.num_frames - 1)
        with self.lock:
            if n in self.cache:
                self.cache.move_to_end(n)
                return self.cache[n]
            if self.frames is None or not (self.last < n <= self.last + FORWARD_DECODE_LIMIT):
                key = None
                if self.idx.seekable and self.idx.keys:
                    target = self.idx.pts[n]
                    key = max((k for k in self.idx.keys if k <= target), default=self.idx.keys[0])
                self._open(key)
                if not self.idx.seekable:
                    self.last = -1
            produced = None
            for frame in self.frames:
                if self.idx.seekable:
                    i = self.idx.index_of.get(frame.pts)
                    if i is None:  # a timestamp the demuxer did not report; place it after the last one
                        i = self.last + 1
                else:
                    i = self.last + 1
                self.last = i
                if i < n - CACHE_FRAMES:
                    continue
                produced = self._planes(frame)
                self._remember(i, produced)
                if i >= n:
                    break
            else:
                self.frames = None  # end of stream: serve the nearest decoded frame
            if n in self.cache:
                return self.cache[n]
            if produced is not None:
                return produced
            raise SourceError(f"{self.path}: could not decode frame {n}")

    def color_props(self) -> dict:
        """VapourSynth frame properties describing the stream's colour (from its first frame)."""
        s = av.open(self.path)
        with s:
            frame = next(s.decode(video=self.stream_index))
        props = {}
        rgb = self.vs_format.startswith("RGB")
        if not rgb and not self.vs_format.startswith("GRAY"):
            matrix = int(frame.colorspace or 2)
            if matrix in (0, 2, 3):  # rgb/unspecified/reserved: guess from the size like most players
                matrix = 1 if self.idx.height >= 600 else 6
            props["_Matrix"] = matrix
        elif rgb:
            props["_Matrix"] = 0
        for key, value in (("_Primaries", frame.color_primaries), ("_Transfer", frame.color_trc)):
            if value and int(value) not in (0, 2, 3):
                props[key] = int(value)
        # FFmpeg: 1 = MPEG (limited), 2 = JPEG (full); open_clip maps this to _Range (R81+) or _ColorRange
        # (untagged grey is full range, as FFmpeg's swscale and the video command read it)
        props["full_range"] = (rgb or frame.color_range == 2 or self.idx.pix_fmt.startswith("yuvj")
                               or (self.idx.pix_fmt.startswith(("gray", "ya")) and frame.color_range != 1))
        if self.idx.sar:
            props["_SARNum"], props["_SARDen"] = self.idx.sar
        return props


def open_clip(path: str | Path, core=None, stream_index: int = 0):
    """A VapourSynth clip of ``path``'s video decoded by PyAV (frame-accurate, any request order)."""
    import vapoursynth as vs

    core = core or vs.core
    if not Path(path).is_file():
        raise SourceError(f"no such file: {path}")
    index = PyAVIndex(path, stream_index)
    dec = PyAVDecoder(path, index, stream_index)
    fps = index.fps.limit_denominator(1_000_000)
    blank = core.std.BlankClip(format=getattr(vs, dec.vs_format), width=index.width, height=index.height,
                               length=index.num_frames, fpsnum=fps.numerator, fpsden=fps.denominator, keep=True)
    props = dec.color_props()
    full = props.pop("full_range")
    if vs.RANGE_FULL == 1:  # R81+: _Range, 1 = full
        props["_Range"] = vs.RANGE_FULL if full else vs.RANGE_LIMITED
    else:  # older cores: _ColorRange, 0 = full
        props["_ColorRange"] = 0 if full else 1
    blank = core.std.SetFrameProps(blank, **props)

    def fill(n: int, f):
        planes = dec.get(n)
        out = f.copy()
        for p, a in enumerate(planes):
            np.copyto(np.asarray(out[p]), a)
        return out

    clip = core.std.ModifyFrame(blank, blank, fill)
    return clip


def best_source(path: str | Path, core=None):
    """Open ``path`` with the best installed source plugin (bs, lsmas, ffms2), else with PyAV."""
    import vapoursynth as vs

    core = core or vs.core
    path = str(path)
    if hasattr(core, "bs"):
        return core.bs.VideoSource(source=path)
    if hasattr(core, "lsmas"):
        return core.lsmas.LWLibavSource(source=path)
    if hasattr(core, "ffms2"):
        return core.ffms2.Source(source=path)
    return open_clip(path, core)
