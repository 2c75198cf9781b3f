"""``--start`` / ``--end`` / ``--duration``: one part of a video, its frames exactly those of a whole run, every
other stream, the chapters and the timecode cut and moved with it, the output starting at 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from psr2video.video.trim import Trim, TrimError, Window, clock, parse_time, shift_timecode, trim_chapters

sys.path.insert(0, str(Path(__file__).parent))
from test_crop import boxed  # noqa: E402
from test_image_upscale import one_line_error, run  # noqa: E402
from test_video import mux_subtitles, raw_h264  # noqa: E402

TB = Fraction(1, 1000)
FPS = 25
SUBS = ((500, 1500, "one"), (2000, 2800, "two"), (3200, 3600, "three"))  # ms
CHAPTERS = ((0, 1500, "one"), (1500, 3000, "two"), (3000, 4000, "three"))


def long_clip(path: Path, seconds: int = 4, subtitles: bool = True, subs: tuple = SUBS, chapters: tuple = CHAPTERS,
              fmt: str | None = None, gop: int = 25) -> Path:
    """``seconds`` of 48x32 H.264 at 25 fps with B-frames and a keyframe each second, AAC audio, an SRT subtitle
    (``subs``: start and end in ms, text), chapters and a timecode."""
    out = av.open(str(path), "w", format=fmt)
    v = out.add_stream("libx264", rate=FPS)
    v.width, v.height, v.pix_fmt = 48, 32, "yuv420p"
    v.options = {"crf": "12", "preset": "ultrafast", "bf": "2", "g": str(gop), "keyint_min": str(gop),
                 "sc_threshold": "0"}
    v.metadata["timecode"] = "01:00:00:00"
    a = out.add_stream("aac", rate=48000)
    a.layout = "stereo"
    s = srt = None
    if subtitles:
        sp = path.with_suffix(".srt")
        ms = lambda t: f"00:00:{t // 1000:02d},{t % 1000:03d}"  # noqa: E731
        sp.write_text("".join(f"{i}\n{ms(b)} --> {ms(e)}\n{txt}\n\n" for i, (b, e, txt) in enumerate(subs, 1)))
        srt = av.open(str(sp))
        s = out.add_stream_from_template(srt.streams[0])
    out.metadata["title"] = "trim test"
    if chapters:
        out.set_chapters([{"id": i, "start": b, "end": e, "time_base": TB, "metadata": {"title": t}}
                          for i, (b, e, t) in enumerate(chapters, 1)])
    k = 0
    for i in range(seconds * FPS):
        img = np.zeros((32, 48, 3), np.uint8)
        img[..., 0], img[..., 1] = (i * 2) % 256, (i % 7) * 30
        img[:, (i % 48):(i % 48) + 4, 2] = 255
        f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        f.pts, f.time_base = i, Fraction(1, FPS)
        out.mux(v.encode(f))
        while k * 1024 < (i + 1) * 48000 / FPS:
            tone = np.full((2, 1024), 0.001 * (k % 50), np.float32)
            af = av.AudioFrame.from_ndarray(tone, format="fltp", layout="stereo")
            af.sample_rate, af.pts = 48000, k * 1024
            out.mux(a.encode(af))
            k += 1
    out.mux(v.encode(None))
    out.mux(a.encode(None))
    if srt is not None:
        mux_subtitles(out, srt, s)
    out.close()
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("trim")
    mkv = long_clip(d / "src.mkv")
    full = d / "full.mkv"
    code, out = run("upscale", str(mkv), str(full), "--variant", "mks", "--codec", "ffv1", "-q")
    assert code == 0, out
    return {"mkv": mkv, "mp4": long_clip(d / "src.mp4", subtitles=False), "full": full, "dir": d}


def frames(path: Path) -> list[tuple[float, np.ndarray]]:
    with av.open(str(path)) as c:
        return [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def packets(path: Path, kind: str) -> list[tuple[float, float, bytes]]:
    """(time, duration, payload) of every packet of the first ``kind`` stream, in file order."""
    with av.open(str(path)) as c:
        s = next(x for x in c.streams if x.type == kind)
        return [(float(p.pts * p.time_base), float(p.duration * p.time_base), bytes(p))
                for p in c.demux(s) if p.size]


# --- the parts, without a file ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90), ("90.5", Fraction(181, 2)), (".25", Fraction(1, 4)), ("1500ms", Fraction(3, 2)), ("2s", 2),
    ("250000us", Fraction(1, 4)), ("1:30", 90), ("01:02:03.25", 3723 + Fraction(1, 4)), ("90:00", 5400),
    (" 0:05 ", 5)])
def test_parse_time(text: str, seconds: Fraction) -> None:
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "-5", "1:2:3:4", "1:60", "1:61:00", "5 min", "1e3", "1,5"])
def test_parse_time_refuses(text: str) -> None:
    with pytest.raises(TrimError, match="--start"):
        parse_time(text)


def test_trim_options() -> None:
    assert Trim.from_options(None, None, None) is None
    assert Trim.from_options("1:00", None, "30") == Trim(Fraction(60), Fraction(90))
    assert Trim.from_options(None, "10", None) == Trim(Fraction(0), Fraction(10))
    assert Trim.from_options("5", None, None) == Trim(Fraction(5), None)
    for args, words in [(("5", "5", None), "not after"), ((None, "1", "2"), "not both"), (("1", None, "0"), "0")]:
        with pytest.raises(TrimError, match=words):
            Trim.from_options(*args)
    assert Trim(Fraction(5)).window(Fraction(7, 5)) == Window(Fraction(32, 5), None)  # MPEG-TS starts at 1.4 s
    assert clock(Fraction(3723, 1)) == "1:02:03" and clock(1.5) == "0:01.5" and clock(59.999) == "0:59.999"
    with pytest.raises(TrimError, match="past the end of x.mkv"):
        Trim(Fraction(10)).check(9.5, "x.mkv")
    Trim(Fraction(10)).check(None, "x.mkv")  # unknown length: the run tells


def test_window_rounds_to_keep_times_positive() -> None:
    w = Window(Fraction(13, 10), Fraction(31, 10))
    assert w.ticks(Fraction(1, 25)) == 32  # 1.3 s = 32.5 frames: a kept frame (33 and on) is >= 1 once moved
    assert w.ticks(Fraction(1, 1000)) == 1300
    assert w.before(Fraction(129, 100)) and not w.before(Fraction(13, 10))
    assert w.after(Fraction(31, 10)) and not w.after(Fraction(309, 100))


def test_shift_timecode() -> None:
    assert shift_timecode("01:00:00:00", 33, Fraction(25)) == "01:00:01:08"
    assert shift_timecode("23:59:59:24", 1, Fraction(25)) == "00:00:00:00"  # a day wraps, as a clock does
    # drop-frame 29.97: labels ;00 and ;01 are skipped each minute but every tenth
    assert shift_timecode("00:00:59;29", 1, Fraction(30000, 1001)) == "00:01:00;02"
    assert shift_timecode("00:09:59;29", 1, Fraction(30000, 1001)) == "00:10:00;00"
    assert shift_timecode("00:00:00;00", 17982, Fraction(30000, 1001)) == "00:10:00;00"
    assert shift_timecode("00:00:00;00", 1800, Fraction(30000, 1001)) == "00:01:00;02"
    assert shift_timecode("garbage", 10, Fraction(25)) is None and shift_timecode("00:00:00:00", 1, None) is None


def test_trim_chapters() -> None:
    chapters = [{"id": i, "start": b, "end": e, "time_base": TB, "metadata": {"title": t}}
                for i, (b, e, t) in enumerate(CHAPTERS, 1)]
    cut = trim_chapters(chapters, Window(Fraction(13, 10), Fraction(31, 10)))
    assert [(c["start"], c["end"], c["metadata"]["title"]) for c in cut] == [
        (0, 200, "one"), (200, 1700, "two"), (1700, 1800, "three")]
    assert [c["metadata"]["title"] for c in trim_chapters(chapters, Window(Fraction(3), None))] == ["three"]


# --- real files ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["mkv", "mp4"])
def test_part_is_the_whole_runs_frames(clips: dict[str, Path], source: str, tmp_path: Path) -> None:
    """1.3 s to 3.1 s of a 4 s clip (keyframes each second, B-frames): the 45 frames at 1.32..3.08 s, each exactly
    the whole run's (decoded from the keyframe before, not from the cut), timed from 0.02 s; the sound too."""
    out = tmp_path / "part.mkv"
    code, log = run("upscale", str(clips[source]), str(out), "--variant", "mks", "--codec", "ffv1", "-q",
                    "--start", "1.3", "--end", "3.1")
    assert code == 0 and "warning" not in log and "limited range, part 0:01.3-0:03.1" in log, log
    whole, part = frames(clips["full"]), frames(out)
    assert len(part) == 45
    assert [round(t, 3) for t, _ in part] == [round(0.02 + 0.04 * k, 3) for k in range(45)]
    assert all(np.array_equal(whole[33 + k][1], part[k][1]) for k in range(45))
    src_audio = [p for p in packets(clips[source], "audio") if 1.3 <= p[0] < 3.1]
    out_audio = packets(out, "audio")
    assert [p[2] for p in out_audio] == [p[2] for p in src_audio]  # the same packets, untouched
    assert all(abs((a[0] - 1.3) - b[0]) <= 0.001 for a, b in zip(src_audio, out_audio, strict=True))


def test_part_cuts_subtitles_chapters_and_timecode(clips: dict[str, Path], tmp_path: Path) -> None:
    """A subtitle on screen when the part starts (0.5-1.5 s, before the keyframe the seek lands on) is kept from
    0 for what is left of it; the chapters are cut to the part; the timecode names the part's first frame."""
    out = tmp_path / "part.mkv"
    code, log = run("upscale", str(clips["mkv"]), str(out), "--variant", "mks", "-q", "--start", "1.3",
                    "--duration", "1.8")
    assert code == 0, log
    subs = [(round(t, 3), round(d, 3), b) for t, d, b in packets(out, "subtitle")]
    assert subs == [(0.0, 0.2, b"one"), (0.7, 0.8, b"two")]
    with av.open(str(out)) as c:
        chapters = [(float(ch["start"] * ch["time_base"]), float(ch["end"] * ch["time_base"]),
                     ch["metadata"]["title"]) for ch in c.chapters()]
        tags = {k.lower(): v for k, v in c.streams.video[0].metadata.items()}
    assert chapters == [(0.0, 0.2, "one"), (0.2, 1.7, "two"), (1.7, 1.8, "three")]
    assert tags["timecode"] == "01:00:01:08"  # frame 33 of a 25 fps clip that starts at 01:00:00:00


@pytest.mark.parametrize("source", ["mkv", "mp4"])
def test_max_frames_cuts_the_chapters(clips: dict[str, Path], source: str, tmp_path: Path) -> None:
    """A run that ends early (40 of 100 frames: 1.6 s) ends its chapters with it: a 10-frame try of a film kept
    all its chapters, the last ones past the end of the file; a chapter that begins after the end is left out."""
    out = tmp_path / f"try.{source}"
    code, log = run("upscale", str(clips[source]), str(out), "--variant", "mks", "-q", "--max-frames", "40")
    assert code == 0, log
    with av.open(str(out)) as c:
        chapters = [(float(ch["start"] * ch["time_base"]), float(ch["end"] * ch["time_base"]),
                     ch["metadata"]["title"]) for ch in c.chapters()]
    assert [(round(b, 3), t) for b, _, t in chapters] == [(0.0, "one"), (1.5, "two")]
    assert 1.6 <= chapters[-1][1] < 1.7, chapters


def test_a_long_subtitle_does_not_keep_the_chapters_of_a_stopped_run(tmp_path: Path) -> None:
    """A subtitle on screen from 0.5 s to 3.5 s is copied whole into a 40-frame try: the chapters were cut to its
    end (3.5 s), not the picture's and sound's (1.6 s)."""
    src = long_clip(tmp_path / "src.mkv", subs=((500, 3500, "long"),))
    out = tmp_path / "try.mkv"
    code, log = run("upscale", str(src), str(out), "--variant", "mks", "-q", "--max-frames", "40")
    assert code == 0, log
    with av.open(str(out)) as c:
        chapters = [(float(ch["start"] * ch["time_base"]), float(ch["end"] * ch["time_base"]),
                     ch["metadata"]["title"]) for ch in c.chapters()]
    assert [t for _, _, t in chapters] == ["one", "two"] and chapters[-1][1] < 1.7, chapters


def test_part_from_a_pipe(clips: dict[str, Path], tmp_path: Path) -> None:
    """stdin can't seek: it is read from the start and what lies before the part is dropped, with the same
    frames and the subtitle begun before the part."""
    out = tmp_path / "pipe.mkv"
    r = subprocess.run([sys.executable, "-m", "psr2video", "-", str(out), "--variant", "mks", "--codec", "ffv1",
                        "-q", "--start", "1.3", "--end", "3.1"], stdin=clips["mkv"].open("rb"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    whole, part = frames(clips["full"]), frames(out)
    assert len(part) == 45 and all(np.array_equal(whole[33 + k][1], part[k][1]) for k in range(45))
    assert [b for _, _, b in packets(out, "subtitle")] == [b"one", b"two"]


def test_start_only_and_end_only(clips: dict[str, Path], tmp_path: Path) -> None:
    whole = frames(clips["full"])
    tail, head = tmp_path / "tail.mkv", tmp_path / "head.mkv"
    assert run("upscale", str(clips["mkv"]), str(tail), "--variant", "mks", "--codec", "ffv1", "-q",
               "--start", "0:03")[0] == 0
    assert run("upscale", str(clips["mkv"]), str(head), "--variant", "mks", "--codec", "ffv1", "-q",
               "--end", "500ms")[0] == 0
    t, h = frames(tail), frames(head)
    assert len(t) == 25 and t[0][0] == 0 and all(np.array_equal(whole[75 + k][1], t[k][1]) for k in range(25))
    assert len(h) == 13 and all(np.array_equal(whole[k][1], h[k][1]) for k in range(13))
    assert [b for _, _, b in packets(tail, "subtitle")] == [b"three"]
    # with --max-frames: the part's first frames
    n = tmp_path / "n.mkv"
    assert run("upscale", str(clips["mkv"]), str(n), "--variant", "mks", "--codec", "ffv1", "-q", "--start", "2",
               "--max-frames", "5")[0] == 0
    assert [np.array_equal(a, whole[50 + k][1]) for k, (_, a) in enumerate(frames(n))] == [True] * 5


def test_bad_parts_are_one_line(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "o.mkv"
    src = str(clips["mkv"])
    for args, words in [
        (("--start", "10"), ("--start 0:10 is at or past the end of", "src.mkv (0:04 long)")),
        (("--start", "2", "--end", "1"), ("not after",)),
        (("--end", "1", "--duration", "1"), ("not both",)),
        (("--start", "abc"), ("--start abc", "clock time")),
        (("--start", "3.99"), ("no video frame of", "lies in the part 0:03.99-end")),
    ]:
        one_line_error(*run("upscale", src, str(out), "--variant", "mks", "-q", *args), *words)
        assert not out.exists() and not list(tmp_path.glob(".o.*"))
    pic = tmp_path / "p.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(pic)
    one_line_error(*run("upscale", str(pic), str(tmp_path / "p.mkv"), "--variant", "mks", "--start", "1"),
                   "p.png is a still picture")
    one_line_error(*run("upscale", src, str(out), "--variant", "mks", "--start", "-1"), "can't be negative")
    one_line_error(*run("upscale", str(pic), str(tmp_path / "p2.png"), "--variant", "mks", "--start", "1"),
                   "--start cuts a part of a video", "upscaled whole")


def gif_of_a_second(src: Path, start: str, gif: Path) -> np.ndarray:
    """One second of ``src`` from ``start`` into ``gif``: its 25 frames; the first one's RGB."""
    from PIL import Image

    code, log = run("upscale", str(src), str(gif), "--variant", "mks", "-q", "--start", start, "--duration", "1")
    assert code == 0, log
    with Image.open(gif) as im:
        assert im.n_frames == 25
        return np.asarray(im.convert("RGB"), np.float32)


def test_part_into_an_animation(clips: dict[str, Path], tmp_path: Path) -> None:
    """A GIF of one second of the video: its 25 frames from 1.32 s."""
    first, whole = gif_of_a_second(clips["mkv"], "1.3", tmp_path / "a.gif"), frames(clips["full"])
    assert np.abs(first - whole[33][1]).mean() < 6  # GIF's 256 colours
    assert np.abs(first - whole[32][1]).mean() > np.abs(first - whole[33][1]).mean()
    one_line_error(*run("upscale", str(clips["mkv"]), str(tmp_path / "b.gif"), "--variant", "mks", "-q",
                        "--start", "9"), "past the end")


def test_crop_auto_looks_in_the_part(tmp_path: Path) -> None:
    """Bars only in the second half: the whole video has none to cut, the second half's part does."""
    a, b = boxed(tmp_path / "a.mkv", n=50, bars=(0, 0, 0, 0)), boxed(tmp_path / "b.mkv", n=50, bars=(8, 8, 0, 0))
    src = tmp_path / "ab.mkv"
    with av.open(str(a)) as ca, av.open(str(b)) as cb, av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 64, "yuv420p"
        v.options = {"preset": "ultrafast", "crf": "12", "g": "25"}
        for i, f in enumerate([*ca.decode(video=0), *cb.decode(video=0)]):
            g = av.VideoFrame.from_ndarray(f.to_ndarray(format="rgb24"), format="rgb24").reformat(format="yuv420p")
            g.pts, g.time_base = i, Fraction(1, 25)
            out.mux(v.encode(g))
        out.mux(v.encode(None))
    code, log = run("upscale", str(src), str(tmp_path / "whole.mkv"), "--variant", "mks", "-q", "--crop", "auto")
    assert code == 0 and "no black bars" in log, log
    code, log = run("upscale", str(src), str(tmp_path / "part.mkv"), "--variant", "mks", "-q", "--crop", "auto",
                    "--start", "2.2")
    assert code == 0 and "cut off: 8:8:0:0" in log and "across the part" in log, log
    with av.open(str(tmp_path / "part.mkv")) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (128, 96)


def test_folder_cuts_each_video(clips: dict[str, Path], tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in ("a.mkv", "b.mp4"):
        (src / name).write_bytes(clips["mkv" if name.endswith("mkv") else "mp4"].read_bytes())
    code, log = run("upscale", str(src), str(dst), "--variant", "mks", "-q", "--start", "1", "--duration", "1")
    assert code == 0, log
    assert [len(frames(dst / n)) for n in ("a.mkv", "b.mp4")] == [25, 25]


@pytest.mark.parametrize(("codec", "rate", "n"), [("pcm_s16le", 8000, 800), ("mp2", 48000, 1152)])
def test_every_stream_moves_by_one_time(tmp_path: Path, codec: str, rate: int, n: int) -> None:
    """AVI times are frame numbers (1/15 s here) and MP2's packets 24 ms: the part's streams all move back by one
    time both grids hold (moving each by its own rounding put the sound 16-50 ms off the picture)."""
    assert Window(Fraction(21, 20), None).on_grid(Fraction(1, 15)).moved == 1
    assert Window(Fraction(21, 20), None).on_grid(Fraction(1, 15), Fraction(3, 125)).moved == Fraction(3, 5)
    src = tmp_path / "a.avi"
    with av.open(str(src), "w") as out:
        v = out.add_stream("mpeg4", rate=15)
        v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
        a = out.add_stream(codec, rate=rate)
        a.layout = "mono"
        k = 0
        for i in range(45):
            f = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 5, np.uint8), format="rgb24")
            f = f.reformat(format="yuv420p")
            f.pts, f.time_base = i, Fraction(1, 15)
            out.mux(v.encode(f))
            while k * n < (i + 1) * rate / 15:
                af = av.AudioFrame.from_ndarray(np.full((1, n), k * 97 % 30000, np.int16), format="s16",
                                                layout="mono")
                af.sample_rate, af.pts = rate, k * n
                out.mux(a.encode(af))
                k += 1
        out.mux(v.encode(None))
        out.mux(a.encode(None))
    dst = tmp_path / "part.mkv"
    code, log = run("upscale", str(src), str(dst), "--variant", "mks", "-q", "--codec", "ffv1", "--start", "1.05",
                    "--end", "2")
    assert code == 0, log
    vt = [t for t, _ in frames(dst)]
    assert len(vt) == 14
    video_moved = 16 / 15 - vt[0]  # frame 16 (1.067 s) is the part's first
    src_audio: dict[bytes, float] = {}
    for t, _, b in packets(src, "audio"):
        src_audio.setdefault(b, t)
    moved = [src_audio[b] - t for t, _, b in packets(dst, "audio")]
    assert moved and all(abs(m - video_moved) < 0.002 for m in moved), (video_moved, moved)


# --- parts well into a file: sought, not read from the start ---------------------------------------------------
DEEP_SUBS = ((10200, 12800, "long"), (13000, 13500, "two"), (15000, 15400, "three"))
DEEP_CHAPTERS = ((0, 10000, "intro"), (10000, 13000, "one"), (13000, 16000, "two"))


@pytest.fixture(scope="module")
def deep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """16 s clips (Matroska with subtitles and chapters, MP4), and the whole runs' frames to compare with."""
    d = tmp_path_factory.mktemp("deep")
    mkv = long_clip(d / "src.mkv", seconds=16, subs=DEEP_SUBS, chapters=DEEP_CHAPTERS)
    mp4 = long_clip(d / "src.mp4", seconds=16, subtitles=False, chapters=())
    for name, args in (("full", ()), ("full_deint", ("--deinterlace",))):
        code, out = run("upscale", str(mkv), str(d / f"{name}.mkv"), "--variant", "mks", "--codec", "ffv1", "-q",
                        *args)
        assert code == 0, out
    return {"mkv": mkv, "mp4": mp4, "full": d / "full.mkv", "full_deint": d / "full_deint.mkv"}


@pytest.mark.parametrize("source", ["mkv", "mp4"])
def test_deep_part_is_the_whole_runs_frames(deep: dict[str, Path], source: str, tmp_path: Path) -> None:
    """11.3 s to 13.1 s of a 16 s clip is sought (the keyframe before 10.3 s), and gives the whole run's 45
    frames from 11.32 s, bit for bit, and the audio packets of the part, untouched and in time."""
    out = tmp_path / "part.mkv"
    code, log = run("upscale", str(deep[source]), str(out), "--variant", "mks", "--codec", "ffv1", "-q",
                    "--start", "11.3", "--end", "13.1")
    assert code == 0 and "warning" not in log and "note: seeking" not in log, log
    whole, part = frames(deep["full"]), frames(out)
    assert len(part) == 45 and abs(part[0][0] - 0.02) < 0.002
    assert all(np.array_equal(whole[283 + k][1], part[k][1]) for k in range(45))
    src_audio = [p for p in packets(deep[source], "audio") if 11.3 <= p[0] < 13.1]
    out_audio = packets(out, "audio")
    assert [p[2] for p in out_audio] == [p[2] for p in src_audio]
    assert all(abs((a[0] - 11.3) - b[0]) <= 0.001 for a, b in zip(src_audio, out_audio, strict=True))


def test_deep_part_subtitles_and_chapters(deep: dict[str, Path], tmp_path: Path) -> None:
    """A subtitle begun before the keyframe the seek lands on (10.2-12.8 s, part from 12.3 s) is kept once, from
    0, for its last 0.5 s; one crossing the part's end is cut there; chapters are cut and moved."""
    out = tmp_path / "part.mkv"
    code, log = run("upscale", str(deep["mkv"]), str(out), "--variant", "mks", "-q", "--start", "12.3",
                    "--end", "13.2")
    assert code == 0, log
    assert [(round(t, 3), round(d, 3), b) for t, d, b in packets(out, "subtitle")] == [
        (0.0, 0.5, b"long"), (0.7, 0.2, b"two")]
    with av.open(str(out)) as c:
        chapters = [(round(float(ch["start"] * ch["time_base"]), 3), round(float(ch["end"] * ch["time_base"]), 3),
                     ch["metadata"]["title"]) for ch in c.chapters()]
    assert chapters == [(0.0, 0.7, "one"), (0.7, 0.9, "two")]
    # the main reading meets the subtitle too when the seek lands before it: still once
    out2 = tmp_path / "part2.mkv"
    assert run("upscale", str(deep["mkv"]), str(out2), "--variant", "mks", "-q", "--start", "10.4", "--end",
               "11")[0] == 0
    assert [(round(t, 3), round(d, 3), b) for t, d, b in packets(out2, "subtitle")] == [(0.0, 0.6, b"long")]


def test_deep_part_deinterlaced_from_a_keyframe(deep: dict[str, Path], tmp_path: Path) -> None:
    """A part starting on a keyframe (12 s): bwdif still gets the frame before it, so the part's frames are the
    whole deinterlaced run's."""
    out = tmp_path / "part.mkv"
    code, log = run("upscale", str(deep["mkv"]), str(out), "--variant", "mks", "--codec", "ffv1", "-q",
                    "--deinterlace", "--start", "12", "--duration", "0.5")
    assert code == 0, log
    whole, part = frames(deep["full_deint"]), frames(out)
    assert len(part) == 13 and all(np.array_equal(whole[300 + k][1], part[k][1]) for k in range(13))


def test_deep_part_of_mpegts(tmp_path: Path) -> None:
    """MPEG-TS starting at 1.4 s, sought by bytes: --start counts from where a player shows 0, the part's frames
    are the whole run's and nothing is called damage at its end."""
    src = tmp_path / "src.ts"
    rng = np.random.default_rng(0)
    with av.open(str(src), "w", format="mpegts") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 48, 32, "yuv420p"
        v.options = {"preset": "ultrafast", "g": "25", "bf": "2", "sc_threshold": "0"}
        a = out.add_stream("mp2", rate=48000)
        a.layout = "mono"
        k = 0
        for i in range(400):
            img = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
            f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            f.pts, f.time_base = i + 35, Fraction(1, 25)
            out.mux(v.encode(f))
            while k * 1152 < (i + 1) * 48000 / 25:
                af = av.AudioFrame.from_ndarray(np.full((1, 1152), k, np.int16), format="s16", layout="mono")
                af.sample_rate, af.pts = 48000, k * 1152 + int(1.4 * 48000)
                out.mux(a.encode(af))
                k += 1
        out.mux(v.encode(None))
        out.mux(a.encode(None))
    whole_out, part_out = tmp_path / "whole.mkv", tmp_path / "part.mkv"
    assert run("upscale", str(src), str(whole_out), "--variant", "mks", "--codec", "ffv1", "-q")[0] == 0
    code, log = run("upscale", str(src), str(part_out), "--variant", "mks", "--codec", "ffv1", "-q",
                    "--start", "11.5", "--end", "12.5")
    assert code == 0 and "damaged" not in log, log
    whole, part = frames(whole_out), frames(part_out)
    first = next(i for i, (t, _) in enumerate(whole) if t >= 11.5 + 1.4 - 1e-6)
    assert len(part) == 25 and all(np.array_equal(whole[first + k][1], part[k][1]) for k in range(25))


def test_part_from_the_start_keeps_everything_before_its_end(clips: dict[str, Path], tmp_path: Path) -> None:
    """--end alone (or --start 0) cuts nothing at the front, times included: MP4's AAC priming packet (before 0)
    stays, so the sound decodes as in a whole run."""
    whole_out, head = tmp_path / "whole.mkv", tmp_path / "head.mkv"
    assert run("upscale", str(clips["mp4"]), str(whole_out), "--variant", "mks", "-q")[0] == 0
    assert run("upscale", str(clips["mp4"]), str(head), "--variant", "mks", "-q", "--start", "0", "--end", "2")[0] == 0
    w, h = packets(whole_out, "audio"), packets(head, "audio")
    assert w[0][0] < 0 and h[: len(h)] == w[: len(h)] and 2.0 - 0.03 < h[-1][0] < 2.0


def test_deep_part_into_an_animation_and_crop(deep: dict[str, Path], tmp_path: Path) -> None:
    """A GIF of 1 s from 12.3 s (sought as the video path seeks), and --crop auto measuring that part only."""
    from psr2video.video.crop import detect

    first, whole = gif_of_a_second(deep["mkv"], "12.3", tmp_path / "a.gif"), frames(deep["full"])
    errs = [np.abs(first - whole[j][1]).mean() for j in range(300, 316)]
    assert int(np.argmin(errs)) + 300 == 308  # the frame at 12.32 s
    crop, seen, covered = detect(str(deep["mkv"]), trim=Trim(Fraction(12), Fraction(27, 2)))
    assert covered and seen == 38  # a 1.5 s part: each of its 38 frames (2 s or less: every frame)


# --- a part on Ray: planned, cut, upscaled and joined as the single-process run makes it -----------------------
def scaleout_part(src: Path, out: Path, trim: Trim, seconds: float = 0.5) -> int:
    """What a scale-out run of a part does, in this process (no Ray): plan the part, cut, upscale, join."""
    from psr2video.scaleout import split
    from psr2video.scaleout.driver import Job, part_ticks, part_window
    from psr2video.scaleout.join import join
    from psr2video.scaleout.tasks import Placement, Settings, upscale_segment

    packets, tb = split.scan(str(src))
    st = Settings("mks", 2, None, "auto", None, 0, 1, "ffv1", None, None, None)
    win = part_window(Job(str(src), str(out), st, trim=trim))
    segs = split.plan(packets, tb, seconds, min_segments=2, part=part_ticks(win, tb))
    assert len(segs) >= 3
    guess = split.guess_state(str(src))
    files = {}
    for seg, data in split.cut(str(src), segs, {s.index for s in segs}):  # not in order: a lead-in overlaps
        r = upscale_segment(st, Placement(), seg, data, None, 0, None, split.source_color(str(src)),
                            split.timing(packets, tb, seg, guess))
        files[seg.index] = out.parent / f"segment{seg.index}.nut"
        files[seg.index].write_bytes(r.data)
    return join(str(src), [files[i] for i in sorted(files)], str(out), "ffv1", None, window=win)[0]


def same_part(a: Path, b: Path) -> None:
    """Two outputs of one part: the same frames at the same times, the same audio and subtitle packets at the same
    times, the same chapters and timecode."""
    fa, fb = frames(a), frames(b)
    assert [round(t, 4) for t, _ in fa] == [round(t, 4) for t, _ in fb]
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(fa, fb, strict=True))
    for kind in ("audio", "subtitle"):
        assert [(round(t, 4), round(d, 4), p) for t, d, p in packets(a, kind)] == [
            (round(t, 4), round(d, 4), p) for t, d, p in packets(b, kind)]
    with av.open(str(a)) as ca, av.open(str(b)) as cb:
        assert ca.chapters() == cb.chapters()
        assert ca.streams.video[0].metadata.get("TIMECODE") == cb.streams.video[0].metadata.get("TIMECODE")


@pytest.mark.parametrize(("start", "end"), [("11.3", "14.1"), ("2.3", "4.9"), (None, "3.5"), ("13.3", None)])
def test_scaleout_part_equals_the_single_process_part(deep: dict[str, Path], tmp_path: Path, start: str | None,
                                                     end: str | None) -> None:
    """Deep (sought) and near parts, from the start and to the end, cut at keyframes into segments and joined:
    the single-process part's frames, sound, subtitles (the long one on screen at 11.3 s too), chapters."""
    single, joined = tmp_path / "single.mkv", tmp_path / "joined.mkv"
    args = [*(("--start", start) if start else ()), *(("--end", end) if end else ())]
    code, log = run("upscale", str(deep["mkv"]), str(single), "--variant", "mks", "--codec", "ffv1", "-q", *args)
    assert code == 0, log
    n = scaleout_part(deep["mkv"], joined, Trim.from_options(start, end, None))
    assert n == len(frames(single))
    same_part(joined, single)


def test_scaleout_part_past_the_end_is_one_line_before_ray(clips: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'psr2video[ray]')")
    one_line_error(*run("upscale", str(clips["mkv"]), str(tmp_path / "o.mkv"), "--variant", "mks", "-q",
                        "--workers", "2", "--start", "10"), "--start 0:10 is at or past the end of")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow  # CI runs it (--run-slow): Ray's start-up
def test_scaleout_part_on_ray(deep: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'psr2video[ray]')")
    single, joined = tmp_path / "single.mkv", tmp_path / "joined.mkv"
    part = ("--start", "11.3", "--duration", "2.8")
    assert run("upscale", str(deep["mkv"]), str(single), "--variant", "mks", "--codec", "ffv1", "-q", *part)[0] == 0
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 32)
    r = subprocess.run([sys.executable, "-m", "psr2video", str(deep["mkv"]), str(joined), "--variant", "mks",
                        "--codec", "ffv1", "-q", "--workers", "2", "--segment-seconds", "1", *part],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    assert re.search(r"\d+ frames .* ([3-9]|\d\d) segments", r.stderr), r.stderr
    same_part(joined, single)


def test_subtitles_begun_together_are_each_kept(tmp_path: Path) -> None:
    """Two lines begun at the same time (ASS signs and dialogue) and on screen at the part's start: both kept."""
    src = long_clip(tmp_path / "s.mkv", subs=((500, 1500, "sign"), (500, 1500, "line"), (2000, 2500, "next")))
    out = tmp_path / "p.mkv"
    assert run("upscale", str(src), str(out), "--variant", "mks", "-q", "--start", "1", "--end", "2.2")[0] == 0
    assert sorted((round(t, 3), round(d, 3), b) for t, d, b in packets(out, "subtitle")) == [
        (0.0, 0.5, b"line"), (0.0, 0.5, b"sign"), (1.0, 0.2, b"next")]


def test_part_in_the_last_gop_of_mpegts(tmp_path: Path) -> None:
    """A TS seek into the last GOP (2 s GOPs, a part 1.2 s after the last keyframe) decodes nothing before the
    end of the file: sought again further back, the part's frames are the whole run's."""
    src = tmp_path / "g.ts"
    rng = np.random.default_rng(1)
    with av.open(str(src), "w", format="mpegts") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 48, 32, "yuv420p"
        v.options = {"preset": "ultrafast", "g": "50", "keyint_min": "50", "bf": "2", "sc_threshold": "0"}
        for i in range(500):
            img = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
            f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            f.pts, f.time_base = i, Fraction(1, 25)
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    whole_out, part_out = tmp_path / "whole.mkv", tmp_path / "part.mkv"
    assert run("upscale", str(src), str(whole_out), "--variant", "mks", "--codec", "ffv1", "-q")[0] == 0
    code, log = run("upscale", str(src), str(part_out), "--variant", "mks", "--codec", "ffv1", "-q", "--start",
                    "19.2", "--duration", "0.5")
    assert code == 0, log
    whole, part = frames(whole_out), frames(part_out)
    first = next(i for i, (t, _) in enumerate(whole) if t - whole[0][0] >= 19.2 - 1e-6)
    assert len(part) == 13 and all(np.array_equal(whole[first + k][1], part[k][1]) for k in range(13))


def test_audio_stream_empty_in_the_part_is_said(tmp_path: Path) -> None:
    """A second audio stream that ends at 1 s: a part from 2 s has no packet of it, and says so."""
    src = tmp_path / "two.mkv"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 48, 32, "yuv420p"
        v.options = {"preset": "ultrafast"}
        a, b = out.add_stream("pcm_s16le", rate=8000), out.add_stream("pcm_s16le", rate=8000)
        a.layout = b.layout = "mono"
        for i in range(75):
            f = av.VideoFrame.from_ndarray(np.full((32, 48, 3), i, np.uint8), format="rgb24").reformat(
                format="yuv420p")
            f.pts, f.time_base = i, Fraction(1, 25)
            out.mux(v.encode(f))
            for s in (a, b) if i < 25 else (a,):
                af = av.AudioFrame.from_ndarray(np.full((1, 320), i, np.int16), format="s16", layout="mono")
                af.sample_rate, af.pts = 8000, i * 320
                out.mux(s.encode(af))
        out.mux(v.encode(None))
    code, log = run("upscale", str(src), str(tmp_path / "p.mkv"), "--variant", "mks", "-q", "--start", "2")
    assert code == 0 and "audio stream #2: no packet of it lies in the part" in log, log
    assert "audio stream #1" not in log


def test_frame_grab_into_a_picture(deep: dict[str, Path], tmp_path: Path) -> None:
    """A video into a still picture with --start alone: the frame at that time (sought as a part is), upscaled as
    a picture is; with --end, or without --start, one line says what a picture takes."""
    from PIL import Image

    png = tmp_path / "f.png"
    code, log = run("upscale", str(deep["mkv"]), str(png), "--variant", "mks", "-q", "--start", "12.35")
    assert code == 0 and "the frame at 0:12.35" in log, log  # on screen then: the frame of 12.32 s
    whole = frames(deep["full"])
    with Image.open(png) as im:
        got = np.asarray(im.convert("RGB"), np.float32)
    errs = [np.abs(got - whole[j][1]).mean() for j in range(300, 316)]
    assert int(np.argmin(errs)) + 300 == 308 and min(errs) < 3  # the frame at 12.32 s (4:2:0 round trip apart)
    last = tmp_path / "last.png"  # a time in the last frame's duration: that frame
    assert run("upscale", str(deep["mkv"]), str(last), "--variant", "mks", "-q", "--start", "15.99")[0] == 0
    with Image.open(last) as im:
        got = np.asarray(im.convert("RGB"), np.float32)
    assert int(np.argmin([np.abs(got - whole[j][1]).mean() for j in range(390, 400)])) == 9
    one_line_error(*run("upscale", str(deep["mkv"]), str(tmp_path / "g.png"), "--variant", "mks", "--start", "1",
                        "--end", "2"), "one frame: give --start TIME alone")
    one_line_error(*run("upscale", str(deep["mkv"]), str(tmp_path / "g.png"), "--variant", "mks"),
                   "add --start TIME for the frame at TIME")


def test_part_into_avi_is_not_nudged(deep: dict[str, Path], tmp_path: Path) -> None:
    """Moved back by 11.3 s, the frames land on half ticks of AVI's 1/25 s: rounded halves up, not to even, no two
    frames share a tick and none is nudged."""
    out = tmp_path / "p.avi"
    code, log = run("upscale", str(deep["mkv"]), str(out), "--variant", "mks", "-q", "--start", "11.3", "--end",
                    "12.3")
    assert code == 0 and "nudged" not in log, log
    assert len(frames(out)) == 25


def test_subtitles_muxed_late_are_waited_for(tmp_path: Path) -> None:
    """Subtitles that come late in the file (10 s GOPs: FFmpeg's interleaver wrote the line of 10.2 s after the
    video of 14 s): the part's end (13.1 s) does not stop the reading before they come."""
    src = long_clip(tmp_path / "late.mkv", seconds=24, subs=DEEP_SUBS, chapters=(), gop=250)
    with av.open(str(src)) as c:
        order = [(x.stream.type, round(float(x.pts * x.time_base), 2)) for x in c.demux() if x.size]
    sub_at = order.index(("subtitle", 10.2))
    assert any(k == "video" and t >= 13.1 for k, t in order[:sub_at])  # in the file after the part's end
    out = tmp_path / "p.mkv"
    assert run("upscale", str(src), str(out), "--variant", "mks", "-q", "--start", "12.3", "--end", "13.1")[0] == 0
    assert [(round(t, 3), round(d, 3), b) for t, d, b in packets(out, "subtitle")] == [
        (0.0, 0.5, b"long"), (0.7, 0.1, b"two")]


def grey_vfr_clip(path: Path, times_ms: tuple[int, ...], first: int = 0) -> Path:
    """48x32 H.264 frames at ``times_ms`` (1 ms time base), frame k a flat grey of ``first + 40 * k``."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 48, 32, "yuv420p"
        v.time_base = v.codec_context.time_base = TB
        v.options = {"preset": "ultrafast", "bf": "0"}
        for k, t in enumerate(times_ms):
            f = av.VideoFrame.from_ndarray(np.full((32, 48, 3), first + 40 * k, np.uint8), format="rgb24")
            f = f.reformat(format="yuv420p")
            f.pts, f.time_base = t, TB
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    return path


def test_frame_grab_of_a_long_still_and_of_a_raw_stream(tmp_path: Path) -> None:
    """The frame on screen at T even when it began long before (a slide shown 1-15 s: --start 12 is it), and in a
    raw stream without timestamps (timed from the frame rate, as the video path times it)."""
    from PIL import Image

    slides = grey_vfr_clip(tmp_path / "slides.mkv", (0, 1000, 15000, 16000, 17000), first=20)
    raw = raw_h264(tmp_path / "raw.h264", 25, 75, 48, 32, 3)
    for src, start, level in ((slides, "12", 60), (slides, "0.5", 20), (raw, "1.5", 3 * 37)):
        png = tmp_path / "g.png"
        code, log = run("upscale", str(src), str(png), "--variant", "mks", "-q", "-y", "--start", start)
        assert code == 0, log
        with Image.open(png) as im:
            assert abs(float(np.asarray(im.convert("L"), np.float32).mean()) - level) < 4, (src.name, start)


def test_scaleout_part_into_avi_equals_the_single_process_part(deep: dict[str, Path], tmp_path: Path) -> None:
    """AVI counts in frames: a part is moved by whole frames, so the single-process writer and the scale-out join
    put every frame on the same tick (a start 0.03 s past a frame put the joined frames one frame late)."""
    single, joined = tmp_path / "single.avi", tmp_path / "joined.avi"
    code, log = run("upscale", str(deep["mkv"]), str(single), "--variant", "mks", "--codec", "ffv1", "-q",
                    "--start", "11.03", "--end", "13.5")
    assert code == 0 and "nudged" not in log, log
    scaleout_part(deep["mkv"], joined, Trim(Fraction(1103, 100), Fraction(27, 2)))
    fa, fb = frames(single), frames(joined)
    assert [round(t, 4) for t, _ in fa] == [round(t, 4) for t, _ in fb] and len(fa) == 62
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(fa, fb, strict=True))


@pytest.mark.parametrize("start", ["0.5", "1.3", "2.01"])
def test_part_into_avi_with_aac(clips: dict[str, Path], tmp_path: Path, start: str) -> None:
    """AAC in Matroska (1 ms times) moved back by a part and muxed into AVI (one tick per 1024 samples): times that
    differed in milliseconds met on one tick and FFmpeg refused the file at the end ("Invalid argument"). They are
    made increasing in the output's own ticks now."""
    out = tmp_path / "p.avi"
    code, log = run("upscale", str(clips["mkv"]), str(out), "--variant", "mks", "-q", "--start", start,
                    "--duration", "1")
    assert code == 0, log
    assert len(frames(out)) == 25 and len(packets(out, "audio")) >= 45


def test_decode_order_part_has_no_frame_past_its_end(tmp_path: Path) -> None:
    """Decode-order times (B-frames, pts := dts): the frames the decoder still held when the part ended came out
    timed by their own pts and one slipped in, nudged; the part is the whole run's frames in it, no more."""
    from test_scaleout import make_decode_order_clip

    src = make_decode_order_clip(tmp_path / "do.mkv", n=96)
    whole_out, part_out = tmp_path / "whole.mkv", tmp_path / "part.mkv"
    assert run("upscale", str(src), str(whole_out), "--variant", "mks", "--codec", "ffv1", "-q")[0] == 0
    code, log = run("upscale", str(src), str(part_out), "--variant", "mks", "--codec", "ffv1", "-q", "--start", "1",
                    "--end", "2")
    assert code == 0 and "nudged" not in log, log
    whole, part = frames(whole_out), frames(part_out)
    inside = [a for t, a in whole if 1 - 1e-6 <= t < 2 - 1e-6]
    assert len(part) == len(inside) == 24
    assert all(np.array_equal(x, y) for x, (_, y) in zip(inside, part, strict=True))


def test_gif_part_last_frame_lasts_to_the_part_end(tmp_path: Path) -> None:
    """VFR: the part's last frame is on screen until the part ends, not one average frame period."""
    from PIL import Image

    src = grey_vfr_clip(tmp_path / "vfr.mkv", (0, 300, 1000, 1660, 2200, 3000))
    gif = tmp_path / "p.gif"
    assert run("upscale", str(src), str(gif), "--variant", "mks", "-q", "--start", "0.2", "--end", "2")[0] == 0
    with Image.open(gif) as im:
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
    assert durations == [700, 660, 340]  # 0.3-1.0, 1.0-1.66, 1.66 to the part's end at 2.0


def test_frame_grab_of_10_bit_video_keeps_16_bits(tmp_path: Path) -> None:
    """A 10-bit video's frame into .png is a 16-bit PNG (its gradient's steps kept), into .jpg 8-bit, said."""
    src = tmp_path / "ten.mkv"
    ramp = (np.linspace(0, 1023, 64)[None, :, None] * np.ones((32, 1, 3)) * 64).astype(np.uint16)  # 10 bits in 16
    with av.open(str(src), "w") as out:
        v = out.add_stream("ffv1", rate=25)
        v.width, v.height, v.pix_fmt = 64, 32, "yuv444p10le"
        for i in range(3):
            f = av.VideoFrame.from_ndarray(ramp, format="rgb48le").reformat(format="yuv444p10le")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    png, jpg = tmp_path / "g.png", tmp_path / "g.jpg"
    code, log = run("upscale", str(src), str(png), "--variant", "mks", "-q", "--start", "0.04")
    assert code == 0 and "written 8-bit" not in log, log
    with av.open(str(png)) as c:
        f = next(c.decode(video=0))
        assert f.format.name in ("rgb48be", "rgb48le")
        row = f.to_ndarray(format="rgb48le")[16, :, 1].astype(int)
    assert np.mean(row % 257 == 0) < 0.5  # 16-bit samples, not 8-bit ones widened (v * 257)
    code, log = run("upscale", str(src), str(jpg), "--variant", "mks", "-q", "--start", "0.04")
    assert code == 0 and "10-bit video; the frame is written 8-bit (.png or .tif keep 16 bits)" in log, log


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_max_frames_cuts_the_subtitles(tmp_path: Path, ext: str) -> None:
    """A 40-frame try (1.6 s) ends its subtitles with the picture, as a part's end does: a line shown 0.5-3.5 s
    ran on to 3.5 s (the file lasted that long), one from 2.0 s was kept past the end."""
    src = long_clip(tmp_path / "src.mkv", subs=((500, 3500, "long"), (2000, 2500, "after")))
    out = tmp_path / f"try.{ext}"
    code, log = run("upscale", str(src), str(out), "--variant", "mks", "-q", "--max-frames", "40")
    assert code == 0, log
    texts = [(t, d, p[2:] if ext == "mp4" else p) for t, d, p in packets(out, "subtitle")]  # (mov_text: a length)
    got = [(round(t, 3), round(d, 3), p) for t, d, p in texts if p]
    assert got == [(0.5, 1.1, b"long")], got


@pytest.mark.parametrize("cut", [False, True])
def test_zero_length_cue_inside_a_held_one(tmp_path: Path, cut: bool) -> None:
    """A zero-length SRT cue while a longer one is on screen: the long one waits for the picture to pass its end,
    and the zero-length one, muxed at once, went out before it ("FFmpeg: Invalid argument ... returned 22"): it
    waits its turn, and an early end still cuts the long one."""
    src = long_clip(tmp_path / "src.mkv", seconds=2, subs=((500, 1800, "long"), (1000, 1000, "zero")))
    out = tmp_path / "o.mkv"
    code, log = run("upscale", str(src), str(out), "--variant", "mks", "-q", *(["--max-frames", "40"] if cut else []))
    assert code == 0, log
    got = [(round(t, 3), round(d, 3), p) for t, d, p in packets(out, "subtitle")]
    assert got == [(0.5, 1.1 if cut else 1.3, b"long"), (1.0, 0.0, b"zero")], got


def test_a_part_with_no_frame_of_a_chaptered_file_is_one_line(tmp_path: Path) -> None:
    """A cut-off file with chapters, its part past where it stops: PyAV's 'warning: chapters not copied: Container is
    not open' (the header was never written) came before the one-line error."""
    src = tmp_path / "c.mkv"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        out.set_chapters([{"id": 1, "start": 0, "end": 1500, "time_base": Fraction(1, 1000), "metadata": {}},
                          {"id": 2, "start": 1500, "end": 3000, "time_base": Fraction(1, 1000), "metadata": {}}])
        for i in range(75):
            f = av.VideoFrame.from_ndarray(np.random.default_rng(i).integers(0, 255, (48, 64, 3), np.uint8),
                                           format="rgb24")
            f.pts = i
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size * 2 // 3])
    code, out = run(str(cut), str(tmp_path / "o.mkv"), "--variant", "mks", "--start", "2.8")
    one_line_error(code, out)
    assert "chapters" not in out, out
