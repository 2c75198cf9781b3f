"""One HUD over all workers: frames done, fps per worker and in total, ETA.

Workers report to a small Ray actor (``Progress``); the driver polls it and draws a rich table on a TTY or
prints a plain line every few seconds otherwise.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

STALE = 30.0  # seconds after its last report that a worker is no longer listed


@dataclass
class WorkerState:
    pid: int
    segment: int
    done: int
    total: int
    fps: float
    finished: bool
    seen: float


class Progress:
    """Ray actor state: the latest report of every worker, and frames of finished segments."""

    def __init__(self) -> None:
        self.workers: dict[str, WorkerState] = {}
        self.finished: dict[int, int] = {}  # segment -> frames

    def reset(self) -> None:
        self.workers.clear()
        self.finished.clear()

    def report(self, worker: str, pid: int, segment: int, done: int, total: int, fps: float,
               finished: bool = False) -> None:
        self.workers[worker] = WorkerState(pid, segment, done, total, fps, finished, time.time())
        if finished:
            self.finished[segment] = done

    def snapshot(self) -> tuple[dict[str, WorkerState], dict[int, int]]:
        return dict(self.workers), dict(self.finished)


@dataclass
class Board:
    """What the driver knows: totals, segments reused from the work folder, the latest snapshot."""

    total_frames: int
    segments: int
    reused_frames: int = 0
    reused: int = 0
    start: float = field(default_factory=time.perf_counter)
    workers: dict[str, WorkerState] = field(default_factory=dict)
    finished: dict[int, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        running: dict[int, int] = {}  # a segment retried after its worker died: counted once
        for w in self.workers.values():
            if not w.finished and w.segment not in self.finished:
                running[w.segment] = max(running.get(w.segment, 0), w.done)
        return self.reused_frames + sum(self.finished.values()) + sum(running.values())

    @property
    def fps(self) -> float:
        el = time.perf_counter() - self.start
        return (self.done - self.reused_frames) / el if el > 0 else 0.0

    @property
    def eta(self) -> float | None:
        fps = self.fps
        if fps <= 0 or not self.total_frames:
            return None
        return max(self.total_frames - self.done, 0) / fps

    def current(self) -> dict[str, WorkerState]:
        """The workers heard from in the last ``STALE`` seconds: a worker that exited (killed and replaced, or
        let go by Ray) is not listed for ever."""
        now = time.time()
        return {k: w for k, w in self.workers.items() if now - w.seen < STALE}

    def line(self) -> str:
        active = {k: w for k, w in self.current().items() if not w.finished}
        per = ", ".join(f"{k} seg {w.segment} {w.fps:.1f} fps" for k, w in sorted(active.items()))
        eta = self.eta
        return (f"frames {self.done}/{self.total_frames} | segments {len(self.finished) + self.reused}/"
                f"{self.segments} | {self.fps:.1f} fps total | workers: {per or '-'}"
                + (f" | ETA {_dur(eta)}" if eta is not None else ""))


def _dur(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class ScaleoutHud:
    """Rich live table on a TTY, plain lines every ``every`` seconds otherwise, nothing when quiet."""

    def __init__(self, board: Board, title: str, quiet: bool = False, stream: Any = None, every: float = 5.0) -> None:
        self.board, self.title, self.quiet = board, title, quiet
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every
        self._live: Any = None
        self._last = 0.0

    def _table(self) -> Any:
        from rich.table import Table

        b = self.board
        eta = b.eta
        t = Table(title=f"{self.title}: {b.done}/{b.total_frames} frames, {len(b.finished) + b.reused}/"
                        f"{b.segments} segments, {b.fps:.1f} fps total" + (f", ETA {_dur(eta)}" if eta else ""))
        for col in ("worker", "segment", "frames", "fps"):
            t.add_column(col)
        for k, w in sorted(b.current().items()):
            state = "idle" if w.finished else f"{w.done}/{w.total}"
            t.add_row(k, str(w.segment), state, "-" if w.finished else f"{w.fps:.1f}")
        return t

    def start(self) -> None:
        if self.quiet or not self.tty:
            return
        from rich.console import Console
        from rich.live import Live

        self._live = Live(self._table(), console=Console(file=self.stream), refresh_per_second=4)
        self._live.start()

    def update(self) -> None:
        if self.quiet:
            return
        if self._live is not None:
            self._live.update(self._table())
        elif time.perf_counter() - self._last >= self.every:
            self._last = time.perf_counter()
            print(self.board.line(), file=self.stream, flush=True)

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.stop()
            self._live = None
