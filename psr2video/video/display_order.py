"""Frame times for files that store decode-order times (AVI; MP4 muxed without composition offsets), shared by
every reader of frames (the video reader, animations and frame grabs, the scale-out plan)."""

from __future__ import annotations

import heapq
from collections import Counter
from typing import Any


class DisplayOrder:
    """Frame times for a container that stores decode-order times (AVI: one chunk per tick, in decode order, its
    demuxer's "pts" derived from them; an MP4 muxed without composition offsets: pts = dts). Frames come out of
    the decoder in display order, so the k-th frame shown takes the k-th earliest time of the packets that give
    frames, as players time such files. FFmpeg's best-effort guess (``PtsGuess``) falls back on the dts of the
    packet fed when a frame comes out instead: a reorder delay plus frame threading's late, which put B-frame
    AVIs and the shared data's box_640x480.mp4 two frames behind their sound and lost the times between.

    Each frame carries its own packet's pts (``own``), so the packets that gave no frame are known: one whose
    decoding failed, and one that ``WINDOW`` packets fed after it have overtaken (no reorder reaches that far),
    drop out of the times; packets before the first keyframe (a file cut mid-GOP) are never counted. A lost
    packet's time may have been handed out already (the frames after it then took their predecessors' times):
    one time is skipped then, so the error lasts the ``WINDOW`` frames it took to tell, not to the file's end.

    ``active``: True (AVI, or a scale-out cut of a source that is), False (never), None: decided at the first
    frame (``decide``)."""

    WINDOW = 20  # packets: more than any decoder's reorder depth (H.264: 16 frames; x265: 16 B-frames)

    def __init__(self, active: bool | None = True) -> None:
        self.active = active
        self.times: list[int] = []  # a heap of the counted packets' times
        self.lost: Counter[int] = Counter()  # times in the heap of packets that gave no frame
        self.pending: dict[int, tuple[int, int]] = {}  # own pts -> (packet number, time): no frame yet
        self.seen: list[tuple[int | None, int | None]] = []  # (pts, dts) of the packets fed before deciding
        self.count = 0
        self.started = False  # a keyframe was fed
        self.last: int | None = None  # the last time handed out
        self.owed = 0  # times to skip: lost packets' times that were handed out already

    def fed(self, pts: int | None, dts: int | None, key: bool) -> None:
        """A packet given to the decoder (not a flush packet)."""
        if self.active is False:
            return
        self.started = self.started or key
        if not self.started:  # before the first keyframe: it gives no frame
            return
        if self.active is None:
            self.seen.append((pts, dts))
        t = dts if dts is not None else pts
        if t is None:
            return
        self.count += 1
        heapq.heappush(self.times, t)
        if pts is not None:
            self.pending[pts] = (self.count, t)

    def failed(self, pts: int | None) -> None:
        """The packet of ``pts`` did not decode: it gives no frame."""
        if pts is not None and (entry := self.pending.pop(pts, None)) is not None:
            self._lose(entry[1])

    def _lose(self, t: int) -> None:
        if self.last is not None and t <= self.last:
            self.owed += 1
        else:
            self.lost[t] += 1

    def _pop(self) -> int | None:
        while self.times and self.lost[self.times[0]]:
            self.lost[heapq.heappop(self.times)] -= 1
        return heapq.heappop(self.times) if self.times else None

    def decide(self, reorders: bool) -> None:
        """At the first frame: on when the codec reorders (B-frames) and the packets fed so far carry decode-order
        times (``decode_order_times``); off otherwise (their own pts are the frames' times)."""
        if self.active is None:
            self.active = reorders and decode_order_times(self.seen)
            self.seen = []
            if not self.active:
                self.times, self.pending = [], {}

    def __call__(self, own: int | None) -> int | None:
        """The time of the next frame shown; ``own``: its packet's (decode-order) time."""
        mine = self.pending.pop(own, None) if own is not None else None
        if mine is not None:  # packets this far behind the frame's own that gave none never will
            for p, t in [(p, t) for p, (n, t) in self.pending.items() if n < mine[0] - self.WINDOW]:
                del self.pending[p]
                self._lose(t)
        while self.owed and len(self.times) > 1:  # (the frame in hand keeps a time)
            self._pop()
            self.owed -= 1
        t = self._pop()
        if t is None:
            return own
        self.last = t
        return t


def decode_order_times(packets: list[tuple[int | None, int | None]]) -> bool:
    """Whether packets (pts, dts) carry decode-order times: every pts equal to its dts. A file muxed with
    composition offsets never starts so when it has B-frames (its first frame is shown a reorder delay after it is
    decoded), however many of its packets are looked at (so the answer doesn't follow the decoder's threads)."""
    return bool(packets) and all(p is not None and p == d for p, d in packets)


def sorts_times(container: Any) -> bool:
    """Whether frames are timed by ``DisplayOrder`` from the start (the container keeps decode-order times only)."""
    return container.format.name == "avi"


def decided_order(container: Any, stream: Any) -> bool:
    """Whether a reader of ``container`` from its start times ``stream``'s frames by ``DisplayOrder``: the decision
    a single-process run makes, for a scale-out plan (reads up to the first frame; the container is then spent)."""
    if sorts_times(container):
        return True
    order = DisplayOrder(None)
    for pkt in container.demux(stream):
        if not pkt.size:
            continue
        order.fed(pkt.pts, pkt.dts, bool(pkt.is_keyframe))
        try:
            frames = pkt.decode()
        except Exception:  # noqa: BLE001 - a damaged start: what was fed decides
            frames = []
        if frames:
            break
    order.decide(bool(stream.codec_context.has_b_frames))
    return bool(order.active)
