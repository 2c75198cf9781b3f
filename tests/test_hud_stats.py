"""``Stats`` is written by three threads and read by the HUD: every access goes through its lock."""

from __future__ import annotations

import threading

from psr2video.video.hud import Stats


def test_snapshot_is_consistent_while_threads_write() -> None:
    stats = Stats(total=4000)
    stop = threading.Event()
    errors: list[BaseException] = []

    def device() -> None:
        for i in range(2000):
            stats.add(f"stage{i % 50}", 0.001)  # new keys appear while the reader iterates
            stats.frame_done(1, i / 25)

    def encoder() -> None:
        for i in range(1, 2001):
            stats.set_encoded(i, i * 100)

    def reader() -> None:
        try:
            while not stop.is_set():
                snap = stats.snapshot()
                snap.line()
                assert snap.out_bytes == snap.encoded * 100
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=f) for f in (device, encoder)]
    r = threading.Thread(target=reader)
    r.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    r.join()
    assert errors == []
    final = stats.snapshot()
    assert final.done == 2000 and final.encoded == 2000 and len(final.stage_total) == 50
    assert abs(sum(final.stage_total.values()) - 2.0) < 1e-9


def test_plain_progress_line_says_elapsed() -> None:
    """Not a terminal: the periodic line carries what the panel does, elapsed included (README: "the same as one
    plain line"); it had frames, fps, stages, queues, memory, output size and ETA but no elapsed time."""
    import io
    import time

    from psr2video.video.hud import Hud

    stats = Stats(total=100, src_fps=25.0)
    stats.start -= 75.0  # 1:15 into the run
    stats.frame_done(30, 1.2)
    line = stats.snapshot().line()
    assert "frame 30/100" in line and "| elapsed 0:01:1" in line and "ETA" in line, line
    out = io.StringIO()
    hud = Hud(stats, "t", stream=out, every=0.05, tty=False)
    hud.start()
    time.sleep(0.3)
    hud.stop()
    lines = out.getvalue().splitlines()
    assert lines and all("elapsed 0:01:1" in ln for ln in lines), lines


def test_a_total_the_run_passes_is_no_longer_shown() -> None:
    """Joined recordings (cat a.ts b.ts) report the length of one: the HUD said 'frame 545/300' with ETA 0:00:00.
    Past the expected count the total and the ETA are dropped, as for a source of unknown length."""
    from psr2video.video.hud import Stats

    s = Stats(total=300)
    s.done = 200
    assert s.known_total == 300 and "frame 200/300 |" in s.line()
    s.done = 301
    assert s.known_total == 0 and "frame 301 |" in s.line() and "ETA" not in s.line()
