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


def vfr_times() -> list[float]:
    """80 frames: 20 at 25 fps, 20 at 5 fps, alternating (9.6 s of video)."""
    t, out = 0.0, []
    for i in range(80):
        out.append(round(t, 6))
        t += 0.04 if (i // 20) % 2 == 0 else 0.2
    return out


class FakeClock:
    """perf_counter as the test sets it (wall times fed with the frames; no timing in tests)."""

    def __init__(self, monkeypatch) -> None:
        import time

        self.now = time.perf_counter()
        monkeypatch.setattr(time, "perf_counter", lambda: self.now)


def panel_text(stats: Stats) -> str:
    import io

    from rich.console import Console

    from psr2video.video.hud import Hud

    buf = io.StringIO()
    Console(file=buf, width=120).print(Hud(stats, "t", stream=buf, tty=True)._panel())
    return buf.getvalue()


def test_summary_gives_the_written_files_size(tmp_path, capsys) -> None:
    """The summary said '(0.0 MiB)' for a 1.84 MiB file: it stat'ed the temporary name, already renamed, and fell
    back to the video's bytes (no audio, subtitles or container). It is OUT's size now, and so is the final panel's."""
    from psr2video.commands.video_run import report
    from psr2video.video.pipeline import Result

    out = tmp_path / "o.mkv"
    out.write_bytes(b"\0" * (3 * 2**19))  # 1.5 MiB
    report(Result(frames=30, seconds=1.0), Stats(out_bytes=1000, out_path=str(tmp_path / ".gone.mkv")), str(out),
           False)
    assert "-> " + str(out) + " (1.5 MiB)" in capsys.readouterr().err
    stats = Stats(src_fps=25.0, out_path=str(tmp_path / ".o.partial.mkv"))
    stats.final_path = str(out)
    stats.set_encoded(30, 1000)
    stats.frame_done(30, 1.16)
    assert stats.out_size() == 1000  # the run goes on: the temporary name is watched
    stats.finish()
    assert stats.out_size() == 3 * 2**19


def test_frames_without_timestamps_are_timed_from_the_rate(capsys) -> None:
    """A raw stream's frames have no time: the stop line said 'the last at 0.00 s' for a frame at 0.68 s (and
    with --start 1, '1.00 s' for 2.24 s), which a user resumes from. They are timed as the writer times them now,
    and where no rate is known either the line says the time is unknown."""
    import pytest

    from psr2video.commands.video_run import report
    from psr2video.video.pipeline import Result

    nan = float("nan")
    s = Stats(src_fps=25.0)
    for _ in range(18):
        s.frame_done(1, nan)
    assert s.last_time == pytest.approx(0.68)
    b = Stats(src_fps=25.0)  # batches of 4
    b.frame_done(4, nan)
    b.frame_done(4, nan)
    assert b.first_time == 0.0 and b.last_time == pytest.approx(0.28)
    u = Stats()
    u.frame_done(1, nan)
    assert u.last_time != u.last_time and u.realtime is None and "realtime" not in u.line()
    with pytest.raises(SystemExit):
        report(Result(frames=18, seconds=1.0, stopped=True, stop_time=nan), u, "-", False, "SIGTERM")
    assert "after frame 18 (its time in the input is unknown" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        report(Result(frames=32, seconds=1.0, stopped=True, stop_time=2.24), s, "-", False, "SIGTERM")
    assert "after frame 32 (the last at 2.24 s of the input)" in capsys.readouterr().err


def test_realtime_is_media_time_over_wall_time() -> None:
    """A VFR stream's frames cover more than 1/rate each: 80 frames over 9.6 s done in 6.6 s is 1.45x realtime,
    not 80 / 6.6 / 25 = 0.48x (the nominal rate)."""
    import pytest

    s = Stats(src_fps=25.0)
    s.start -= 6.6
    for t in vfr_times():
        s.frame_done(1, t)
    s.end = s.start + 6.6
    assert "(1.45x realtime)" in s.line()
    assert s.media_done == pytest.approx(9.6)
    assert s.realtime == pytest.approx(9.6 / 6.6)


def test_vfr_progress_goes_by_media_time_and_ends_with_the_run(monkeypatch) -> None:
    """An MKV's length x its nominal rate is no frame count for a VFR stream: 'frame 61/236' for 80 frames, and
    the final panel kept '80 / 236 (34 %)' and an ETA after the run ended. The estimate now follows the media
    time done, % and ETA go by media time, and neither is shown once the run has ended."""
    import pytest

    clock = FakeClock(monkeypatch)
    times = vfr_times()
    s = Stats(total=236, src_fps=25.0)
    s.exact, s.length = False, 9.6
    for t in times[:60]:  # 5.6 s of media in 5 s: 1.12x realtime all along
        clock.now = s.start + (t + 0.04) / 1.12
        s.frame_done(1, t)
    # 60 frames cover 0.8 + 4.0 + 0.8 = 5.6 s of 9.6: ~103 frames at this pace, 58 %
    assert "frame 60/~103 |" in s.line()
    assert s.total_text() == "~103" and s.progress == pytest.approx(5.6 / 9.6)
    assert s.eta == pytest.approx(4.0 / (5.6 / 5.0), rel=0.01)  # the media left at the realtime factor so far
    assert "frame 60/~103 |" in s.line() and "(58 %)" in panel_text(s)
    for t in times[60:]:
        s.frame_done(1, t)
    s.finish()
    assert s.eta is None and s.progress is None and s.total_text() == ""
    text = panel_text(s)
    assert "80   encoded" in text and "%" not in text and "ETA" not in text, text
    assert "ETA" not in s.line() and "frame 80 |" in s.line()


def test_a_cap_with_no_known_end_is_a_bound(monkeypatch) -> None:
    """--max-frames on a stream of unknown length (raw .h264) was shown as the total: 'frame 70/1000 ... ETA
    0:01:04' for a 100-frame stream. It is shown as what it is, with no % or ETA; where the length is known the
    run ends at whichever comes first."""
    import pytest

    clock = FakeClock(monkeypatch)
    s = Stats(src_fps=25.0)
    s.cap = 1000
    s.start -= 7.0
    for i in range(70):
        s.frame_done(1, i / 25)
    assert "frame 70 (at most 1000) |" in s.line() and "ETA" not in s.line() and s.progress is None
    assert "70 (at most 1000)   encoded" in panel_text(s)
    k = Stats(src_fps=25.0)
    k.cap, k.length = 100, 40.0  # 1000 frames long: the cap comes first
    for i in range(70):  # 10 fps, 0.4x realtime
        clock.now = k.start + (i + 1) / 10
        k.frame_done(1, i / 25)
    assert k.total_text() == "~100" and k.progress == pytest.approx(0.7)
    assert k.eta == pytest.approx(3.0)  # 30 frames at 10 fps, not 37.2 s of media at 0.4x
    exact = Stats(total=500)
    exact.cap = 100
    exact.done = 70
    assert exact.known_total == 100 and "frame 70/100 |" in exact.line()
