"""``--crop``: black bars (found, or given as T:B:L:R) cut off before the model: the picture inside them upscaled,
nothing of it lost, a subtitle in a bar keeping its bar."""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from psr2video.video.crop import Crop, detect

sys.path.insert(0, str(Path(__file__).parent))
from test_image_upscale import one_line_error, run  # noqa: E402
from test_video import make_clip, write_frames  # noqa: E402


def boxed(path: Path, n: int = 60, w: int = 64, h: int = 64, bars: tuple[int, int, int, int] = (8, 8, 0, 0),
          pix_fmt: str = "yuv420p", codec: str = "libx264", subtitle_in_bar: tuple[int, ...] = (),
          black_frames: tuple[int, ...] = (), rate: int = 25) -> Path:
    """A letterboxed/pillarboxed clip with AAC audio: a moving picture inside black bars (T, B, L, R); the frames
    in ``subtitle_in_bar`` show white text in the bottom bar, those in ``black_frames`` are all black (a fade)."""
    t, b, left, r = bars
    out = av.open(str(path), "w")
    v = out.add_stream(codec, rate=rate)
    v.width, v.height, v.pix_fmt = w, h, pix_fmt
    if codec == "libx264":
        v.options = {"preset": "ultrafast", "crf": "12"}
    a = out.add_stream("aac", rate=48000)
    a.layout = "stereo"
    yy, xx = np.mgrid[0:h, 0:w]

    def picture(i: int) -> np.ndarray:
        img = np.zeros((h, w, 3), np.uint8)
        if i not in black_frames:
            inner = np.stack([(xx * 5 + yy * 3 + i * 4) % 180 + 50, (xx * 11 + i * 2) % 170 + 60,
                              (yy * 13 + i) % 160 + 70], -1).astype(np.uint8)  # chroma varies across x and y
            img[t:h - b, left:w - r] = inner[t:h - b, left:w - r]
            if i in subtitle_in_bar and b >= 4:
                img[h - b + 1:h - 1, w // 4: 3 * w // 4] = 235
        return img

    write_frames(out, v, (picture(i) for i in range(n)))
    silence(out, a, int(n / rate * 48000 / 1024))
    out.close()
    return path


def silence(out: av.container.OutputContainer, a: av.audio.stream.AudioStream, frames: int) -> None:
    """``frames`` AAC frames of stereo silence into ``a``, flushed."""
    for k in range(frames):
        af = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
        af.sample_rate, af.pts = 48000, k * 1024
        for p in a.encode(af):
            out.mux(p)
    for p in a.encode():
        out.mux(p)


@pytest.mark.parametrize("text, want", [("auto", "auto"), ("AUTO", "auto"), ("140:140:0:0", Crop(140, 140, 0, 0)),
                                        (" 0:0:240:240 ", Crop(0, 0, 240, 240))])
def test_parse(text: str, want) -> None:
    assert Crop.parse(text) == want


@pytest.mark.parametrize("text", ["", "140:140", "a:b:c:d", "-2:0:0:0", "1:2:3:4:5", "140,140,0,0"])
def test_parse_refuses_in_one_line(text: str) -> None:
    with pytest.raises(ValueError, match="--crop expects auto or TOP:BOTTOM:LEFT:RIGHT"):
        Crop.parse(text)


@pytest.mark.parametrize("bars, kwargs", [((8, 8, 0, 0), {}), ((0, 0, 10, 10), {}), ((12, 6, 4, 0), {}),
                                          ((8, 8, 0, 0), {"pix_fmt": "yuv420p10le", "codec": "libx265"}),
                                          ((8, 8, 0, 0), {"n": 20})])  # under 2 s: read to its end, no seeks
def test_detect_finds_the_bars(tmp_path: Path, bars: tuple, kwargs: dict) -> None:
    crop, frames, covered = detect(str(boxed(tmp_path / "in.mkv", bars=bars, **kwargs)))
    assert crop == Crop(*bars) and frames >= 2 and covered


def test_detect_keeps_a_bar_that_shows_something_and_ignores_fades(tmp_path: Path) -> None:
    """White text in the bottom bar (a subtitle there) on some sampled frames keeps the bottom bar; all-black
    frames (a fade) say nothing; a clip without bars is not cropped."""
    src = boxed(tmp_path / "sub.mkv", n=100, bars=(8, 8, 0, 0), subtitle_in_bar=tuple(range(30, 60)),
                black_frames=tuple(range(0, 20)))
    assert detect(str(src))[0] == Crop(8, 0, 0, 0)
    assert detect(str(boxed(tmp_path / "plain.mkv", bars=(0, 0, 0, 0))))[0] == Crop()
    assert detect(str(boxed(tmp_path / "black.mkv", n=30, black_frames=tuple(range(30)))))[:2] == (Crop(), 0)


def test_crop_auto_upscales_the_picture_inside_the_bars(tmp_path: Path) -> None:
    src = boxed(tmp_path / "in.mkv", n=60, bars=(8, 8, 0, 0))
    out = tmp_path / "out.mkv"
    code, err = run("upscale", str(src), str(out), "--variant", "mks", "--crop", "auto", "--codec", "ffv1", "-q")
    assert code == 0, err
    assert "note: --crop auto: black bars of in.mkv cut off: 8:8:0:0" in err and "128x96" in err
    with av.open(str(out)) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
        frames = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
    assert len(frames) == 60 and frames[0].shape == (96, 128)
    assert min(float(f[:2].mean()) for f in frames) > 40 and min(float(f[-2:].mean()) for f in frames) > 40
    # the same frames as --crop 8:8:0:0 (auto found what a user would give; the frames themselves are checked
    # against an independent reference in test_the_cut_frames_are_the_picture_inside_the_bars)
    ref = tmp_path / "ref.mkv"
    assert run("upscale", str(src), str(ref), "--variant", "mks", "--crop", "8:8:0:0", "--codec", "ffv1",
               "-q")[0] == 0
    with av.open(str(ref)) as c:
        assert all(np.array_equal(a, f.to_ndarray(format="gray")) for a, f in zip(frames, c.decode(video=0),
                                                                                    strict=True))


@pytest.mark.parametrize("crop, words", [
    ("42:42:0:0", "--crop 42:42:0:0 leaves less than 8x8 of the 160x90 frame (160x6); nothing to upscale"),
    ("100:0:0:0", "leaves less than 8x8 of the 160x90 frame (it cuts 100 of its 90 rows)"),
    ("50:50:90:90", "(it cuts 100 of its 90 rows and 180 of its 160 columns)")])
def test_a_crop_leaving_less_than_8x8_says_so(crop: str, words: str) -> None:
    """The rule is "less than 8x8": 160x6 was said as "leaves 160x6" (which reads as plenty), and a crop past the
    frame as "leaves 160x-10"; now the rule, and what is left or how far past the frame it cuts."""
    from psr2video.video.crop import CropError

    with pytest.raises(CropError) as e:
        Crop.parse(crop).check(160, 90, 1, 1)
    assert words in str(e.value) and "-" not in str(e.value).split("frame")[1], str(e.value)
    Crop.parse("40:42:0:0").check(160, 90, 1, 1)  # 160x8 is taken


def test_crop_mistakes_are_one_line(tmp_path: Path) -> None:
    src = boxed(tmp_path / "in.mkv", n=10)
    out = tmp_path / "o.mkv"
    one_line_error(*run("upscale", str(src), str(out), "--variant", "mks", "--crop", "7:8:0:0"),
                   "every edge must be even (odd: 7)")
    one_line_error(*run("upscale", str(src), str(out), "--variant", "mks", "--crop", "30:30:0:0"),
                   "leaves less than 8x8 of the 64x64 frame (64x4); nothing to upscale")
    one_line_error(*run("upscale", str(src), str(out), "--variant", "mks", "--crop", "100:0:0:0"),
                   "leaves less than 8x8 of the 64x64 frame (it cuts 100 of its 64 rows)")  # not "64x-36"
    one_line_error(*run("upscale", str(src), str(out), "--variant", "mks", "--crop", "8x8"), "--crop expects")
    assert not out.exists() and not list(tmp_path.glob(".o*"))
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "p.png")
    one_line_error(*run("upscale", str(tmp_path / "p.png"), str(tmp_path / "q.png"), "--crop", "auto"),
                   "--crop is a video option")
    one_line_error(*run("upscale", "-", str(out), "--crop", "auto"), "--crop auto", "stdin")


def test_a_folder_measures_each_video(tmp_path: Path) -> None:
    root = tmp_path / "films"
    root.mkdir()
    boxed(root / "letterbox.mkv", n=30, bars=(8, 8, 0, 0))
    boxed(root / "pillarbox.mkv", n=30, bars=(0, 0, 8, 8))
    make_clip(root / "plain.mkv", w=64, h=36, subtitle=False)
    code, err = run("upscale", str(root), str(tmp_path / "out"), "--variant", "mks", "--crop", "auto", "-q")
    assert code == 0, err
    sizes = {}
    for name in ("letterbox", "pillarbox", "plain"):
        with av.open(str(tmp_path / "out" / f"{name}.mkv")) as c:
            sizes[name] = (c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height)
    assert sizes == {"letterbox": (128, 96), "pillarbox": (96, 128), "plain": (128, 72)}
    assert "plain.mkv has no black bars" in err


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv422p10le", "gray"])
def test_the_cut_frames_are_the_picture_inside_the_bars(tmp_path: Path, pix_fmt: str) -> None:
    """Against an independent reference: the inner picture, cut plane by plane from the lossless source and
    written as its own lossless clip, upscaled without --crop gives the very frames (every plane) that the
    letterboxed clip gives with --crop auto: the model never sees the bars, and chroma is cut where luma is."""
    src = boxed(tmp_path / "boxed.mkv", n=12, bars=(8, 6, 4, 2), pix_fmt=pix_fmt, codec="ffv1")
    inner = tmp_path / "inner.mkv"
    with av.open(str(src)) as c, av.open(str(inner), "w") as out:
        v = out.add_stream("ffv1", rate=25)
        v.width, v.height, v.pix_fmt = 58, 50, pix_fmt
        for f in c.decode(video=0):
            g = av.VideoFrame(58, 50, pix_fmt)
            for k, (p, q) in enumerate(zip(f.planes, g.planes, strict=True)):
                sx, sy = (0, 0) if k == 0 else (f.width // p.width - 1, f.height // p.height - 1)
                size = 2 if "10" in pix_fmt else 1
                a = np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)
                cut = a[8 >> sy: (8 >> sy) + q.height, (4 >> sx) * size: ((4 >> sx) + q.width) * size]
                buf = np.zeros((q.height, q.line_size), np.uint8)
                buf[:, :cut.shape[1]] = cut
                q.update(buf.tobytes())
            g.pts = f.pts
            for pkt in v.encode(g):
                out.mux(pkt)
        for pkt in v.encode():
            out.mux(pkt)
    a, b = tmp_path / "a.mkv", tmp_path / "b.mkv"
    code, err = run("upscale", str(src), str(a), "--variant", "realtime", "--crop", "auto", "--codec", "ffv1", "-q")
    assert code == 0 and "cut off: 8:6:4:2" in err, err
    assert run("upscale", str(inner), str(b), "--variant", "realtime", "--codec", "ffv1", "-q")[0] == 0
    with av.open(str(a)) as ca, av.open(str(b)) as cb:
        pairs = list(zip(ca.decode(video=0), cb.decode(video=0), strict=True))
    assert len(pairs) == 12 and pairs[0][0].width == 116 and pairs[0][0].format.name == pix_fmt
    if pix_fmt != "gray":  # the chroma planes carry a picture of their own: a misplaced cut would show
        assert len(np.unique(np.frombuffer(pairs[0][0].planes[1], np.uint8))) > 20
    for x, y in pairs:
        assert all(bytes(p) == bytes(q) for p, q in zip(x.planes, y.planes, strict=True))


def test_crop_auto_on_what_has_no_picture_or_cant_seek(tmp_path: Path) -> None:
    """No video stream: the run's own one line only (no traceback, no crop note), and in a folder the other
    videos are written; a pipe is refused (it can be read once); a --crop that can't apply is refused before a
    scale-out splits."""
    audio = tmp_path / "audio.mka"
    with av.open(str(audio), "w") as out:
        a = out.add_stream("aac", rate=48000)
        a.layout = "stereo"
        silence(out, a, 10)
    code, err = run("upscale", str(audio), str(tmp_path / "o.mkv"), "--variant", "mks", "--crop", "auto")
    assert code == 1 and "Traceback" not in err and "video" in err.splitlines()[-1] and "--crop" not in err, err
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "b_audio.mkv").write_bytes(audio.read_bytes())
    boxed(folder / "c_boxed.mkv", n=20)
    code, err = run("upscale", str(folder), str(tmp_path / "out"), "--variant", "mks", "--crop", "auto", "-q")
    assert code == 1 and (tmp_path / "out" / "c_boxed.mkv").exists() and "Traceback" not in err, err
    import os

    fifo = tmp_path / "pipe.mkv"
    os.mkfifo(fifo)
    one_line_error(*run("upscale", str(fifo), str(tmp_path / "p.mkv"), "--crop", "auto"), "a pipe or stdin")
    src = boxed(tmp_path / "in.mkv", n=10)
    for crop, words in (("7:8:0:0", "every edge must be even"),
                        ("30:30:0:0", "leaves less than 8x8 of the 64x64 frame (64x4)")):
        one_line_error(*run("upscale", str(src), str(tmp_path / "w.mkv"), "--variant", "mks", "--crop", crop,
                            "--workers", "2"), words)
    one_line_error(*run("upscale", str(src), str(tmp_path / "w.mkv"), "--variant", "mks", "--size", "x20000",
                        "--workers", "2"), "each side must be")
    assert not list(tmp_path.glob(".w.mkv*"))


def test_detect_spreads_over_y4m_and_sequences(tmp_path: Path) -> None:
    """A Y4M file is sampled across its length (letterboxed only in its first half: nothing cropped), and a
    numbered picture sequence from 1001 is measured as the run opens it (read to its end)."""
    src = tmp_path / "half.y4m"
    with av.open(str(src), "w") as out:
        v = out.add_stream("rawvideo", rate=25)
        v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
        for i in range(250):  # 10 s
            img = np.full((32, 32, 3), 120, np.uint8)
            if i < 125:
                img[:4] = img[-4:] = 0
            f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            f.pts = i
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
    crop, frames, covered = detect(str(src))
    assert covered and frames >= 6 and crop == Crop(), (crop, frames, covered)
    seq = tmp_path / "seq"
    seq.mkdir()
    for i in range(1001, 1013):
        img = np.zeros((32, 48, 3), np.uint8)
        img[4:28] = 150
        Image.fromarray(img).save(seq / f"shot.{i:04d}.png")
    code, err = run("upscale", str(seq / "shot.%04d.png"), str(tmp_path / "s.mkv"), "--variant", "mks", "--crop",
                    "auto", "-q")
    assert code == 0 and "cut off: 4:4:0:0" in err and "across the video" in err, err


def one_keyframe(path: Path, n: int, boxed_until: int) -> Path:
    """``n`` frames at 25 fps with a single keyframe, letterboxed (8 rows) for the first ``boxed_until``."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 64, "yuv420p"
        v.options = {"preset": "ultrafast", "x264-params": f"keyint={n + 1}:min-keyint={n + 1}:scenecut=0"}

        def picture(i: int) -> np.ndarray:
            img = np.full((64, 64, 3), 120, np.uint8)
            img[:, :, 0] = (np.arange(64) * 3 + i) % 200 + 40
            if i < boxed_until:
                img[:8] = img[-8:] = 0
            return img

        write_frames(out, v, (picture(i) for i in range(n)))
    return path


def test_a_long_gop_is_not_stood_in_for_by_its_keyframe(tmp_path: Path) -> None:
    """A 10 s clip with one keyframe, letterboxed only in its first 2.4 s: frames near the start must not stand
    in for the points after it (that cut 8 picture rows off the last 7.6 s); nothing is cropped."""
    crop, frames, covered = detect(str(one_keyframe(tmp_path / "gop.mp4", 250, 60)))
    assert crop == Crop() and covered and frames >= 3, (crop, frames, covered)


def test_frames_that_dont_cover_the_video_crop_nothing(tmp_path: Path) -> None:
    """30 s with one keyframe, letterboxed for its first 12 s: the points past 300 frames from the keyframe are
    out of reach, so what was seen can't speak for the last 18 s: nothing is cut, and that is said (it used to
    cut 8 picture rows off them, "across the video")."""
    src = one_keyframe(tmp_path / "long.mp4", 750, 300)
    crop, frames, covered = detect(str(src))
    assert crop == Crop() and not covered, (crop, frames, covered)
    code, err = run("upscale", str(src), str(tmp_path / "o.mkv"), "--variant", "mks", "--crop", "auto", "-q",
                    "--max-frames", "3")
    assert code == 0 and "don't cover the video" in err and "nothing cropped" in err, err


def test_a_short_part_is_measured_on_every_frame(tmp_path: Path) -> None:
    """--crop auto on a 0.5 s part looked at every 10th frame from its start: 1 or 2 frames decided the crop ('from
    1 frames'). A part of 2 s or less is measured on every frame."""
    from psr2video.video.crop import detect
    from psr2video.video.trim import Trim

    src = boxed(tmp_path / "in.mkv", n=100)
    found, frames, covered = detect(str(src), trim=Trim.from_options("1.5", None, "0.5"))
    assert covered and frames >= 12 and (found.top, found.bottom) == (8, 8), (found, frames)
