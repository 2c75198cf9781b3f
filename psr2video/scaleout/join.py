"""Join the encoded segments into the output by stream copy, with the source's other streams copied once.

The video packets of the segments go in order (each segment's timestamps are the source's own, so the
joined stream has the single-process run's timestamps); audio, subtitles, attachments, data, chapters and
metadata come from the source through the pipeline's ``Writer`` (the same rules as a single-process run:
what the output format can't hold is named, never dropped silently). Packets go to the muxer interleaved by
time. The output is written under the pipeline's temporary name and renamed at the end.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import re
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from ..video.reader import exact_ticks, fill_dts


class JoinError(Exception):
    """The segments can't be joined (they were encoded differently)."""


def _video_packets(files: list[Path], stream: Any, tb: Fraction, fixed: list[int] | None = None, tick: int = 1,
                   moved: int = 0, placed: bool = False, end: int | None = None,
                   lengths: dict[Fraction, Fraction] | None = None, ends_by_dts: bool = False
                   ) -> Iterator[tuple[float, int, Any]]:
    """The segments' video packets in order, retimed to the output's time base ``tb`` (exact when it is the
    source's: NUT refines it; rounded when it is coarser, e.g. AVI's one tick per frame).

    Presentation times are kept strictly increasing across the whole stream as a single-process run's writer
    keeps them: a frame less than ``tick`` (one tick of the muxer's time base) after the one before it is moved
    to that. A segment's frames were
    nudged that way already, but each segment starts afresh: a source whose packets carry their times in
    decode order (B-frames in AVI, some remuxed Matroska) pushes a segment's last frames past the next
    segment's first ones. A segment's times are read first (a pass over its packets' headers) for that; the
    frames moved are counted in ``fixed[0]``.

    NUT stores presentation times only: with B-frames its demuxer gives no dts for a segment's first packets
    (the reorder delay), and Matroska's muxer refuses a packet without one. Those are filled in going back
    from the first known dts by the steps between the segment's first frames (what the encoder wrote: the k-th
    dts is the k-th presentation time less the delay; going back by durations put an MPEG-TS output's every
    stream a tick off the single-process one's), and dts is kept strictly increasing across the cuts. A part
    (--start) moves every time back by ``moved`` ticks.

    ``placed`` (AVI, which stores no pts: a chunk's time is its place) gives the i-th packet in decode order the
    i-th time in presentation order as both its times, as the single-process writer does; a variable-rate
    source's frames, nudged onto ticks, otherwise got a pts before their shifted dts and the muxer refused them.

    A frame lasts what its packet lasts in the source (``lengths``: the source's packet durations by their times,
    in seconds), or has no duration (the container's default), as in a single-process run, where the decoder hands
    each frame its packet's duration and the encoder gives none to the others: a segment's NUT keeps no durations,
    and its demuxer guessed them (none for a segment's first packets, its average frame after them; an AVI
    source into Matroska got 1 ms and 42 ms frames).
    ``end``: a part's end (--end, ``tb`` ticks before the move): a frame is shown up to it at most, as the
    single-process reader cuts its frames' durations (the last one kept its whole duration past the part's end).
    ``ends_by_dts`` (MP4/MOV, which end a track at its last packet in decode order): that packet is made to reach
    the end of the last frame shown, as the single-process writer makes it (a part's MP4 track was a tick short).
    """
    n, last_dts, last_pts = 0, None, None
    held: tuple[float, int, Any] | None = None  # the latest packet, given out when the next one comes
    shown_end: int | None = None
    delay: int | None = None
    for f in files:
        with av.open(str(f)) as c:
            s = c.streams.video[0]
            stb = Fraction(s.time_base)
            order = sorted(p.pts for p in c.demux(s) if p.size and p.pts is not None)  # presentation order
        # each time of the segment -> its output time (the single-process rule, carried over from the segments
        # before); the i-th packet in decode order moves its dts as the i-th frame in presentation order moves
        # (dts_i <= the i-th presentation time, so dts stays <= pts and increasing)
        when: dict[int, int] = {}
        shift: list[int] = []
        for y in order:
            t = u = exact_ticks(y * stb / tb)
            if last_pts is not None and t < last_pts + tick:
                t = last_pts + tick
            if fixed is not None and (t != u or y in when):
                fixed[0] += 1
            when[y] = last_pts = t
            shift.append(t - u)
        with av.open(str(f)) as c:
            s = c.streams.video[0]
            pending: list[Any] = []  # the leading packets without a dts, until one has it
            shown = [when[y] - moved for y in order]  # the output times in presentation order
            i = -1
            for pkt in itertools.chain(c.demux(s), [None]):  # streamed: a segment can be gigabytes
                if pkt is not None:
                    if not pkt.size:
                        continue
                    i += 1
                    d = shift[i] if i < len(shift) else 0
                    p = av.Packet(bytes(pkt))
                    p.pts = None if pkt.pts is None else when[pkt.pts] - moved
                    p.dts = None if pkt.dts is None else exact_ticks(pkt.dts * stb / tb) + d - moved
                    if placed and i < len(order):
                        p.dts = p.pts = when[order[i]] - moved
                    p.duration = exact_ticks(pkt.duration * stb / tb) if pkt.duration else 0
                    if lengths is not None and pkt.pts is not None:
                        length = lengths.get(pkt.pts * stb)
                        p.duration = max(1, exact_ticks(length / tb)) if length else 0
                    if end is not None and p.duration and p.pts is not None:
                        p.duration = max(0, min(p.duration, end - moved - p.pts))
                    p.time_base = tb
                    p.is_keyframe = pkt.is_keyframe
                    p.stream = stream
                    pending.append(p)
                    if p.dts is None:
                        continue
                _fill_dts(pending, shown, i - len(pending) + 1)
                for q in pending:
                    if last_dts is not None and q.dts is not None and q.dts < last_dts + tick:
                        q.dts = last_dts + tick
                    last_dts = q.dts if q.dts is not None else last_dts
                    t = float((q.dts if q.dts is not None else (q.pts or 0)) * tb)
                    n += 1
                    if q.pts is not None and q.duration:
                        shown_end = max(shown_end or 0, q.pts + q.duration)
                    if delay is None and q.pts is not None and q.dts is not None:
                        delay = q.pts - q.dts  # the edit list shows the track from its first pts
                    if held is not None:
                        yield held
                    held = t, n, q
                pending = []
    if held is not None:
        last = held[2]
        if ends_by_dts and last.dts is not None and shown_end is not None and \
                shown_end - (delay or 0) > last.dts + last.duration:
            last.duration = shown_end - (delay or 0) - last.dts
        yield held


def _fill_dts(pending: list[Any], shown: list[int], first: int) -> None:
    """dts for the packets without one before the last of ``pending`` (decode-order indices ``first``...): back from
    its dts by the steps between the presentation times ``shown`` of the same indices, as an encoder with a
    reorder delay times them; ``fill_dts`` (by durations) where those times are not known."""
    last = first + len(pending) - 1
    if len(pending) < 2 or pending[-1].dts is None or first < 0 or last >= len(shown):
        fill_dts(pending)
        return
    d = pending[-1].dts
    for k in range(len(pending) - 2, -1, -1):
        d -= shown[first + k + 1] - shown[first + k]
        if pending[k].dts is None:
            pending[k].dts = d


def _source_packets(inp: Any, streams: list[Any], window: Any = None) -> Iterator[tuple[float, int, Any]]:
    """The source's packets of the copied ``streams``; with a part (``window``), those the single-process reader
    keeps (``PacketCut``: in the part, moved with it; a subtitle on screen at its start from there), read from
    ``SUBTITLE_LOOKBACK`` s before it to ``INTERLEAVE`` s past its end."""
    if not streams:
        return
    cut = None
    if window is not None:
        from ..video.reader import INTERLEAVE, SUBTITLE_LOOKBACK
        from ..video.trim import PacketCut, seek

        cut = PacketCut(window)
        if not window.open_start and window.lo - SUBTITLE_LOOKBACK > Fraction(inp.start_time or 0, 1_000_000):
            seek(inp, window.lo - SUBTITLE_LOOKBACK)
        until = None if window.hi is None else float(window.hi) + INTERLEAVE
    n = 0
    for pkt in inp.demux(*streams):
        if pkt.dts is None:  # demuxer flush packet (what the single-process reader drops too)
            continue
        if cut is not None:
            if until is not None and pkt.dts * pkt.time_base > until:
                break
            if not cut(pkt):
                continue
            for q in cut.on_screen():  # the part has begun: the bitmap subtitles on screen go first
                n += 1
                yield float(q.dts * q.time_base), -n, q
        ts = pkt.dts
        n += 1
        yield float(ts * pkt.time_base), -n, pkt
    if cut is not None:  # on screen at the part's start, with no kept packet after it to go before (an ASS line
        for q in cut.on_screen():  # rewritten for the part, a bitmap subtitle, in a file of video and subtitles)
            n += 1
            yield float(q.dts * q.time_base), -n, q


def _headers(codec: str, extradata: bytes) -> bytes:
    """The codec headers that must match across segments. HEVC's without its SEI NAL units: x265 writes its
    settings there, and frame-threads / numa-pools follow each node's core count (informational only)."""
    if codec != "hevc" or not extradata.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")):
        return extradata
    nals = [n.rstrip(b"\x00") for n in re.split(b"\x00\x00\x01", extradata) if n.strip(b"\x00")]
    return b"\x00\x00\x01".join(n for n in nals if (n[0] >> 1) & 0x3F not in (39, 40))  # prefix/suffix SEI


def check_headers(files: list[Path]) -> None:
    """All segments must share codec, size, pixel format and codec headers to be one stream."""
    first = None
    for f in files:
        with av.open(str(f)) as c:
            cc = c.streams.video[0].codec_context
            key = (cc.name, cc.width, cc.height, cc.pix_fmt, _headers(cc.name, bytes(cc.extradata or b"")))
        if first is None:
            first = key
        elif key != first:
            raise JoinError(f"segment {f.name} was encoded with other parameters ({key[:4]} vs {first[:4]}); "
                            "remove the work folder and run again")


def source_lengths(source: str, packets: list[Any] | None = None, time_base: Fraction | None = None
                   ) -> dict[Fraction, Fraction]:
    """The durations of the source's video packets that have one, by their pts (seconds): ``split.scan``'s
    ``packets`` in ``time_base``, or scanned here."""
    if packets is None or time_base is None:
        from .split import scan

        packets, time_base = scan(source)
    tb = Fraction(time_base)
    return {p.pts * tb: p.duration * tb for p in packets if p.pts is not None and p.duration}


def join(source: str, files: list[Path], output: str, codec: str, fmt: str | None,
         warn: Callable[[str], None] = print, window: Any = None, square_pixels: bool = False,
         lengths: dict[Fraction, Fraction] | None = None, crop: Any = None) -> tuple[int, int]:
    """Write ``output`` from the segment ``files`` and the source's other streams; (the video packet count, the
    frames whose times the join moved to keep them increasing across the segments). ``window``: a part
    (--start/--end): every stream moved back with it, the other streams, chapters and timecode cut to it.
    ``crop``: --crop (a Crop): bitmap subtitles placed on the cropped frame, as the single-process writer does.
    ``square_pixels``: --size resampled to square pixels (else the source's pixel shape is carried).
    ``lengths``: ``source_lengths`` (scanned here when not given)."""
    from ..video.pipeline import output_colour, output_container, partial_path
    from ..video.reader import PacketItem, main_video, open_input, stream_info
    from ..video.writer import EndOfVideo, Writer, ffmpeg_reason
    from .split import source_frame_facts

    check_headers(files)
    tmp = partial_path(output)
    writer = None
    ok = False
    with open_input(source) as inp, av.open(str(files[0])) as first:
        try:
            info = stream_info(inp)
            vin = main_video(inp)
            copy = [s for s in inp.streams if s is not vin and s.type in ("audio", "subtitle", "data",
                                                                          "attachment", "video")]
            template = first.streams.video[0]
            # the tags of the codes the segments wrote (limited where OUT can't record full range; yuvj: full)
            out_color, notes = output_colour(info.color, template.codec_context.pix_fmt, codec,
                                             output_container(output, fmt))
            for line in notes:
                warn(line)
            writer = Writer(tmp, inp, copy, width=template.codec_context.width,
                            height=template.codec_context.height, codec=codec,
                            pix_fmt=template.codec_context.pix_fmt, crf=None, preset=None,
                            time_base=info.time_base, rate=info.rate, color_tags=out_color.output_tags(), fmt=fmt,
                            warn=warn, first=source_frame_facts(source),
                            video_template=template, out_name=output, window=window, square_pixels=square_pixels,
                            crop=crop)
            copied = [s for s in copy if s.index in writer.copy_map]
            writer.start()
            fixed = [0]
            tb = Fraction(writer.time_base)  # the source's; AVI: one tick per frame of the source's rate
            moved = 0 if window is None else window.ticks(tb)
            end = None if window is None or window.hi is None else math.ceil(window.hi / tb)
            if lengths is None:
                lengths = source_lengths(source)
            merged = heapq.merge(_video_packets(files, writer.vstream, tb, fixed, writer._tick, moved,
                                                placed=writer._avi, end=end, lengths=lengths,
                                                ends_by_dts=writer._track_ends_by_dts),
                                 _source_packets(inp, copied, window), key=lambda x: (x[0], x[1]))
            try:
                for _, _, pkt in merged:
                    writer.put(PacketItem(pkt))
                writer.put(EndOfVideo())
                writer.join()
                if writer.error is not None:
                    raise writer.error
                writer.close()
                if writer.error is not None:
                    raise writer.error
            except av.error.FFmpegError as e:  # the muxer refused a packet: said in one line, segments kept
                raise JoinError(f"the muxer refused the joined video ({ffmpeg_reason(e)})") from None
            # copied streams' timestamps fixed, re-encoded audio's damaged packets; what the container lost of them
            for line in writer.fixup_notes() + writer.lost_facts():
                warn(f"note: {line}")
            Path(tmp).replace(output)
            ok = True
            return writer.frames, fixed[0]
        finally:
            if not ok:
                if writer is not None:
                    with contextlib.suppress(BaseException):
                        writer.close()
                Path(tmp).unlink(missing_ok=True)
