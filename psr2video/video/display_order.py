"""Frame times for containers that store decode-order times only (AVI), shared by every reader of frames."""

from __future__ import annotations

import heapq
from fractions import Fraction
from typing import Any


class DisplayOrder:
    """Frame times for a container that stores none per frame (AVI: one chunk per tick, in decode order; its
    demuxer's "pts" are decode-order times). Frames come out of the decoder in display order, so the k-th frame
    shown takes the k-th earliest time of the packets fed, as players time AVI. FFmpeg's best-effort guess
    (``PtsGuess``) falls back on the dts of the packet fed when a frame comes out instead: a reorder delay plus
    frame threading's late, which moved B-frame AVIs 80 ms behind their sound and dropped a frame's time.

    A packet that never gives a frame (damage) would leave its time behind for good: a time further behind the
    frame's own packet than any reorder reaches is forgotten."""

    REACH = 32  # frame periods: more than any decoder's reorder depth (H.264: 16)

    @classmethod
    def for_stream(cls, stream: Any) -> DisplayOrder:
        rate = stream.average_rate or stream.guessed_rate
        tb = Fraction(stream.time_base or Fraction(1, 1000))
        return cls(round(1 / (Fraction(rate) * tb)) if rate else 1)

    def __init__(self, period: int) -> None:
        self.reach = self.REACH * max(1, period)  # in the stream's ticks
        self.times: list[int] = []

    def fed(self, t: int | None) -> None:
        if t is not None:
            heapq.heappush(self.times, t)

    def __call__(self, own: int | None) -> int | None:
        """The time of the next frame shown; ``own``: its packet's (decode-order) time."""
        if own is not None:
            while len(self.times) > 1 and self.times[0] < own - self.reach:
                heapq.heappop(self.times)
        return heapq.heappop(self.times) if self.times else own


def sorts_times(container: Any) -> bool:
    """Whether frames are timed by ``DisplayOrder`` (the container keeps decode-order times only)."""
    return container.format.name == "avi"
