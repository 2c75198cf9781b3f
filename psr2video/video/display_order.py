"""Frame times for files that store decode-order times (AVI; MP4/Matroska muxed without composition offsets),
shared by every reader of frames."""

from __future__ import annotations

import heapq
from fractions import Fraction
from typing import Any


class DisplayOrder:
    """Frame times for a container that stores decode-order times (AVI: one chunk per tick, in decode order, its
    demuxer's "pts" derived from them; an MP4 muxed without composition offsets: pts = dts). Frames come out of
    the decoder in display order, so the k-th frame shown takes the k-th earliest time of the packets fed, as
    players time such files. FFmpeg's best-effort guess (``PtsGuess``) falls back on the dts of the packet fed
    when a frame comes out instead: a reorder delay plus frame threading's late, which put B-frame AVIs and the
    shared data's box_640x480.mp4 two frames behind their sound and lost the times of the frames between.

    ``active``: True (AVI, or a scale-out cut of a source that is), False (never), None: decided at the first
    frame from the packets fed before it (``decide``). A packet that never gives a frame (damage) would leave its
    time behind for good: a time further behind the frame's own packet than any reorder reaches is forgotten."""

    REACH = 32  # frame periods: more than any decoder's reorder depth (H.264: 16)

    @classmethod
    def for_stream(cls, stream: Any, active: bool | None) -> DisplayOrder:
        rate = stream.average_rate or stream.guessed_rate
        tb = Fraction(stream.time_base or Fraction(1, 1000))
        return cls(round(1 / (Fraction(rate) * tb)) if rate else 1, active)

    def __init__(self, period: int, active: bool | None = True) -> None:
        self.reach = self.REACH * max(1, period)  # in the stream's ticks
        self.active = active
        self.times: list[int] = []
        self.seen: list[tuple[int | None, int | None]] = []  # (pts, dts) of the packets fed before deciding

    def fed(self, pts: int | None, dts: int | None) -> None:
        """A packet given to the decoder (not a flush packet)."""
        if self.active is False:
            return
        if self.active is None:
            self.seen.append((pts, dts))
        t = dts if dts is not None else pts
        if t is not None:
            heapq.heappush(self.times, t)

    def decide(self, reorders: bool) -> None:
        """At the first frame: on when the codec reorders (B-frames) and the packets fed so far carry decode-order
        times (pts = dts + a constant, increasing); off otherwise (their own pts are the frames' times)."""
        if self.active is None:
            self.active = reorders and decode_order_times(self.seen)
            self.seen = []
            if not self.active:
                self.times = []

    def __call__(self, own: int | None) -> int | None:
        """The time of the next frame shown; ``own``: its packet's (decode-order) time."""
        if own is not None:
            while len(self.times) > 1 and self.times[0] < own - self.reach:
                heapq.heappop(self.times)
        return heapq.heappop(self.times) if self.times else own


def decode_order_times(packets: list[tuple[int | None, int | None]]) -> bool:
    """Whether packets (pts, dts) in decode order carry decode-order times: every pts a constant after its dts,
    increasing. With B-frames a file muxed with composition offsets has pts going back and varying offsets."""
    if len(packets) < 2 or any(p is None or d is None for p, d in packets):
        return False
    offsets = {p - d for p, d in packets}  # type: ignore[operator]
    rising = all(b[0] > a[0] for a, b in zip(packets, packets[1:], strict=False))  # type: ignore[operator]
    return len(offsets) == 1 and min(offsets) >= 0 and rising


def sorts_times(container: Any) -> bool:
    """Whether frames are timed by ``DisplayOrder`` from the start (the container keeps decode-order times only)."""
    return container.format.name == "avi"


def decided_order(container: Any, stream: Any) -> bool:
    """Whether a reader of ``container`` from its start times ``stream``'s frames by ``DisplayOrder``: the decision
    a single-process run makes, for a scale-out plan (reads up to the first frame; the container is then spent)."""
    if sorts_times(container):
        return True
    order = DisplayOrder.for_stream(stream, None)
    for pkt in container.demux(stream):
        if not pkt.size:
            continue
        order.fed(pkt.pts, pkt.dts)
        try:
            frames = pkt.decode()
        except Exception:  # noqa: BLE001 - a damaged start: what was fed decides
            frames = []
        if frames:
            break
    order.decide(bool(stream.codec_context.has_b_frames))
    return bool(order.active)
