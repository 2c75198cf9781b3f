"""Split the source's video at keyframes into segments, by stream copy (nothing is re-encoded at a cut).

One pass reads only the video packets' headers (pts, dts, keyframe flag) from the demuxer; segment
boundaries are keyframes chosen near even steps of ``seconds``. A segment keeps the frames whose pts lies in
``[start, end)`` (the keyframe's pts up to the next boundary's).

Open GOP: after a non-IDR keyframe K the decoder meets "leading" frames (pts < K's pts) that reference the
previous GOP. The segment before K therefore carries the packets up to the last one (before the keyframe after
K) whose pts lies in its own range, so it decodes its leading frames with all their references; the segment
starting at K decodes them too but drops them (pts < start). With closed GOPs both rules reduce to "packets
from one boundary keyframe to the next".
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import av

from ..video.continuity import Continuity

CUT_FORMAT = "nut"  # any codec, global headers, a time base that refines the source's (exact times)
# timestamps as they are: the default shift of negative dts (B-frame delay) would move every pts
CUT_OPTIONS = {"avoid_negative_ts": "disabled"}
LOOKAHEAD = 32  # dts handed on past a cut: more than any decoder's reorder delay plus frame-threading latency
CUT_LOOKAHEAD = 8  # packets past a cut that go into it (decoded, not kept): more than a B-pyramid's reorder delay


@dataclass(frozen=True)
class Packet:
    pts: int | None
    dts: int | None
    key: bool
    size: int
    duration: int = 0  # in the stream's time base; 0 when the container gives none
    idr: bool | None = None  # keyframes of H.264/HEVC: an IDR (closed GOP) or not (open: leading frames); else None
    jump: bool = False  # the timestamps jump here (MPEG-TS/PS joined recordings): a single run moves what follows
    discard: bool = False  # decoded, not shown: the container says so (outside an MP4 edit list); a cut loses it


@dataclass(frozen=True)
class Segment:
    """One piece of work: the frames with ``start <= pts < end`` (None = open) from packets first..last."""

    index: int
    start: int | None
    end: int | None
    first: int  # decode-order packet indices (inclusive) of the source's video stream
    last: int
    time_base: Fraction

    @property
    def start_s(self) -> float:
        return float(self.start * self.time_base) if self.start is not None else 0.0

    def span(self, end_s: float | None = None) -> str:
        """'12.00-18.50 s' for messages."""
        end = float(self.end * self.time_base) if self.end is not None else end_s
        return f"{self.start_s:.2f}-{end:.2f} s" if end is not None else f"{self.start_s:.2f} s-end"

    def keeps(self, pts: int | None) -> bool:
        if pts is None:
            return True
        return (self.start is None or pts >= self.start) and (self.end is None or pts < self.end)


def scan(path: str) -> tuple[list[Packet], Fraction]:
    """Every packet of the first video stream in decode order (headers only, no decoding)."""
    from ..video.reader import main_video

    with av.open(path) as c:
        s = main_video(c)
        tb = s.time_base or Fraction(1, 1000)
        codec = s.codec_context.name
        ext = bytes(s.codec_context.extradata or b"")
        # avcC / hvcC extradata: NAL units carry length prefixes of the size it says; else Annex B start codes
        at = 4 if codec == "h264" else 21
        prefix = (ext[at] & 3) + 1 if ext.startswith(b"\x01") and len(ext) > at else 0
        continuity = Continuity(c)
        pkts = []
        for p in c.demux(s):
            if not p.size:
                continue
            pts, dts, jumps = p.pts, p.dts, len(continuity.jumps)
            continuity(p)  # (only to find jumps: the cuts and the join read the file's own times)
            pkts.append(Packet(pts, dts, bool(p.is_keyframe), p.size, p.duration or 0,
                               _idr(codec, bytes(p), prefix) if p.is_keyframe else None,
                               len(continuity.jumps) > jumps, bool(p.is_discard)))
    return pkts, tb


def shown_span(packets: list[Packet]) -> tuple[int | None, int | None] | None:
    """The pts of the first frame the source shows and the first past its last one, when its container discards
    some packets (outside an MP4 edit list: a single run's decoder drops their frames, but a cut keeps no such
    mark, so a segment drops them by their times); None when it discards none."""
    if not any(p.discard for p in packets):
        return None
    pts = [p.pts for p in packets if not p.discard and p.pts is not None]
    if not pts:
        return None
    return min(pts), max(pts) + 1


def shown(packets: list[Packet]) -> list[int]:
    """The pts of the frames a single run's decoder gives out, sorted, as far as the headers tell: not the
    packets before the first keyframe, nor that keyframe's leading frames (pts before it), whose references are
    missing (a TS capture, an HLS piece or a stream-copied cut that starts mid-GOP), nor the discarded ones. A
    decoder that conceals such frames gives more; the first segment, which decodes from the first packet as a
    single run does, then keeps them too."""
    first = next((i for i, p in enumerate(packets) if p.key and p.pts is not None), None)
    if first is None:
        return sorted(p.pts for p in packets if p.pts is not None and not p.discard)
    k0 = packets[first].pts
    return sorted(p.pts for p in packets[first:] if p.pts is not None and p.pts >= k0 and not p.discard)


def timing_problem(packets: list[Packet], time_base: Fraction) -> str | None:
    """Why the video's timestamps can't be cut across workers, or None. The cuts are muxed with the source's
    own times (the NUT muxer takes only increasing dts) and segments keep frames by them; a single process reads
    any: it moves joined recordings' times to follow on and nudges repeated ones."""
    def at(p: Packet) -> float:
        return float((p.dts if p.dts is not None else p.pts or 0) * time_base)

    for a, b in zip(packets, packets[1:], strict=False):
        if b.jump:
            return f"its timestamps jump from {at(a):.2f} s to {at(b):.2f} s (joined recordings?)"
        if a.dts is not None and b.dts is not None and b.dts <= a.dts:
            return f"its video timestamps do not increase at {float(b.dts * time_base):.2f} s"
    return None


def _idr(codec: str, data: bytes, prefix: int) -> bool | None:
    """Whether a keyframe's first picture NAL unit is an IDR (H.264 type 5; HEVC IDR 19/20, where CRA/BLA are
    open), reading Annex B start codes (``prefix`` 0) or ``prefix``-byte lengths; None for other codecs or what
    doesn't parse."""
    if codec not in ("h264", "hevc"):
        return None
    nals: list[bytes] = []
    if not prefix:
        nals = [n.lstrip(b"\x00") for n in data.split(b"\x00\x00\x01")]
    else:
        i = 0
        while i + prefix <= len(data):
            n = int.from_bytes(data[i:i + prefix], "big")
            nals.append(data[i + prefix:i + prefix + n])
            i += prefix + n
    for n in nals:
        if not n:
            continue
        if codec == "h264":
            t = n[0] & 0x1F
            if 1 <= t <= 5:
                return t == 5
        else:
            t = (n[0] >> 1) & 0x3F
            if t <= 31:
                return t in (19, 20)
    return None


def plan(packets: list[Packet], time_base: Fraction, seconds: float, min_segments: int = 1,
         closed_only: bool = False, part: tuple[int | None, int | None] | None = None) -> list[Segment]:
    """Segments of about ``seconds`` each (at least ``min_segments`` when there are enough keyframes).
    ``closed_only``: cut only at IDR keyframes (a source with decode-order times: an open GOP's leading frames
    can't be told apart by their times there). ``part``: the pts (in ``time_base``, None = open) of the first frame
    of a part (--start) and of its end (--end): only its frames are planned; the first segment reads from the
    keyframe before it, the last to its last packet. [] when no frame lies in the part."""
    if not packets:
        return []
    lo, hi = part or (None, None)

    def cuttable(i: int) -> bool:
        p = packets[i]
        return p.key and p.pts is not None and not (closed_only and p.idr is False)

    keys = [i for i in range(1, len(packets)) if cuttable(i) and in_part(packets[i].pts, part) and packets[i].pts != lo]
    pts = [p.pts for p in packets if in_part(p.pts, part)]
    if not pts:
        return []
    t0, t1 = min(pts), max(pts)
    if lo is not None:
        t0 = lo
    dur = float((t1 - t0) * time_base)
    step = min(seconds, dur / min_segments) if min_segments > 1 and dur > 0 else seconds
    cuts: list[int] = []
    nxt = t0 + step / time_base
    for i in keys:
        if packets[i].pts >= nxt and (not cuts or packets[i].pts > packets[cuts[-1]].pts):
            cuts.append(i)
            nxt = packets[i].pts + step / time_base
    begin = 0  # a part: the keyframe (decode order) at or before its first frame
    if lo is not None:
        begin = max((i for i in range(len(packets)) if cuttable(i) and packets[i].pts <= lo), default=0)
    bounds = [begin, *cuts, len(packets)]
    segs = []
    for k in range(len(bounds) - 1):
        first = bounds[k]
        last_segment = k + 1 == len(bounds) - 1
        start = packets[first].pts if k > 0 else lo
        end = hi if last_segment else packets[bounds[k + 1]].pts
        last = bounds[k + 1] - 1
        if not last_segment:  # open GOP: the next keyframe's leading frames belong to this segment
            stop = bounds[k + 2] if k + 2 < len(bounds) else len(packets)
            for j in range(bounds[k + 1], stop):
                if packets[j].pts is not None and packets[j].pts < end:
                    last = j
        elif hi is not None:  # a part's end: its last packet (decode order), not the file's
            last = max((j for j in range(first, len(packets)) if packets[j].pts is not None
                        and packets[j].pts < hi), default=first)
        segs.append(Segment(k, start, end, first, last, time_base))
    return segs


def in_part(pts: int | None, part: tuple[int | None, int | None] | None) -> bool:
    """Whether a packet's ``pts`` lies in ``part`` (``plan``'s: first pts in it, first past it; None = open)."""
    lo, hi = part or (None, None)
    return pts is not None and (lo is None or pts >= lo) and (hi is None or pts < hi)


def cut(path: str, segments: list[Segment], wanted: set[int], drop_from: int | None = None) -> CutIter:
    """Yield (segment, bytes of a video-only NUT file) for the wanted segments, in order, in one demux pass.
    ``drop_from``: the decode-order index from which the source's packets are all discarded (``discarded_tail``):
    they are left out of the cuts."""
    return CutIter(path, segments, wanted, drop_from)


def discarded_tail(packets: list[Packet]) -> int | None:
    """The index of the first of the packets at the end (decode order) that the container discards (an MP4 edit
    list that ends before them), or None. A single run's decoder decodes and drops their frames; a cut leaves them
    out, so that the frames before them come out of the decoder as in a single run (with the times that the
    decode order gives them, where the source's times are decode-order ones)."""
    i = len(packets)
    while i > 0 and packets[i - 1].discard:
        i -= 1
    return i if 0 < i < len(packets) else None


class CutIter:
    """One pass over the source's video packets, muxing each wanted segment's packets into memory."""

    def __init__(self, path: str, segments: list[Segment], wanted: set[int], drop_from: int | None = None) -> None:
        self.path, self.segments, self.wanted, self.drop_from = path, segments, wanted, drop_from

    def __iter__(self):
        from ..video.reader import main_video
        from ..video.writer import stream_from_template

        todo = [s for s in self.segments if s.index in self.wanted]
        if not todo:
            return
        with av.open(self.path) as c:
            vin = main_video(c)
            # segments being written (usually one or two: a segment's lead-in overlaps its neighbour), so each
            # packet costs O(open), not O(segments)
            open_: dict[int, tuple[Segment, io.BytesIO, av.container.OutputContainer, av.stream.Stream]] = {}
            pending = list(todo)
            past: set[int] = set()  # segments whose look-ahead past the cut has ended
            dated: dict[int, int] = {}  # segment -> the dts of its cut's last dated packet
            i = -1
            for pkt in c.demux(vin):
                if not pkt.size:
                    continue
                i += 1
                while pending and pending[0].first == i:
                    s = pending.pop(0)
                    buf = io.BytesIO()
                    out = av.open(buf, "w", format=CUT_FORMAT, options=CUT_OPTIONS)
                    open_[s.index] = (s, buf, out, stream_from_template(out, vin))
                for s, _, out, o in open_.values():
                    if i > s.last and (s.index in past or not _lookahead(s, i, pkt.pts)):
                        past.add(s.index)  # the look-ahead stops at the first packet it can't take
                        continue
                    if s.first <= i and (self.drop_from is None or i < self.drop_from):
                        p = av.Packet(bytes(pkt))
                        p.pts, p.dts, p.duration, p.time_base = pkt.pts, pkt.dts, pkt.duration, pkt.time_base
                        p.is_keyframe = pkt.is_keyframe
                        p.stream = o
                        last = dated.get(s.index)
                        if p.dts is None and last is not None and (p.pts is None or p.pts > last):
                            # NUT takes no dts-less packet after dated ones (Matroska with B-frames that starts
                            # mid-GOP has them before its first keyframe); the segment's reader times its frames
                            # by the scan's dts, not by these
                            p.dts = last + 1
                        if p.dts is not None:
                            dated[s.index] = p.dts
                        out.mux(p)
                for s, buf, out, _ in [v for v in open_.values() if _closes(v[0], i)]:
                    del open_[s.index]
                    out.close()
                    yield s, buf.getvalue()
                if not open_ and not pending:
                    return
            for s, buf, out, _ in list(open_.values()):  # the source ended early (fewer packets than scanned)
                out.close()
                yield s, buf.getvalue()


def _lookahead(seg: Segment, i: int, pts: int | None) -> bool:
    """Whether packet ``i`` (decode order) goes into ``seg``'s cut after its last packet: up to ``CUT_LOOKAHEAD``
    packets the segment does not keep (pts >= its end), so that the decoder gives out the frames it still holds
    as it does in a single-process run (one packet can release two frames, each with that packet's dts)."""
    return (seg.end is not None and pts is not None and pts >= seg.end
            and seg.last < i <= seg.last + CUT_LOOKAHEAD)


def _closes(seg: Segment, i: int) -> bool:
    return i >= (seg.last + CUT_LOOKAHEAD if seg.end is not None else seg.last)


def source_id(path: str) -> dict[str, object]:
    """What identifies the source for resuming: name, size and modification time."""
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def truncation(path: str, packets: list[Packet], time_base: Fraction) -> str:
    """The single-process reader's 'input stops at ...' for the source, from its scanned packets ('' if whole),
    with the frame period it uses: the last frame's duration or the step to it, whichever is longer (a VFR
    source's long last frame is not a lost tail)."""
    from ..video.reader import truncation as ends_early

    timed = sorted((p.pts, p.duration) for p in packets if p.pts is not None)
    if not timed:
        return ""
    last, duration = timed[-1]
    step = last - timed[-2][0] if len(timed) > 1 else 0
    with av.open(path) as c:
        return ends_early(c, float(last * time_base), float(max(duration, step) * time_base))


def source_color(path: str) -> object:
    """The source's colour decision (pipeline's ColorInfo), made once from the source itself: the cuts are NUT,
    which keeps no container colour tags, and every segment must convert with the single-process matrix."""
    return source_info(path).color


def source_info(path: str) -> Any:
    """The source's StreamInfo (its colour decision and frame rate, which the cuts can't tell)."""
    from ..video.reader import stream_info

    with av.open(path) as c:
        return stream_info(c)


def source_shape(path: str) -> tuple[Fraction, int]:
    """The source's pixel shape and display rotation, for --size: the cuts are NUT, which keeps no display
    matrix, and every segment must fit the box as a single-process run does."""
    from ..video.reader import main_video, pixel_shape

    with av.open(path) as c:
        sar = pixel_shape(main_video(c))
    return sar, source_frame_facts(path).rotation


def source_frame_facts(source: str) -> Any:
    """The display matrix and field order of the source's first frame (a FirstFrame), for the output's video
    stream: the segments are NUT, which keeps neither. HDR10 metadata is left out: every segment's encoder
    was given it, so it is in the segments' bitstream already."""
    from ..video.reader import FirstFrame, first_frame, main_video

    try:
        with av.open(source) as c:
            s = main_video(c)
            for frame in c.decode(s):
                f = first_frame(frame, s.codec_context)
                return FirstFrame(rotation=f.rotation, interlaced=f.interlaced, field_order=f.field_order,
                                  lost=f.lost)
    except av.error.FFmpegError:  # a damaged start: the segments and the run already say so
        pass
    return FirstFrame()


def check_geometry(path: str, crop: Any, size: Any, fmt: str | None = None) -> None:
    """Refuse, before the source is split, a --crop or --size that can't apply to it (CropError, SizeError): a
    single run finds it at set-up, but every segment would fail on its own, and be retried."""
    from ..video.reader import open_input, stream_info

    with open_input(path, fmt) as c:
        info = stream_info(c)
    w, h = crop.apply(info) if crop else (info.width, info.height)
    if size is not None:
        size.fit(w, h, *source_shape(path))


class TimeGuess(NamedTuple):
    """How a single-process run times the source's frames: ``PtsGuess``'s counts after the first frames (a
    source with decode-order times has settled on dts by then, as a single-process run has at any later cut),
    and whether frames take their packets' times in display order (``DisplayOrder``: AVI, decode-order MP4)."""

    faulty_pts: int
    faulty_dts: int
    sorted: bool = False


def guess_state(path: str) -> TimeGuess:
    """The source's ``TimeGuess`` (``reader.guess_state``, ``display_order.decided_order``)."""
    from ..video.display_order import decided_order
    from ..video.reader import guess_state as state
    from ..video.reader import main_video

    with av.open(path) as c:
        guess = state(c)
    with av.open(path) as c:
        return TimeGuess(*guess, decided_order(c, main_video(c)))


def timing(packets: list[Packet], time_base: Fraction, seg: Segment, guess: TimeGuess,
           rate: Fraction | None = None) -> object:
    """The segment's ``SourceTiming``: its packets' dts from the scan and those of the ``LOOKAHEAD`` packets
    after it (the frames the decoder still holds at the cut come out with those in a single-process run), and
    ``guess`` after the first segment (the first starts where a single-process run starts, afresh)."""
    from ..video.reader import SourceTiming

    return SourceTiming(tuple(p.dts for p in packets[seg.first:seg.last + 1 + LOOKAHEAD]), time_base,
                        tuple(guess[:2]) if seg.start is not None else (0, 0), guess.sorted, rate)
