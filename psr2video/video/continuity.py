"""Timestamps made continuous where a container says they may jump (MPEG-TS, MPEG-PS: FFmpeg's TS_DISCONT flag).

Recordings joined byte for byte (``cat a.ts b.ts``, a DVR's split files, a broadcast whose clock restarts) start
their timestamps again at every join. Read as they are, the second recording's frames fall on the first one's
times: the writer can only nudge them a tick apart, and the sound piles up at the join. FFmpeg's command line
corrects this (``ts_discontinuity_detect``: a jump of more than 10 s, or back by more than 0.1 s, moves every
later packet of the file by the jump); so do we, for every stream alike, so sound and picture stay together.
One difference: sound (or any stream but video) going back by up to 1 s is not a jump here. A capture spliced
where the sound overlaps by a fraction of a second keeps its video's times (ffmpeg would open a gap in the
picture), and the writer lays the overlapping sound end to end (``writer.TimestampFixup``).
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import av

from .display_order import DisplayOrder, sorts_times

DELTA_MAX = 10  # s: a jump forward or back by more than this is a discontinuity (ffmpeg's -dts_delta_threshold)
BACK_MAX = {"video": Fraction(1, 10)}  # s: a stream's dts going back by more than this is one too (ffmpeg's)
BACK_MAX_OTHER = 1  # s: for sound and the rest (ffmpeg: 0.1 s, which opens a gap in the picture at a splice)


def discontinuous(container: av.container.InputContainer) -> bool:
    """Whether the container format says its timestamps may jump (so they are corrected)."""
    return bool(container.format.flags & av.format.Flags.ts_discont.value)


class Continuity:
    """Moves packets' pts/dts (in place, all streams of one file) by what the jumps before them added up to.

    The correction goes by dts, stream by stream, against where that stream's next packet was due (its last dts
    plus duration); a jump found on one stream moves the others with it, so they keep their sync. A stream's
    first packet is compared with the file's latest dts instead. Each jump starts an epoch with its own offset;
    a stream stays in its epoch while its packets follow on in it: the MPEG-TS demuxer hands out the first
    recording's last video packet only once the second's first packets (often sound, which found the jump)
    have come, and that packet belongs before the join."""

    def __init__(self, container: av.container.InputContainer) -> None:
        self.active = discontinuous(container)
        self.offsets = [Fraction(0)]  # s, added to a packet's times, one per epoch (the last is the newest)
        self.jumps: list[tuple[float, float]] = []  # (where, in the corrected times; by how much; s) for the note
        self._epoch: dict[int, int] = {}  # stream -> the epoch its latest packet was in
        self._next: dict[int, Fraction] = {}  # stream -> where its next dts is due (s, corrected)
        self._dts: dict[int, Fraction] = {}  # stream -> its latest dts (s, corrected)
        self._last: Fraction | None = None  # the file's latest dts (s, corrected)

    def packets(self, demux: Iterator[av.Packet]) -> Iterator[av.Packet]:
        for pkt in demux:
            self(pkt)
            yield pkt

    def __call__(self, pkt: av.Packet) -> None:
        if not self.active or pkt.time_base is None:
            return
        tb = Fraction(pkt.time_base)
        i = pkt.stream.index
        newest = len(self.offsets) - 1
        if pkt.dts is None or pkt.stream.type not in ("video", "audio"):
            # subtitles and data are sparse (a minute without a line is no jump): they move with the file, as
            # ffmpeg checks only sound and picture
            self._move(pkt, self.offsets[self._epoch.get(i, newest)], tb)
            return
        raw = pkt.dts * tb
        due = self._next.get(i)
        if due is None:
            epoch = newest
            if self._last is not None and abs(raw + self.offsets[epoch] - self._last) > DELTA_MAX:
                epoch = self._jump(self._last - raw, self._last)
        else:
            back = BACK_MAX.get(pkt.stream.type, BACK_MAX_OTHER)

            def follows(e: int) -> bool:
                at = raw + self.offsets[e]
                return abs(at - due) <= DELTA_MAX and at + back >= self._dts[i]

            epoch = next((e for e in range(self._epoch[i], newest + 1) if follows(e)), None)
            if epoch is None:
                epoch = self._jump(due - raw, due)
        self._epoch[i] = epoch
        self._move(pkt, self.offsets[epoch], tb)
        dts = pkt.dts * tb
        self._dts[i] = dts
        self._next[i] = dts + (pkt.duration * tb if pkt.duration else _frame_time(pkt.stream))
        self._last = dts if self._last is None else max(self._last, dts)

    def _jump(self, offset: Fraction, at: Fraction) -> int:
        """A new epoch whose packets move by ``offset`` s, from ``at`` s on (corrected); its index."""
        self.jumps.append((float(at), float(offset - self.offsets[-1])))
        self.offsets.append(offset)
        return len(self.offsets) - 1

    @staticmethod
    def _move(pkt: av.Packet, by: Fraction, tb: Fraction) -> None:
        ticks = round(by / tb)
        if pkt.dts is not None:
            pkt.dts += ticks
        if pkt.pts is not None:
            pkt.pts += ticks

    def note(self) -> str | None:
        """A note for the summary (without "note: "): where the timestamps jumped and were joined up, or None."""
        if not self.jumps:
            return None
        where = ", ".join(f"at {t:.2f} s ({d:+.2f} s)" for t, d in self.jumps[:3])
        more = f" and {len(self.jumps) - 3} more" if len(self.jumps) > 3 else ""
        return (f"the input's timestamps jump (joined recordings?) {where}{more}: the packets after each were "
                "moved to follow on, as ffmpeg does")


# demuxers of elementary streams, which hold no timestamps of their own: the stream's "average rate" is the
# demuxer's default (25) or its tick (DV: 60000), and FFmpeg's guess from the bitstream is the frame rate
ELEMENTARY = frozenset({"h264", "hevc", "vvc", "mpegvideo", "m4v", "cavsvideo", "vc1", "dv", "obu", "avs2", "avs3",
                        "dirac", "rawvideo"})


def video_rate(s: av.stream.Stream) -> Fraction | None:
    """A video stream's frame rate: the average over its timestamps, as ffmpeg reports it; for an elementary
    stream (a raw .h264 written at 30 fps was timed at 25 and ran 20% slow; DV said 60000 fps, which MP4 refused
    after the work), or an average no video has (1000 fps and above: a Matroska stream remuxed from a VFR MP4
    averages its 1 ms tick, 1000/1, where FFmpeg's own guess, av_guess_frame_rate, gives its r_frame_rate), FFmpeg's
    guessed rate."""
    avg, guess = s.average_rate, s.guessed_rate
    fmt = getattr(getattr(getattr(s, "container", None), "format", None), "name", "")
    if guess and (set(fmt.split(",")) & ELEMENTARY or (avg and avg >= 1000)):
        return Fraction(guess)
    return Fraction(avg) if avg else Fraction(guess) if guess else None


def _frame_time(stream: av.stream.Stream) -> Fraction:
    """A packet's length when the demuxer gives none: one frame (video) or one audio frame, else nothing."""
    if stream.type == "video":
        rate = video_rate(stream)
        return 1 / rate if rate else Fraction(0)
    if stream.type == "audio":
        cc = stream.codec_context
        if cc.frame_size and cc.sample_rate:
            return Fraction(cc.frame_size, cc.sample_rate)
    return Fraction(0)


def container_alpha(stream: av.stream.Stream) -> bool:
    """Whether a VP9 stream's alpha rides in its container (WebM/Matroska ``alpha_mode``: the usual transparent
    video), which FFmpeg's own vp9 decoder skips."""
    return stream.codec_context.name == "vp9" and str(stream.metadata.get("alpha_mode", "")) == "1"


def alpha_decoder(stream: av.stream.Stream) -> av.CodecContext | None:
    """libvpx's VP9 decoder for a stream with ``container_alpha``, which reads it (the pictures and animations
    made from it were opaque); None for any other stream, or a build without libvpx."""
    if not container_alpha(stream):
        return None
    try:
        return av.CodecContext.create("libvpx-vp9", "r")
    except Exception:  # noqa: BLE001 - not in this FFmpeg build
        return None


def decode(c: av.container.InputContainer, stream: av.stream.Stream) -> Iterator[av.VideoFrame]:
    """``c.decode(stream)`` with the times the video reader gives its frames (joined recordings follow on; an
    file with decode-order times, an AVI, has its frames take their packets' times in display order)."""
    order = DisplayOrder(True if sorts_times(c) else None)
    alpha = alpha_decoder(stream)
    for pkt in Continuity(c).packets(c.demux(stream)):
        if pkt.size:
            order.fed(pkt.pts, pkt.dts, bool(pkt.is_keyframe))
        for fr in (pkt.decode() if alpha is None else alpha.decode(pkt)):
            if order.active is None:
                order.decide(bool(stream.codec_context.has_b_frames))
            if order.active:
                fr.pts = order(fr.pts)
            yield fr
