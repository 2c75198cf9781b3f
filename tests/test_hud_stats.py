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
