"""``--size``: the model's output resampled to a box the picture fits in as shown (720p -> 1080p with a x2 model),
for videos (single process and scale-out), pictures and animations."""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from psr2video.output_size import SizeSpec, resample

sys.path.insert(0, str(Path(__file__).parent))
from test_image_upscale import one_line_error, run  # noqa: E402
from test_video import anamorphic_clip, make_clip, pattern  # noqa: E402


@pytest.mark.parametrize("text, want", [("1920x1080", (1920, 1080)), ("x1080", (None, 1080)), ("1920x", (1920, None)),
                                        (" 1280:720 ", (1280, 720)), ("640X480", (640, 480))])
def test_parse(text: str, want: tuple) -> None:
    assert (lambda s: (s.width, s.height))(SizeSpec.parse(text)) == want


@pytest.mark.parametrize("text", ["", "x", "1920", "abc", "1920x1080x3", "-1x720", "0x720", "1x720", "20000x"])
def test_parse_refuses_in_one_line(text: str) -> None:
    with pytest.raises(ValueError, match="--size") as e:
        SizeSpec.parse(text)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("spec, w, h, sar, rotation, even, want", [
    ("x1080", 1280, 720, 1, 0, True, (1920, 1080)),  # 720p -> 1080p
    ("1920x1080", 1280, 720, 1, 0, True, (1920, 1080)),
    ("1920x1080", 720, 480, Fraction(8, 9), 0, True, (1440, 1080)),  # a 4:3 DVD: square pixels, not stretched
    ("1920x1080", 720, 480, Fraction(32, 27), 0, True, (1920, 1080)),  # a 16:9 DVD
    ("1920x1080", 1920, 800, 1, 0, True, (1920, 800)),  # scope: fits by width, no letterbox added
    ("1080x1920", 1280, 720, 1, 90, True, (1920, 1080)),  # a phone clip shown portrait: the box as shown
    ("x1920", 1280, 720, 1, 270, True, (1920, 1080)),
    ("1919x1080", 64, 36, 1, 0, True, (1918, 1078)),  # 4:2:0: even sides, never past the box (as FFmpeg)
    ("1919x1080", 64, 36, 1, 0, False, (1919, 1079)),  # 1079.4
    ("x1000", 640, 360, 1, 0, True, (1778, 1000)),
])
def test_fit(spec: str, w: int, h: int, sar, rotation: int, even: bool, want: tuple) -> None:
    assert SizeSpec.parse(spec).fit(w, h, Fraction(sar), rotation, even, even) == want


@pytest.mark.parametrize("text, words", [
    ("x2", "--size x2 asks for 2 pixels high (each side must be at least 16); for twice the size use --scale 2"),
    ("2x", "--size 2x asks for 2 pixels wide"), ("3x", "for three times the size use --scale 3"),
    ("15x15", "--size 15x15 asks for 15 pixels wide (each side must be at least 16)")])
def test_a_side_below_16_is_refused_with_a_hint(tmp_path: Path, text: str, words: str) -> None:
    """Users type --size x2 / 2x meaning "twice": that wrote a 4x2 / 2x2-pixel video, exit 0. A side below 16 is
    refused for a video and a picture alike, with --scale named where it reads as a factor; 16 is taken."""
    with pytest.raises(ValueError, match=r"at least 16"):
        SizeSpec.parse(text)
    assert SizeSpec.parse("x16").height == 16
    src = make_clip(tmp_path / "in.mkv", audio=(), subtitle=False)
    pic = tmp_path / "in.png"
    Image.new("RGB", (40, 30), (10, 200, 30)).save(pic)
    for source, out in ((src, tmp_path / "o.mkv"), (pic, tmp_path / "o.png")):
        code, said = run("upscale", str(source), str(out), "--variant", "mks", "--size", text)
        one_line_error(code, said, words)
        assert not out.exists()
    if "15" in text:
        with pytest.raises(ValueError) as e:
            SizeSpec.parse(text)
        assert "--scale" not in str(e.value)  # not a factor: no hint


def test_a_strip_past_the_largest_side_is_one_line(tmp_path: Path) -> None:
    from psr2video.output_size import SizeError

    with pytest.raises(SizeError, match=r"--size x600 makes 19200x600 of this 64x2 picture; each side must be at most"):
        SizeSpec.parse("x600").fit(64, 2)
    src = make_clip(tmp_path / "strip.mkv", w=64, h=2, audio=(), subtitle=False, pix_fmt="yuv444p")
    code, out = run("upscale", str(src), str(tmp_path / "o.mkv"), "--variant", "mks", "--size", "x600")
    one_line_error(code, out, "makes 19200x600")
    assert not list(tmp_path.glob("*o.*"))


def test_fit_keeps_the_shape_and_the_box() -> None:
    """Over many shapes: inside the box, one side on it (to the rounding step), the aspect within a pixel."""
    rng = np.random.default_rng(0)
    for _ in range(500):
        w, h = (int(v) for v in rng.integers(2, 4000, 2))
        bw, bh = (int(v) for v in rng.integers(2, 8000, 2))
        sar = Fraction(int(rng.integers(1, 5)), int(rng.integers(1, 5)))
        ow, oh = SizeSpec(bw, bh).fit(w, h, sar, 0, True, True)
        assert ow % 2 == 0 and oh % 2 == 0 and ow <= max(bw, 2) and oh <= max(bh, 2), (w, h, bw, bh, ow, oh)
        assert bw - ow <= 1 or bh - oh <= 1 or ow == 2 or oh == 2, (w, h, bw, bh, ow, oh)
        shown = float(w * sar / h)
        assert abs(ow - oh * shown) <= 2 + 2 * shown or min(ow, oh) == 2, (w, h, sar, bw, bh, ow, oh)


@pytest.mark.parametrize("size", [(80, 60), (300, 200), (120, 37)])
def test_resample_is_pillows_lanczos(size: tuple[int, int]) -> None:
    """Lanczos-3 as Pillow's (and FFmpeg's) lanczos, shrinking and growing (Pillow rounds and clips between its
    two passes, which shows on noise only: a smooth picture here); equal sizes pass through untouched."""
    a = pattern(90, 120, 3)
    ref = np.asarray(Image.fromarray(a).resize(size, Image.Resampling.LANCZOS), np.float64)
    x = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
    got = resample(x, size[1], size[0])[0].permute(1, 2, 0).numpy() * 255
    assert got.shape == (size[1], size[0], 3) and np.abs(got - ref).max() <= 1.5, np.abs(got - ref).max()
    assert resample(x, 90, 120) is x


def test_resample_does_not_alias_1px_lines() -> None:
    """1-px lines shrunk to 3/4 average out to grey instead of beating into bands (the kernel widens with the
    ratio); antialiased bicubic left a 0.114 ripple, plain bicubic 0.353."""
    stripes = torch.zeros(1, 3, 64, 64)
    stripes[..., ::2] = 1.0
    y = resample(stripes, 48, 48)
    assert float(y[..., 8:-8, 8:-8].std()) < 0.04 and abs(float(y.mean()) - 0.5) < 0.02
    assert float(resample(stripes.half(), 48, 48).float().sub(y).abs().max()) < 2e-3  # fp16 in, fp16 out


def test_resample_keeps_hidden_colour_out_of_the_edges() -> None:
    """Alpha's fourth channel: colour is resampled premultiplied, so a see-through pixel's (red) colour does not
    tint the edge of the opaque (green) area next to it."""
    x = torch.zeros(1, 4, 32, 32)
    x[:, 0, :, :16] = 1.0  # red, but see-through
    x[:, 1, :, 16:] = 1.0  # green, opaque
    x[:, 3, :, 16:] = 1.0
    y = resample(x, 24, 24)
    seen = y[0, 3] > 0.05
    assert float(y[0, 0][seen].max()) < 0.02 and float(y[0, 1][seen].min()) > 0.98


def _size(path: Path) -> tuple[int, int, Fraction]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return s.codec_context.width, s.codec_context.height, Fraction(s.sample_aspect_ratio or 1)


def _rgb(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24").astype(np.float64) for f in c.decode(video=0)]


def test_video_720p_to_1080p_shape(tmp_path: Path) -> None:
    """A video at x1.5 (a x2 model, then the resampler): the size asked for, every frame at its time, the audio
    and subtitles carried; the frames are the x2 output resampled (compared in lossless FFV1 against Pillow's
    Lanczos resize of the plain x2 run)."""
    src = make_clip(tmp_path / "in.mkv", w=64, h=36)
    plain, sized = tmp_path / "x2.mkv", tmp_path / "x15.mkv"
    lossless = ("--variant", "realtime", "--codec", "ffv1", "--pix-fmt", "yuv444p", "-q")
    assert run("upscale", str(src), str(plain), *lossless)[0] == 0
    code, out = run("upscale", str(src), str(sized), *lossless, "--size", "x54")
    assert code == 0, out
    assert "96x54" in out and "Traceback" not in out and "resize " in out  # a stage of its own in the summary
    assert _size(sized)[:2] == (96, 54)
    with av.open(str(src)) as a, av.open(str(sized)) as b:
        assert [s.type for s in a.streams] == [s.type for s in b.streams]
        assert [f.pts for f in a.decode(video=0)] == [f.pts for f in b.decode(video=0)]
    errs = []
    for x2, got in zip(_rgb(plain), _rgb(sized), strict=True):
        ref = np.asarray(Image.fromarray(x2.astype(np.uint8)).resize((96, 54), Image.Resampling.LANCZOS), np.float64)
        errs.append(np.abs(got - ref).mean())
    assert max(errs) < 1.0, errs  # 8-bit YUV between the model and Pillow's resize


def test_size_of_the_models_own_output_changes_nothing(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mkv", w=64, h=36)
    a, b = tmp_path / "a.mkv", tmp_path / "b.mkv"
    assert run("upscale", str(src), str(a), "--variant", "mks", "--codec", "ffv1", "-q")[0] == 0
    code, out = run("upscale", str(src), str(b), "--variant", "mks", "--codec", "ffv1", "-q", "--size", "128x72")
    assert code == 0 and "note" not in out, out
    assert all(np.array_equal(x, y) for x, y in zip(_rgb(a), _rgb(b), strict=True))


def test_past_the_model_and_odd_sides_are_said(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mkv", w=64, h=36)
    out_file = tmp_path / "big.mkv"
    code, out = run("upscale", str(src), str(out_file), "--variant", "mks", "-q", "--size", "201x")
    assert code == 0, out
    assert _size(out_file)[:2] == (200, 112)  # 4:2:0: even sides, inside the box
    assert "the model makes 128x72; the rest of the way to 200x112 is Lanczos" in out, out


def test_anamorphic_video_gets_square_pixels(tmp_path: Path) -> None:
    """A 64x48 clip with 4:3 pixels is shown 16:9; --size x96 writes 170x96 (16:9 to the even pixel) with square
    pixels, and says so."""
    src = anamorphic_clip(tmp_path / "sar.mkv")
    out_file = tmp_path / "out.mp4"
    code, out = run("upscale", str(src), str(out_file), "--variant", "mks", "-q", "--size", "x96")
    assert code == 0, out
    w, h, sar = _size(out_file)
    assert (w, h) == (170, 96) and sar in (0, 1), (w, h, sar)
    assert "non-square pixels (SAR 4:3); --size writes square ones" in out, out


def test_bad_size_is_one_line_before_any_work(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mkv", w=64, h=36)
    out_file = tmp_path / "out.mkv"
    code, out = run("upscale", str(src), str(out_file), "--variant", "mks", "--size", "1080p")
    one_line_error(code, out, "--size expects WIDTHxHEIGHT", "1080p")
    assert not out_file.exists() and not list(tmp_path.glob(".out*"))


def test_pictures_fit_as_shown(tmp_path: Path) -> None:
    """A still fits the box as it is shown: a photo stored on its side (EXIF orientation 6) fits a portrait box
    turned; alpha is kept; every picture of a folder fits the box by its own shape."""
    src = tmp_path / "pics"
    src.mkdir()
    a = np.zeros((40, 60, 4), np.uint8)
    a[..., 1] = 200
    a[5:30, 10:50, 3] = 255
    im = Image.fromarray(a, "RGBA")
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(src / "side.png", exif=exif)
    Image.fromarray(a[:, :30, :3].copy()).save(src / "tall.jpg")
    code, out = run("upscale", str(src), str(tmp_path / "out"), "--variant", "realtime", "--size", "x100", "-q")
    assert code == 0, out
    side = Image.open(tmp_path / "out" / "side.png")
    # shown 40x60 (turned): x100 gives 67x100 as shown, 100x67 as stored; the EXIF still turns it
    assert side.size == (100, 67) and side.mode == "RGBA" and side.getexif().get(0x0112) == 6
    alpha = np.asarray(side)[..., 3]
    assert alpha.min() == 0 and alpha.max() == 255
    assert Image.open(tmp_path / "out" / "tall.jpg").size == (75, 100)


def test_animation_and_video_into_gif(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((30, 40, 3), i * 40, np.uint8)) for i in range(4)]
    gif = tmp_path / "in.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    out_gif = tmp_path / "out.gif"
    code, out = run("upscale", str(gif), str(out_gif), "--variant", "realtime", "--size", "x45")
    assert code == 0, out
    with Image.open(out_gif) as g:
        assert g.size == (60, 45) and g.n_frames == 4
    clip = make_clip(tmp_path / "c.mkv", w=64, h=36)
    out_webp = tmp_path / "c.webp"
    code, out = run("upscale", str(clip), str(out_webp), "--variant", "realtime", "--size", "100x100")
    assert code == 0, out
    with Image.open(out_webp) as w:
        assert w.size == (100, 56) and w.n_frames == 10


def test_settings_added_later_resume_old_work_folders() -> None:
    """A setting at its default is left out of the manifest's record: a work folder made before ``tta`` or
    ``size`` existed resumes instead of starting afresh; a setting used is recorded."""
    from psr2video.scaleout.manifest import settings_record
    from psr2video.scaleout.tasks import Settings

    base = Settings("mks", 2, None, "torch", None, 0, 1, "ffv1", None, None, None)
    assert "tta" not in settings_record(base) and "size" not in settings_record(base)
    assert set(settings_record(base)) == {"variant", "scale", "weights_sha256", "backend", "precision", "tile",
                                          "batch", "codec", "crf", "preset", "pix_fmt"}
    used = Settings("mks", 2, None, "torch", None, 0, 1, "ffv1", None, None, None, True, "x1080")
    assert json.loads(json.dumps(settings_record(used)))["size"] == "x1080" and settings_record(used)["tta"]


def test_a_work_folder_that_recorded_tta_false_resumes(tmp_path: Path) -> None:
    """The manifest written before ``size`` existed says ``"tta": false``: its finished segments are kept."""
    from psr2video.scaleout.manifest import WorkDir
    from psr2video.scaleout.split import Segment
    from psr2video.scaleout.tasks import SegmentResult, Settings

    settings = Settings("mks", 2, None, "torch", None, 0, 1, "ffv1", None, None, None)
    segments = [Segment(0, None, 40, 0, 9, Fraction(1, 1000)), Segment(1, 40, None, 10, 19, Fraction(1, 1000))]
    out = str(tmp_path / "out.mkv")
    with WorkDir(out) as wd:
        wd.open({"path": "in.mkv"}, settings, segments)
        wd.add(SegmentResult(0, b"segment zero", 10, 1.0, "here"))
    manifest = Path(wd.path) / "manifest.json"
    raw = json.loads(manifest.read_text())
    raw["settings"]["tta"] = False  # as b8b69d2 wrote every manifest
    manifest.write_text(json.dumps(raw))
    with WorkDir(out) as wd:
        assert wd.open({"path": "in.mkv"}, settings, segments) == {0} and not wd.reset_note
    with WorkDir(out) as wd:  # another setting still starts afresh
        assert wd.open({"path": "in.mkv"}, Settings("mks", 2, None, "torch", None, 0, 1, "ffv1", None, None, None,
                                                      False, "x720"), segments) == set()
        assert "starting afresh" in wd.reset_note


def test_bench_resize_prints_its_table(tmp_path: Path) -> None:
    """``psr2video bench resize`` prints the machine, the command and a row per method with PSNR and ms."""
    folder = tmp_path / "hr"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(pattern(48, 60, i)).save(folder / f"{i}.png")
    code, out = run("bench", "resize", str(folder), "--iters", "1")
    assert code == 0, out
    assert out.startswith("machine: ") and "command: psr2video bench resize" in out
    rows = {line[:36].strip(): line[36:].split() for line in out.splitlines()
            if line.startswith(("lanczos", "bicubic"))}
    assert set(rows) == {"lanczos3 (--size)", "bicubic, antialiased (torch)", "lanczos3 from the LR (no model)"}
    assert all(20 < float(v[0]) < 99 for v in rows.values()) and float(rows["lanczos3 (--size)"][1]) > 0
    code, out = run("bench", "resize", str(tmp_path / "none"))
    one_line_error(code, out, "not a folder of pictures")


def test_bench_resize_without_the_data_folder_times_speed_only(tmp_path: Path, monkeypatch) -> None:
    """A machine lent for a GPU run has no data folder: the speed rows still come, the quality column says '-'."""
    monkeypatch.setenv("PSR2VIDEO_DATA", str(tmp_path / "no-data"))
    code, out = run("bench", "resize", "--iters", "1")
    assert code == 0 and "speed only" in out, out
    row = next(line for line in out.splitlines() if line.startswith("lanczos3 (--size)"))
    assert row[36:].split()[0] == "-" and float(row[36:].split()[1]) > 0
