"""A frame-accurate VapourSynth source backed by PyAV, for when no source plugin (bs, lsmas, ffms2) is installed.

    from psr2video.vs.source import open_clip, best_source
    clip = open_clip("samples/clip.mp4")       # always PyAV
    clip = best_source("samples/clip.mp4")     # bs / lsmas / ffms2 when installed, else PyAV

Frame ``n`` is the ``n``-th frame a decoder gives when it decodes the file from its start, as the video command
numbers them; any request order gives the same frames. The file is indexed once (demux only) and its last group of
pictures decoded to count the frames a damaged or cut tail really gives. A frame is placed by its time: the
presentation time of its packet where the file stores those, else (AVI, an MP4 muxed without composition offsets:
decode-order times; an MPEG-PS whose demuxer guessed some pts twice) the way the video command times decode-order
files (``DisplayOrder``: the k-th frame shown takes the k-th earliest packet time). A request seeks to a keyframe
early enough for that and continues forward from there, decoding from the first keyframe packet read that is one of
the index's, every packet after it checked against the index (an MPEG-PS demuxer can land inside a frame: it then
gives a partial packet and stamps the packets after it with their neighbours' times); it re-seeks further back when
the packets read there are not the index's or the first frame decoded comes after the one asked for, and reads
from the start when none is. A frame the decoder never gives is an error, never another frame. An elementary
stream without timestamps (.h264, .hevc) is read from its start (reopened to go back). Decoded frames are kept in
a small cache, so the parallel, slightly out-of-order requests of VapourSynth stay cheap.

The clip keeps the source's depth and subsampling (``layout``): YUV/GRAY/RGB of 8 to 16 bits, 32-bit float; alpha
is dropped, packed and semi-planar formats become planar, palette and Bayer pictures RGB. A 4:2:0 or 4:2:2 picture
of odd width or height (which VapourSynth can't hold) becomes 4:4:4 of the same depth. Frame properties: _Matrix,
_Primaries, _Transfer, _Range (or _ColorRange), _SARNum/_SARDen from the stream; _FieldBased, _ChromaLocation and
_DurationNum/_DurationDen (to the next frame's time: variable frame rates kept) per frame.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import PsrError
from ..video import sws
from ..video.continuity import video_rate
from ..video.display_order import DisplayOrder, sorts_times

CACHE_FRAMES = 16
FORWARD_DECODE_LIMIT = 120  # decode forward up to this many frames instead of seeking
# packets decoded after a seek before decode-order times number frames for sure: a keyframe's leading frames that the
# decoder drops (open GOP) are known lost DisplayOrder.WINDOW packets after them; up to 16 reordered frames before
REORDER_DEPTH = 16
TRUST = DisplayOrder.WINDOW + REORDER_DEPTH + 2


class SourceError(PsrError, RuntimeError):
    """The file cannot be opened, has no decodable video, or a frame cannot be decoded."""


# --- formats ------------------------------------------------------------------------------------------------
_YUV_BASE = {(0, 0): "yuv444p", (1, 0): "yuv422p", (1, 1): "yuv420p", (0, 1): "yuv440p", (2, 0): "yuv411p",
             (2, 2): "yuv410p"}
_DEPTHS = (9, 10, 12, 14, 16)


@dataclass(frozen=True)
class Layout:
    """What the frames of a pixel format become: a VapourSynth format and the FFmpeg format they are converted to."""

    family: str  # "YUV", "RGB" or "GRAY"
    bits: int
    is_float: bool
    ssw: int  # log2 chroma subsampling
    ssh: int
    pix_fmt: str  # the FFmpeg format frames are converted to (when they are not in it)
    to_444: bool = False  # subsampled chroma of an odd-sized picture, upsampled to 4:4:4

    @property
    def dtype(self) -> type:
        return np.float32 if self.is_float else np.uint16 if self.bits > 8 else np.uint8

    @property
    def order(self) -> tuple[int, ...]:
        """FFmpeg planes in VapourSynth's order (gbrp planes are G, B, R)."""
        return (2, 0, 1) if self.family == "RGB" else (0,) if self.family == "GRAY" else (0, 1, 2)

    def vs_format(self, core):
        import vapoursynth as vs

        return core.query_video_format(getattr(vs, self.family), vs.FLOAT if self.is_float else vs.INTEGER,
                                       32 if self.is_float else self.bits, self.ssw, self.ssh).id


def _exists(name: str) -> bool:
    try:
        av.VideoFormat(name)
    except (ValueError, av.error.FFmpegError):
        return False
    return True


def _deep(base: str, bits: int) -> str | None:
    """``base`` (an 8-bit planar FFmpeg format) at ``bits`` or the nearest depth above that FFmpeg has."""
    if bits <= 8:
        return base
    for d in _DEPTHS:
        if d >= bits and _exists(f"{base}{d}le"):
            return f"{base}{d}le"
    return None


def layout(pix_fmt: str, width: int, height: int) -> Layout:
    """The VapourSynth format of a stream in ``pix_fmt``: its family, depth and subsampling, never below its depth."""
    try:
        f = av.VideoFormat(pix_fmt, 64, 64)  # (even: the subsampling is read from its planes' sizes)
    except (ValueError, av.error.FFmpegError):
        return Layout("RGB", 8, False, 0, 0, "gbrp")
    comps = [c for c in f.components if not c.is_alpha] or list(f.components)
    bits = f.bits_per_pixel if f.is_bayer else max((c.bits for c in comps), default=8)
    is_float = "f32" in pix_fmt or "f16" in pix_fmt
    if f.has_palette or f.is_bayer or f.is_rgb or pix_fmt.startswith("xyz"):  # (swscale converts XYZ to RGB)
        if is_float:
            return Layout("RGB", 32, True, 0, 0, "gbrpf32le")
        target = _deep("gbrp", bits) or "gbrp16le"
        return Layout("RGB", _bits(target), False, 0, 0, target)
    if len(comps) == 1:
        if is_float:
            return Layout("GRAY", 32, True, 0, 0, "grayf32le")
        target = _deep("gray", bits) or "gray16le"
        return Layout("GRAY", _bits(target), False, 0, 0, target)
    if is_float:  # (FFmpeg has no float YUV it decodes to)
        return Layout("YUV", 16, False, 0, 0, "yuv444p16le")
    luma, chroma = comps[0], comps[1]
    ssw = max(0, (luma.width // max(chroma.width, 1)).bit_length() - 1)
    ssh = max(0, (luma.height // max(chroma.height, 1)).bit_length() - 1)
    full = pix_fmt.startswith("yuvj")  # yuvj*: full-range YUV, converted as such
    to_444 = bool(width % (1 << ssw) or height % (1 << ssh))
    if to_444:
        ssw = ssh = 0
    base = _YUV_BASE.get((ssw, ssh))
    target = _deep(base, bits) if base else None
    if target is None:  # a subsampling FFmpeg has at 8 bits only: 4:4:4 of the depth
        ssw = ssh = 0
        target = _deep("yuv444p", bits) or "yuv444p16le"
    if full and bits <= 8:
        target = target.replace("yuv", "yuvj", 1) if _exists(target.replace("yuv", "yuvj", 1)) else target
    return Layout("YUV", _bits(target), False, ssw, ssh, target, to_444)


def _bits(pix_fmt: str) -> int:
    return av.VideoFormat(pix_fmt).components[0].bits


# --- index --------------------------------------------------------------------------------------------------
class PyAVIndex:
    """The frames of one video stream: their times and the keyframes to seek to (demux only, one decoded frame).

    ``times``: the frames' sorted times (None for a stream without timestamps, read serially); ``decode_order``:
    the packets carry decode-order times (monotonic pts in decode order, and the codec reorders frames), numbered
    with ``DisplayOrder``; ``keys``: (position among the packets in decode order, seek timestamp, time) of each
    keyframe."""

    def __init__(self, path: str | Path, stream_index: int = 0) -> None:
        try:
            container = av.open(str(path))
        except (av.error.FFmpegError, OSError) as e:
            raise SourceError(f"cannot open {path}: {e}") from None
        with container:
            if not container.streams.video:
                raise SourceError(f"{path} has no video stream")
            s = container.streams.video[stream_index]
            demuxed = [(p.pts, p.dts, p.size, bool(p.is_keyframe)) for p in container.demux(s) if p.size]
            avi = sorts_times(container)
            cc = s.codec_context
            self.width, self.height = cc.width, cc.height
            self.reorders = bool(cc.has_b_frames)
            self.tb = s.time_base or Fraction(1, 90000)
            self.fps = video_rate(s) or Fraction(25)
            sar = s.sample_aspect_ratio
            self.sar = (sar.numerator, sar.denominator) if sar and sar.numerator > 0 else None
        if not demuxed:
            raise SourceError(f"{path}: the video stream has no frames")
        first_key = next((i for i, p in enumerate(demuxed) if p[3]), 0)  # those before it give no frame
        packets = [(pts, dts, key) for pts, dts, _, key in demuxed[first_key:]]
        self.first, self.field_order = self._first_frame(path, stream_index)
        self.pix_fmt = self.first.format.name
        self.width, self.height = self.width or self.first.width, self.height or self.first.height
        self.layout = layout(self.pix_fmt, self.width, self.height)
        self.seekable = all(p[0] is not None for p in packets)
        self.decode_order = False
        self.times: list[int] | None = None
        self.keys: list[tuple[int, int, int]] = []
        if self.seekable:
            pts = [p[0] for p in packets]
            # decode-order times, as the video command decides: the codec reorders, and the pts never go back: AVI's,
            # or an MP4 muxed without composition offsets (pts = dts). Else the pts are the frames' own times.
            self.decode_order = (self.reorders and all(b >= a for a, b in zip(pts, pts[1:], strict=False))
                                 and (avi or all(p == d for p, d, _ in packets)))
            if len(set(pts)) < len(pts) and not self.decode_order:  # pts that name no frame alone (an MPEG-PS
                # demuxer's guesses): the frames are numbered in decoder order by their dts, as decode-order times
                dts = [d for _, d, _ in packets]
                self.decode_order = None not in dts and len(set(dts)) == len(dts)
                self.seekable = self.decode_order  # else read from the start, frames counted
        if self.seekable and self.decode_order:  # DisplayOrder's times: the packets' dts, one frame each
            times = [d if d is not None else p for p, d, _ in packets]
            self.seekable = self.decode_order = len(set(times)) == len(times)
        if self.seekable:
            pts = [p[0] for p in packets]
            if self.decode_order:
                self.times = [d if d is not None else p for p, d, _ in packets]
                keys = [(i, p, d, d if d is not None else p) for i, (p, d, k) in enumerate(packets) if k]
            else:
                self.times = pts
                keys = [(i, p, d, p) for i, (p, d, k) in enumerate(packets) if k]
            self.keys = [(i, min(p, d) if d is not None else p, t) for i, p, d, t in keys]
            self.times = sorted(self.times)
        # the packets from the first keyframe as a demuxer reading from the start gives them, (time, size, keyframe):
        # a seek is followed only where the packets read there are these (an MPEG-PS demuxer landing inside a frame
        # gives a partial packet, then stamps every packet after with its neighbour's times). ``seek_slack``: the
        # packets a seek may land before a keyframe; past that many unplaced ones it has read a keyframe that is
        # not the index's: the seek failed
        self.packets = [((d if d is not None else p) if self.decode_order else p, size, key)
                        for p, d, size, key in demuxed[first_key:]]
        at = [i for i, _, _ in self.keys] + [len(self.packets)]
        self.seek_slack = max((b - a for a, b in zip(at, at[1:], strict=False)), default=0) + 4
        self.key_packets = {self.packets[i]: i for i, _, _ in self.keys}
        self.num_frames = len(self.times) if self.times is not None else len(packets)

    @staticmethod
    def _first_frame(path: str | Path, stream_index: int) -> tuple[av.VideoFrame, int]:
        """The first frame decoded, and the stream's field order then (FFmpeg's: 0 unknown, 1 progressive, 2 TT...)."""
        try:
            with av.open(str(path)) as c:
                for pkt in c.demux(c.streams.video[stream_index]):
                    try:
                        frames = pkt.decode()
                    except av.error.FFmpegError:
                        continue
                    if frames:
                        return frames[0], int(c.streams.video[stream_index].codec_context.field_order or 0)
        except (av.error.FFmpegError, OSError) as e:
            raise SourceError(f"cannot decode {path}: {e}") from None
        raise SourceError(f"{path}: the video stream has no decodable frame")

    def index_of(self, t: int | None) -> int | None:
        """The frame of time ``t`` (None: not one of the stream's)."""
        if t is None or self.times is None:
            return None
        i = bisect.bisect_left(self.times, t)
        return i if i < len(self.times) and self.times[i] == t else None

    def key_for(self, n: int, back: int = 0) -> tuple[int, int, int] | None:
        """The keyframe to decode frame ``n`` from, ``back`` keyframes earlier; None: the file's start."""
        if not self.keys or self.times is None:
            return None
        if self.decode_order:  # far enough before n for DisplayOrder to number it for sure
            k = bisect.bisect_right([i for i, _, _ in self.keys], n - TRUST - REORDER_DEPTH) - 1
        else:
            k = bisect.bisect_right([t for _, _, t in self.keys], self.times[min(n, len(self.times) - 1)]) - 1
        k -= back
        return self.keys[k] if k > 0 else None  # (the first keyframe: the start)

    def duration(self, n: int) -> Fraction:
        """Frame ``n``'s duration (s): to the next frame's time; the last one (and an untimed stream's) 1/fps."""
        if self.times is not None and n + 1 < min(self.num_frames, len(self.times)):
            d = (self.times[n + 1] - self.times[n]) * self.tb
            if d > 0:
                return Fraction(d)
        return 1 / self.fps


# --- decoding -----------------------------------------------------------------------------------------------
class _Session:
    """One decoding pass: from the file's start or a keyframe, frames with their numbers, forward only."""

    def __init__(self, dec: PyAVDecoder, key: tuple[int, int, int] | None) -> None:
        self.dec, self.from_start = dec, key is None
        self.last = -1  # the last frame number produced (trusted)
        self.anchored = self.from_start  # a trusted frame before the one asked for was produced
        self.done = False
        self.placed = False  # after a seek: a keyframe packet of the index's was read, decoding started there
        self.failed = False  # after a seek: the packets read were not the index's (none placed, or one differed)
        self.it = self._frames(key)

    def _frames(self, key):
        dec, idx = self.dec, self.dec.idx
        c, seeked = dec.container_at(key)
        self.from_start = self.anchored = not seeked
        s = c.streams.video[dec.stream_index]
        order = DisplayOrder(True) if idx.decode_order else None
        fed, own, serial, sure = 0, {}, -1, self.from_start
        # after a seek, decoding starts at the first keyframe packet that is one of the index's, and every packet
        # after it must be the index's next: a demuxer that landed inside a frame (MPEG-PS) gives a partial packet,
        # then packets stamped with their neighbours' times, whose frames would be numbered as those neighbours
        place, skipped = None, 0
        for pkt in c.demux(s):
            if pkt.size and seeked:
                got = ((pkt.dts if pkt.dts is not None else pkt.pts) if idx.decode_order else pkt.pts, pkt.size,
                       bool(pkt.is_keyframe))
                if place is None:
                    place = idx.key_packets.get(got)
                    self.placed = place is not None
                    if place is None:
                        skipped += 1
                        if skipped > idx.seek_slack:
                            break
                        continue
                else:
                    place += 1
                    if place >= len(idx.packets) or idx.packets[place] != got:
                        break
            if pkt.size:
                fed += 1
                if order is not None:
                    order.fed(pkt.pts, pkt.dts, bool(pkt.is_keyframe))
                    if pkt.pts is not None:
                        own[pkt.pts] = fed
            try:
                frames = pkt.decode()
            except av.error.FFmpegError:  # a damaged packet: it gives no frame (DisplayOrder finds it lost)
                frames = []
            for fr in frames:
                if idx.times is None:
                    serial += 1
                    yield serial, True, fr
                    continue
                if order is not None:
                    n = idx.index_of(order(fr.pts)) if order.times else None  # (an empty heap gives the frame's pts)
                    at = own.pop(fr.pts, None) if fr.pts is not None else None
                    # from the first frame of a packet TRUST after the keyframe on, DisplayOrder has found the
                    # keyframe's leading frames the decoder dropped: that frame and every one after are numbered right
                    sure = trusted = sure or (at if at is not None else fed - REORDER_DEPTH) > TRUST
                else:
                    n, trusted = idx.index_of(fr.pts), True
                if n is not None:
                    yield n, trusted, fr
        else:
            self.done = True
            return
        self.done = self.failed = True


def _next_try(s: _Session, back: int) -> int | None:
    """How many keyframes further back to seek after session ``s`` did not reach the frame asked for: one more when
    its first frame came after that one; after a seek whose packets were not the index's, twice as far (a failed
    seek costs a few packets), and from the start (None) where they stopped being the index's once placed (an
    earlier keyframe would meet the same)."""
    if not s.failed:
        return back + 1
    return None if s.placed else 2 * back + 1


class PyAVDecoder:
    """Serves frame ``n`` as (VS-ordered numpy planes, per-frame props); thread-safe."""

    def __init__(self, path: str | Path, index: PyAVIndex, stream_index: int = 0) -> None:
        self.path, self.idx, self.stream_index = str(path), index, stream_index
        self.layout = index.layout
        self.lock = threading.Lock()
        self.cache: OrderedDict[int, tuple[list[np.ndarray], dict]] = OrderedDict()
        self.container = None
        self.session: _Session | None = None

    def container_at(self, key: tuple[int, int, int] | None):
        """The container positioned at ``key``, and whether it seeked there (None, or a seek the demuxer refuses:
        reopened at the start, as elementary streams are read: its frames are numbered all the same)."""
        if self.container is None and key is not None:
            self._reopen()
        if key is not None:
            s = self.container.streams.video[self.stream_index]
            try:
                self.container.seek(key[1], stream=s, backward=True, any_frame=False)
                s.codec_context.flush_buffers()
                return self.container, True
            except (av.error.FFmpegError, PermissionError, OSError):  # read from the start instead
                pass
        self._reopen()
        return self.container, False

    def _reopen(self) -> None:
        if self.container is not None:
            self.container.close()
        self.container = av.open(self.path)
        self.container.streams.video[self.stream_index].thread_type = "AUTO"

    def _planes(self, frame: av.VideoFrame) -> list[np.ndarray]:
        lay = self.layout
        if frame.format.name != lay.pix_fmt or frame.width != self.idx.width or frame.height != self.idx.height:
            frame = sws.reformat(frame, width=self.idx.width, height=self.idx.height, format=lay.pix_fmt)
        out = []
        item = np.dtype(lay.dtype).itemsize
        for p in lay.order:
            plane = frame.planes[p]
            row = plane.line_size // item
            a = np.frombuffer(plane, dtype=lay.dtype, count=plane.height * row).reshape(plane.height, row)
            out.append(a[:, :plane.width].copy())
        return out

    def _props(self, frame: av.VideoFrame) -> dict:
        """The frame's own properties: _FieldBased, and its _ChromaLocation (subsampled chroma)."""
        field = 0
        if frame.interlaced_frame:
            field = 1 if self.idx.field_order in (3, 5) else 2  # FFmpeg's BB/BT: bottom field first; else top
        props = {"_FieldBased": field}
        loc = int(frame.chroma_location or 0)  # FFmpeg: 0 unspecified, 1 left ... 6 bottom; VS: 0 left ...
        if loc and (self.layout.ssw or self.layout.ssh):
            props["_ChromaLocation"] = loc - 1
        return props

    def _remember(self, i: int, entry) -> None:
        self.cache[i] = entry
        self.cache.move_to_end(i)
        while len(self.cache) > CACHE_FRAMES:
            self.cache.popitem(last=False)

    def _run(self, session: _Session, n: int, convert: bool = True) -> None:
        """Decode on until frame ``n`` (or the end); frames from ``n - CACHE_FRAMES`` on are cached."""
        for i, trusted, fr in session.it:
            if not trusted:
                continue
            if i < n:
                session.anchored = True
            session.last = max(session.last, i)
            if convert and i >= n - CACHE_FRAMES and i not in self.cache:
                self._remember(i, (self._planes(fr), self._props(fr)))
            if i >= n:
                return

    def get(self, n: int) -> tuple[list[np.ndarray], dict]:
        n = min(max(n, 0), self.idx.num_frames - 1)
        with self.lock:
            if n in self.cache:
                self.cache.move_to_end(n)
                return self.cache[n]
            s = self.session
            back: int | None = 0
            if s is not None and not s.done and s.anchored and s.last < n <= s.last + FORWARD_DECODE_LIMIT:
                self._run(s, n)
                if n in self.cache:
                    return self.cache[n]
                if not s.failed:
                    raise self._missing(n)
                back = _next_try(s, back)
            while True:
                key = self.idx.key_for(n, back) if self.idx.seekable and back is not None else None
                s = self.session = _Session(self, key)
                self._run(s, n)
                if n in self.cache:
                    return self.cache[n]
                if s.from_start or (s.anchored and not s.failed):  # decoded up to n from before it: the decoder
                    raise self._missing(n)  # gives no frame n
                back = _next_try(s, back)

    def _missing(self, n: int) -> SourceError:
        return SourceError(f"{self.path}: frame {n} cannot be decoded (the decoder gives no frame there: a damaged "
                           "or cut stream)")

    def first_frame(self) -> None:
        """Frames shown before the first one the decoder gives from the start (an open GOP's leading frames after
        the first keyframe, which lack their references) are not the clip's: its pts-placed frames start there."""
        with self.lock:
            if self.idx.times is None or self.idx.decode_order:  # (counted, or timed from the first frame out)
                return
            for i, _, _ in _Session(self, None).it:
                del self.idx.times[:i]
                break
            self.session = None

    def last_frame(self) -> int:
        """The number of the last frame the decoder really gives (decodes the file's last group of pictures)."""
        with self.lock:
            back, n = 0, self.idx.num_frames - 1
            while True:
                key = self.idx.key_for(n, back) if self.idx.seekable and back is not None else None
                s = self.session = _Session(self, key)
                self._run(s, self.idx.num_frames, convert=False)
                if s.last >= 0 and (s.from_start or (s.anchored and not s.failed)):
                    return s.last
                if s.from_start:
                    raise SourceError(f"{self.path}: the video stream has no decodable frame")
                back = _next_try(s, back)

    def color_props(self) -> dict:
        """VapourSynth frame properties describing the stream's colour (from its first frame)."""
        frame, lay = self.idx.first, self.layout
        props = {}
        if lay.family == "YUV":
            matrix = int(frame.colorspace or 2)
            if matrix in (0, 2, 3):  # rgb/unspecified/reserved: guess from the size like most players
                matrix = 1 if self.idx.height >= 600 else 6
            props["_Matrix"] = matrix  # (_ChromaLocation: each frame's own, _props)
        elif lay.family == "RGB":
            props["_Matrix"] = 0
        for key, value in (("_Primaries", frame.color_primaries), ("_Transfer", frame.color_trc)):
            if value and int(value) not in (0, 2, 3):
                props[key] = int(value)
        # FFmpeg: 1 = MPEG (limited), 2 = JPEG (full); open_clip maps this to _Range (R81+) or _ColorRange
        # (untagged grey is full range, as FFmpeg's swscale and the video command read it)
        pix = self.idx.pix_fmt
        props["full_range"] = (lay.family == "RGB" or frame.color_range == 2 or pix.startswith("yuvj")
                               or (pix.startswith(("gray", "ya")) and frame.color_range != 1))
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
    if index.seekable:  # a cut or damaged stream gives fewer frames than it has packets
        dec.first_frame()
        index.num_frames = dec.last_frame() + 1
    fps = index.fps.limit_denominator(1_000_000)
    blank = core.std.BlankClip(format=index.layout.vs_format(core), width=index.width, height=index.height,
                               length=index.num_frames, fpsnum=fps.numerator, fpsden=fps.denominator, keep=True)
    props = dec.color_props()
    full = props.pop("full_range")
    if vs.RANGE_FULL == 1:  # R81+: _Range, 1 = full
        props["_Range"] = vs.RANGE_FULL if full else vs.RANGE_LIMITED
    else:  # older cores: _ColorRange, 0 = full
        props["_ColorRange"] = 0 if full else 1
    blank = core.std.SetFrameProps(blank, **props)
    timed = index.times is not None

    def fill(n: int, f):
        planes, frame_props = dec.get(n)
        out = f.copy()
        for p, a in enumerate(planes):
            np.copyto(np.asarray(out[p]), a)
        for k, v in frame_props.items():
            out.props[k] = v
        if timed:
            d = index.duration(n)
            out.props["_DurationNum"], out.props["_DurationDen"] = d.numerator, d.denominator
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
