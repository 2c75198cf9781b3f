"""Animated pictures (`psr2video anim.gif anim_x2.gif`): every frame through the shared Upscaler, written as an
animation again with its frame durations, play count and transparency, across GIF, APNG and animated WebP; and
numbered picture sequences read as a video."""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from test_image_upscale import noise, one_line_error, run  # noqa: E402
from test_video import write_frames  # noqa: E402

DURATIONS = [100, 100, 200, 100, 300, 100]


def frames_of(path: Path) -> tuple[list[np.ndarray], list[float], dict]:
    """Every frame composited as RGBA, its duration and the first frame's info."""
    with Image.open(path) as im:
        info = dict(im.info)
        frames, durations = [], []
        for i in range(im.n_frames):
            im.seek(i)
            im.load()
            frames.append(np.asarray(im.convert("RGBA")))
            durations.append(float(im.info.get("duration") or 0))
    return frames, durations, info


def sprite_frames(alpha: bool) -> list[Image.Image]:
    """A textured background with a moving red block; a transparent corner when ``alpha``."""
    bg = noise(24, 32, 3, seed=1) // 2 + 64
    out = []
    for i in range(len(DURATIONS)):
        a = np.concatenate([bg, np.full((24, 32, 1), 255, np.uint8)], 2)
        a[8:14, 3 * i:3 * i + 6, :3] = (255, 0, 0)
        if alpha:
            a[:6, :8, 3] = 0
        out.append(Image.fromarray(a, "RGBA"))
    return out


def test_every_frame_is_the_upscalers_output_and_timing_is_kept(tmp_path: Path) -> None:
    """APNG in, APNG out: each frame equals the Upscaler's output of the source frame (lossless both ways), each
    frame keeps its duration and the play count is kept."""
    from psr2video import Upscaler

    src = tmp_path / "in.png"
    frames = [f.convert("RGB") for f in sprite_frames(alpha=False)]
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=DURATIONS, loop=2)
    code, out = run(str(src), str(tmp_path / "out.png"), "--variant", "realtime", "--backend", "torch")
    assert code == 0 and "6 frames, 0.90 s, plays 2 times -> out.png (64x48 PNG)" in out, out
    got, durations, info = frames_of(tmp_path / "out.png")
    assert durations == DURATIONS and info["loop"] == 2 and len(got) == 6
    up = Upscaler(variant="realtime", scale=2, backend="torch", device="cpu", weights="clean")  # (pictures: clean)
    for f, g in zip(frames, got, strict=True):
        x = torch.from_numpy(np.asarray(f, np.float32) / 255).permute(2, 0, 1)[None]
        with torch.inference_mode():
            want = (up(x)[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
        assert g.shape == (48, 64, 4) and np.array_equal(g[..., :3], want) and g[..., 3].min() == 255


@pytest.mark.parametrize("ext", [".gif", ".webp", ".png"])
def test_gif_in_any_animation_out(tmp_path: Path, ext: str) -> None:
    """A GIF with transparency, uneven durations and a loop block: the output has every frame at twice the size,
    the same durations, the same number of plays (GIF counts repeats, APNG and WebP plays), the transparent
    corner still transparent, and the colours near the full-colour result."""
    src = tmp_path / "in.gif"
    frames = sprite_frames(alpha=True)
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=DURATIONS, loop=3, disposal=2)
    _, _, src_info = frames_of(src)
    assert src_info["loop"] == 3  # 3 repeats: 4 plays
    code, out = run(str(src), str(tmp_path / f"out{ext}"), "--variant", "mks", "--backend", "torch")
    assert code == 0 and "6 frames, 0.90 s, plays 4 times" in out, out
    got, durations, info = frames_of(tmp_path / f"out{ext}")
    assert len(got) == 6 and durations == DURATIONS
    assert info["loop"] == (3 if ext == ".gif" else 4)
    for i, g in enumerate(got):
        assert g.shape == (48, 64, 4)
        assert g[:10, :14, 3].max() <= 16 and g[14:, 18:, 3].min() >= 240, i  # the corner stays see-through
        # the red block moved with the source (3 px a frame there: 6 px here)
        assert g[19, 6 * i + 6, 0] > 200 and g[19, 6 * i + 6, 1] < 60, (i, g[19, 6 * i + 6])


def test_gif_palette_stays_close_to_the_full_colour_frames(tmp_path: Path) -> None:
    """GIF's 256 colours: one palette for the whole animation keeps every frame within a few grey levels of the
    full-colour APNG, and a pixel that doesn't change keeps its colour from frame to frame."""
    src = tmp_path / "in.png"
    frames = [f.convert("RGB") for f in sprite_frames(alpha=False)]
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=DURATIONS, loop=0)
    for ext in (".png", ".gif"):
        code, out = run(str(src), str(tmp_path / f"out{ext}"), "--variant", "realtime", "-q")
        assert code == 0, out
    full, _, _ = frames_of(tmp_path / "out.png")
    gif, _, info = frames_of(tmp_path / "out.gif")
    assert info["loop"] == 0
    for f, g in zip(full, gif, strict=True):
        mse = np.mean((f[..., :3].astype(float) - g[..., :3]) ** 2)
        assert 10 * np.log10(255**2 / mse) > 30
    # rows the model's output keeps from frame to frame (away from the moving block) stay still in the GIF
    still = [r for r in range(48) if all(np.array_equal(full[0][r], f[r]) for f in full[1:])]
    assert len(still) >= 8 and all(np.array_equal(gif[0][still], g[still]) for g in gif[1:])


def test_animation_to_a_still_format_or_a_video(tmp_path: Path) -> None:
    """An animation written to a format that holds one picture says only its first frame is upscaled; written to
    a video file every frame keeps its own time (the durations become timestamps)."""
    src = tmp_path / "in.gif"
    frames = [f.convert("RGB") for f in sprite_frames(alpha=False)]
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=DURATIONS, loop=0)
    code, out = run(str(src), str(tmp_path / "out.jpg"), "--variant", "mks", "-q")
    assert code == 0 and "in.gif is an animation of 6 frames; only the first is upscaled" in out, out
    code, out = run(str(src), str(tmp_path / "out.mkv"), "--variant", "mks", "-q")
    assert code == 0, out
    with av.open(str(tmp_path / "out.mkv")) as c:
        times = [round(float(f.time) * 1000) for f in c.decode(video=0)]
    assert times == list(np.cumsum([0] + DURATIONS[:-1]))


def test_gif_that_plays_once_and_still_gif(tmp_path: Path) -> None:
    """A GIF without a loop block plays once, and so does its upscale (WebP: loop 1); a still picture can be
    written as a GIF, and its ICC profile, which GIF can't hold, is named as left out."""
    src = tmp_path / "once.gif"
    frames = sprite_frames(alpha=False)
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=DURATIONS)
    assert "loop" not in frames_of(src)[2]
    for ext in (".gif", ".webp"):
        code, out = run(str(src), str(tmp_path / f"once_x2{ext}"), "--variant", "mks")
        assert code == 0 and "plays once" in out, out
    assert "loop" not in frames_of(tmp_path / "once_x2.gif")[2]
    assert frames_of(tmp_path / "once_x2.webp")[2]["loop"] == 1
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(noise(16, 16, 3), "RGB").save(tmp_path / "s.png", icc_profile=icc)
    code, out = run(str(tmp_path / "s.png"), str(tmp_path / "s.gif"), "--variant", "mks", "-q")
    assert code == 0 and "s.png's ICC profile can't be held in .gif; left out" in out, out
    with Image.open(tmp_path / "s.gif") as im:
        assert im.size == (32, 32) and not getattr(im, "is_animated", False)


def test_too_large_animation_is_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """All frames are held at the output size: past the limit the run is refused before any frame is upscaled,
    with the way out (a video file), and nothing is written."""
    from psr2video import animation

    monkeypatch.setattr(animation, "MAX_BYTES", 10_000)
    src = tmp_path / "in.gif"
    frames = sprite_frames(alpha=False)
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=DURATIONS)
    code, out = run(str(src), str(tmp_path / "out.gif"), "--variant", "mks", "-q")
    one_line_error(code, out, "in.gif has 6 frames of 32x24", "write a video file")
    assert not (tmp_path / "out.gif").exists() and [p.name for p in tmp_path.iterdir()] == ["in.gif"]


def test_video_into_an_animation(tmp_path: Path) -> None:
    """A video file into .gif/.webp: every frame, each lasting until the next one's timestamp (VFR kept, GIF's
    1/100 s steps rounded by start time), looping; the audio and subtitles it can't hold are named; the
    colours are the video path's (same matrix and range)."""
    from test_video import VFR_PTS, make_clip

    clip = make_clip(tmp_path / "clip.mkv", w=48, h=32)
    for ext in (".webp", ".gif"):
        code, out = run(str(clip), str(tmp_path / f"clip{ext}"), "--variant", "mks")
        # GIF: the frame 10 ms after the one before (at 150 and 160 ms) is left out, as browsers would play it
        # for 100 ms; the one at 150 ms lasts until 240
        pts = VFR_PTS if ext == ".webp" else [p for p in VFR_PTS if p != 160]
        assert code == 0 and "an animation" in out and f"{len(pts)} frames" in out, out
        assert "clip.mkv's audio and subtitle can't be held in an animation; left out" in out, out
        assert (ext == ".gif") == ("1 of 10 frames of clip.mkv left out" in out), out
        got, durations, info = frames_of(tmp_path / f"clip{ext}")
        assert len(got) == len(pts) and got[0].shape == (64, 96, 4) and info["loop"] == 0
        unit = 10 if ext == ".gif" else 1
        starts = np.cumsum([0] + durations[:-1])
        assert all(abs(s - p) <= unit / 2 for s, p in zip(starts, pts, strict=True)), (starts, pts)
    code, out = run(str(clip), str(tmp_path / "first4.webp"), "--variant", "mks", "--max-frames", "4", "-q")
    assert code == 0 and len(frames_of(tmp_path / "first4.webp")[0]) == 4, out  # a clip's first frames
    code, out = run(str(clip), str(tmp_path / "clip_x2.mkv"), "--variant", "mks", "--codec", "ffv1", "-q")
    assert code == 0, out
    with av.open(str(tmp_path / "clip_x2.mkv")) as c:
        ref = [f.to_ndarray(format="rgb24").astype(float) for f in c.decode(video=0)]
    webp, _, _ = frames_of(tmp_path / "clip.webp")
    for r, g in zip(ref, webp, strict=True):  # 4:2:0 out of the video path vs full-colour RGB: close, not equal
        assert 10 * np.log10(255**2 / np.mean((r - g[..., :3]) ** 2)) > 30


def test_gif_durations_are_rounded_by_start_time(tmp_path: Path) -> None:
    """30 fps into GIF (1/100 s steps): 30, 40, 30 ms..., so ten frames last 330 ms, not 300 (10% fast)."""
    src = tmp_path / "in.png"
    frames = [f.convert("RGB") for f in sprite_frames(alpha=False)] * 2
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=1000 / 30, loop=0)
    code, out = run(str(src), str(tmp_path / "out.gif"), "--variant", "mks", "-q")
    assert code == 0, out
    _, durations, _ = frames_of(tmp_path / "out.gif")
    assert set(durations) == {30, 40} and sum(durations) == 400  # 12 frames: 400 ms


def test_pages_are_not_an_animation(tmp_path: Path) -> None:
    """A multi-page TIFF (or a camera's MPO) is not an animation: into .png its first page is upscaled, said,
    not an APNG of its pages."""
    pages = [Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)) for i in range(3)]
    pages[0].save(tmp_path / "multi.tif", save_all=True, append_images=pages[1:])
    code, out = run(str(tmp_path / "multi.tif"), str(tmp_path / "multi.png"), "--variant", "mks", "-q")
    assert code == 0 and "multi.tif holds 3 pictures; only the first is upscaled" in out, out
    with Image.open(tmp_path / "multi.png") as im:
        assert not getattr(im, "is_animated", False) and im.size == (16, 16)


def test_found_in_review(tmp_path: Path) -> None:
    """A cut-off GIF keeps the frames before the damage (it was a traceback, and stopped a folder); a short scene
    keeps its colours in the GIF palette; an APNG's default image is not a frame; a play count past GIF's 16
    bits is clamped; a profile an animation can't hold is named; an OUT that can't be written is refused
    before the work."""
    from PIL import ImageCms

    frames = [Image.fromarray(noise(24, 32, 3, seed=i)) for i in range(12)]
    frames[0].save(tmp_path / "full.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    data = (tmp_path / "full.gif").read_bytes()
    said = 0
    for cut in range(len(data) // 3, len(data) - 1, len(data) // 15):  # cut inside frames and between them
        (tmp_path / "cut.gif").write_bytes(data[:cut])
        code, out = run(str(tmp_path / "cut.gif"), str(tmp_path / "cut_x2.gif"), "--variant", "mks", "-q", "-y")
        assert code == 0 and "Traceback" not in out and 1 <= len(frames_of(tmp_path / "cut_x2.gif")[0]) < 12, out
        said += "frames before it are kept" in out
        code, out = run(str(tmp_path / "cut.gif"), str(tmp_path / "cut.jpg"), "--variant", "mks", "-q", "-y")
        assert code == 0 and "only the first is upscaled" in out, out
    assert said  # where Pillow notices the damage, it is said

    # 64 frames, blue but for an orange scene at 17-19 that a palette from every 4th frame would not see
    scenes = [Image.new("RGB", (16, 16), (216, 107, 20) if 17 <= i <= 19 else (66, 102, 165)) for i in range(64)]
    scenes[0].save(tmp_path / "scenes.png", save_all=True, append_images=scenes[1:], duration=40)
    code, out = run(str(tmp_path / "scenes.png"), str(tmp_path / "scenes.gif"), "--variant", "mks", "-q")
    got = frames_of(tmp_path / "scenes.gif")[0]
    # (the writer merges equal frames: blue, orange, blue)
    assert code == 0 and any(np.abs(g[..., :3].astype(int) - (216, 107, 20)).max() <= 8 for g in got), out

    # an APNG whose base picture is a default image (shown by viewers that don't animate), 4 frames after it
    base = [Image.new("RGB", (8, 8), (0, 0, 255))] + [Image.new("RGB", (8, 8), (60 * i, 0, 0)) for i in range(4)]
    base[0].save(tmp_path / "d.png", save_all=True, append_images=base[1:], default_image=True, duration=100,
                 loop=70000 % 65536)
    code, out = run(str(tmp_path / "d.png"), str(tmp_path / "d.gif"), "--variant", "mks")
    assert code == 0 and "4 frames, 0.40 s" in out, out
    assert frames_of(tmp_path / "d.gif")[0][0][0, 0, 2] < 50  # the blue default image is not frame 0
    code, out = run(str(tmp_path / "d.png"), str(tmp_path / "d2.png"), "--variant", "mks", "-q")
    with Image.open(tmp_path / "d2.png") as im:
        assert code == 0 and im.n_frames == 5 and im.info.get("default_image") and im.size == (16, 16)

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    frames[0].save(tmp_path / "icc.webp", save_all=True, append_images=frames[1:4], duration=50, icc_profile=icc)
    code, out = run(str(tmp_path / "icc.webp"), str(tmp_path / "icc.gif"), "--variant", "mks", "-q")
    assert code == 0 and "icc.webp's ICC profile can't be held in .gif; left out" in out, out
    (tmp_path / "dir.gif").mkdir()
    one_line_error(*run(str(tmp_path / "full.gif"), str(tmp_path / "dir.gif"), "--variant", "mks", "-y"),
                   "dir.gif is a folder, not an output file")


def test_video_rotation_pixel_shape_and_alpha(tmp_path: Path) -> None:
    """A phone video's display rotation turns the frames (an animation has no display matrix); non-square
    pixels are resampled to square ones; a video's alpha channel is kept. Each is said where it changes the
    frames."""
    from fractions import Fraction

    def clip(name: str, fmt: str, codec: str, rotation: int = 0, sar: Fraction | None = None) -> Path:
        path = tmp_path / name
        with av.open(str(path), "w") as out:
            s = out.add_stream(codec, rate=10)
            s.width, s.height, s.pix_fmt = 48, 32, fmt
            if sar is not None:
                s.codec_context.sample_aspect_ratio = sar
            if rotation:
                s.set_display_rotation(rotation)
            a = np.zeros((32, 48, 4), np.uint8)
            a[..., 0] = 200
            a[:, :24, 3] = 255  # left half opaque, right half transparent
            a[:4, :4, :3] = (0, 255, 0)  # a green corner, to see where the top left went
            write_frames(out, s, [a] * 3, fmt="rgba")
        return path

    code, out = run(str(clip("rot.mp4", "yuv420p", "libx264", rotation=90)), str(tmp_path / "rot.webp"),
                    "--variant", "mks", "-q")
    got = frames_of(tmp_path / "rot.webp")[0]
    assert code == 0 and "shown rotated by 90 degrees (display matrix), a quarter turn counter-clockwise" in out, out
    assert got[0].shape == (96, 64, 4)
    assert got[0][90, 4, 1] > 200  # counter-clockwise: the top-left corner is now bottom left

    code, out = run(str(clip("sar.mkv", "yuv420p", "libx264", sar=Fraction(2, 1))), str(tmp_path / "sar.gif"),
                    "--variant", "mks", "-q")
    assert code == 0 and "non-square pixels (SAR 2:1)" in out and frames_of(tmp_path / "sar.gif")[0][0].shape == (
        64, 192, 4), out

    code, out = run(str(clip("alpha.mov", "rgba", "png")), str(tmp_path / "alpha.webp"), "--variant", "mks", "-q")
    a = frames_of(tmp_path / "alpha.webp")[0][0][..., 3]
    assert code == 0 and a[:, :40].min() >= 240 and a[:, 56:].max() <= 16, out


def test_not_a_video_into_gif_is_one_line(tmp_path: Path) -> None:
    """A file that is neither a picture nor a video, into .gif: one line before anything loads."""
    (tmp_path / "junk.bin").write_bytes(b"\x00 not a video " * 64)
    code, out = run(str(tmp_path / "junk.bin"), str(tmp_path / "o.gif"), "--variant", "mks")
    one_line_error(code, out, "junk.bin is neither a picture nor a video FFmpeg can read")
    assert "an animation" not in out and not (tmp_path / "o.gif").exists()


def test_picture_sequence_in(tmp_path: Path) -> None:
    """A numbered picture sequence (a render's frames/shot.%d.png from 1001) is a video IN at --fps (default 25);
    a gap in the numbers, --fps for a video, a pattern that matches nothing and a sequence into a picture are
    each one line."""
    seq = tmp_path / "frames"
    seq.mkdir()
    for i in range(1001, 1007):
        Image.fromarray(noise(16, 24, 3, seed=i)).save(seq / f"shot.{i}.png")
    pattern = str(seq / "shot.%d.png")
    code, out = run(pattern, str(tmp_path / "s.mkv"), "--variant", "mks", "--fps", "24", "-q")
    assert code == 0, out
    with av.open(str(tmp_path / "s.mkv")) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 6 and frames[0].width == 48
    assert [round(float(f.time) * 24) for f in frames] == list(range(6))
    code, out = run(pattern, str(tmp_path / "d.mkv"), "--variant", "mks", "-q")
    with av.open(str(tmp_path / "d.mkv")) as c:
        assert code == 0 and c.streams.video[0].average_rate == 25, out
    Image.fromarray(noise(16, 24, 3)).save(seq / "shot.1009.png")
    one_line_error(*run(pattern, str(tmp_path / "g.mkv"), "--variant", "mks"),
                   "number 1007 is missing (6 pictures from 1001, 1 after the gap)")
    assert not (tmp_path / "g.mkv").exists()
    (seq / "shot.1009.png").unlink()
    clip = tmp_path / "v.mkv"
    one_line_error(*run(pattern, str(clip), "--variant", "mks", "--fps", "0"), "--fps 0: give a frame rate")
    code, out = run(pattern, str(clip), "--variant", "mks", "-q")
    assert code == 0, out
    one_line_error(*run(str(clip), str(tmp_path / "w.mkv"), "--variant", "mks", "--fps", "24"),
                   "--fps is the frame rate of a picture sequence")
    one_line_error(*run(str(seq / "nothing_%04d.png"), str(tmp_path / "n.mkv"), "--variant", "mks"),
                   "input not found", "no pictures match")
    one_line_error(*run(pattern, str(tmp_path / "s.gif"), "--variant", "mks"), "is read as a video")


def test_picture_sequence_names_match_ffmpeg(tmp_path: Path) -> None:
    """Sequence names are matched as FFmpeg writes them: %03d pads to at least 3 digits (1000 is "1000", so a
    gap after it is seen), %d is unpadded (a stray "s.01.png" is not number 1), %% is a literal %."""
    from psr2video.names import image_sequence

    def names(*files: str) -> str:
        for f in tmp_path.iterdir():
            f.unlink()
        for f in files:
            (tmp_path / f).touch()
        return str(tmp_path)

    d = names(*(f"f{n:03d}.png" for n in (998, 999, 1000, 1001, 1003)))
    assert image_sequence(f"{d}/f%03d.png") == (998, 4, 5)  # number 1002 is missing
    d = names(*(f"f{n}.png" for n in range(1000, 1003)))
    assert image_sequence(f"{d}/f%03d.png") == (1000, 3, 3)
    d = names(*(f"s.{n}.png" for n in range(1, 4)), "s.01.png", "s.0007.png")
    assert image_sequence(f"{d}/s.%d.png") == (1, 3, 3)
    d = names(*(f"100%_{n:04d}.png" for n in range(1, 4)))
    assert image_sequence(f"{d}/100%%_%04d.png") == (1, 3, 3)
    assert image_sequence(f"{d}/100%_%04d.png") is None and image_sequence(f"{d}/none.png") is None


def test_a_cut_gif_into_a_still_is_its_first_frame_and_folders_are_made(tmp_path: Path) -> None:
    """A damaged GIF (Pillow raises while counting its frames) into a still picture is its first frame, as the
    note says (the count left it on a later one); an animation in a folder run gets its OUT sub-folder made, as
    a still picture does (it was skipped with "No such file or directory")."""
    frames = [Image.fromarray(np.full((20, 30, 3), c, np.uint8)) for c in (40, 120, 200)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    data = (tmp_path / "a.gif").read_bytes()
    (tmp_path / "cut.gif").write_bytes(data[: int(len(data) * 0.8)])
    code, out = run(str(tmp_path / "cut.gif"), str(tmp_path / "cut.tif"), "--variant", "mks", "-q")
    assert code == 0 and "only the first is upscaled" in out, out
    assert np.abs(np.asarray(Image.open(tmp_path / "cut.tif"), float) - 40).max() <= 2
    pics = tmp_path / "pics"
    pics.mkdir()
    (pics / "a.gif").write_bytes(data)
    code, out = run(str(pics), str(tmp_path / "new" / "deeper"), "--variant", "mks", "-q")
    assert code == 0, out
    with Image.open(tmp_path / "new" / "deeper" / "a.gif") as g:
        assert g.n_frames == 3


def test_fast_webp_into_gif_is_paced_like_a_video(tmp_path: Path) -> None:
    """A 60 fps animated WebP into GIF kept delays of 10 and 20 ms, which browsers play as 100 ms: six times too
    slow. It is thinned to GIF's 50 frames/s as a video is (said); a GIF's own delays stay its author's."""
    src = tmp_path / "fast.webp"
    frames = [Image.fromarray(noise(12, 16, 3, seed=i)) for i in range(6)]
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=[17, 16, 17, 17, 16, 17], loop=0,
                   lossless=True)
    code, out = run(str(src), str(tmp_path / "o.gif"), "--variant", "mks")
    assert code == 0 and "GIF plays at most 50 frames/s" in out, out
    _, durations, _ = frames_of(tmp_path / "o.gif")
    assert all(d >= 20 for d in durations) and sum(durations) == pytest.approx(100, abs=10), durations


def test_the_last_frame_keeps_its_length_between_animations_and_video(tmp_path: Path) -> None:
    """A GIF whose last frame holds 3 s into .mkv/.mp4 lasted 1.1 s (every packet got 1/average rate), and a VFR
    video's 3 s last frame into .gif became one frame period: every frame keeps its own length."""
    src = tmp_path / "hold.gif"
    frames = [Image.fromarray(noise(12, 16, 3, seed=i)) for i in range(4)]
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=[100, 100, 100, 3000], loop=0)
    for ext in (".mkv", ".mp4"):
        out = tmp_path / f"hold{ext}"
        code, err = run(str(src), str(out), "--variant", "mks")
        assert code == 0, err
        with av.open(str(out)) as c:
            assert c.duration / 1e6 == pytest.approx(3.3, abs=0.01), ext
    code, err = run(str(tmp_path / "hold.mkv"), str(tmp_path / "back.gif"), "--variant", "mks")
    assert code == 0, err
    assert frames_of(tmp_path / "back.gif")[1] == [100, 100, 100, 3000]


def test_gif_keeps_transparency_when_the_first_frame_is_opaque(tmp_path: Path) -> None:
    """An opaque first frame and a see-through hole in the second: the GIF keeps its transparent entry (Pillow's
    palette optimisation would drop it, as the first frame doesn't use it) and the hole stays see-through."""
    src = tmp_path / "in.png"
    a = np.concatenate([noise(24, 32, 3, seed=2) // 8, np.full((24, 32, 1), 255, np.uint8)], 2)
    b = a.copy()
    b[..., :3] += 192  # colours the first frame doesn't use: Pillow would optimise its palette
    b[4:16, 4:16, 3] = 0
    Image.fromarray(a[..., :3], "RGB").save(src, save_all=True, append_images=[Image.fromarray(b, "RGBA")],
                                            duration=100, loop=0)
    code, out = run(str(src), str(tmp_path / "out.gif"), "--variant", "mks", "-q")
    assert code == 0, out
    got, _, _ = frames_of(tmp_path / "out.gif")
    assert got[0][..., 3].min() == 255
    assert got[1][10:30, 10:30, 3].max() == 0 and got[1][36:, 36:, 3].min() == 255


def _gif_block(img: Image.Image, left: int, top: int, disposal: int) -> bytes:
    """One GIF frame (control block, descriptor, local palette, data) at (left, top) with ``disposal``, taken
    from the GIF Pillow writes of the palette picture ``img``."""
    import io
    import struct

    b = io.BytesIO()
    img.save(b, "GIF")
    d = b.getvalue()
    flags, pos = d[10], 13
    gct = 3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0
    table, pos = d[pos:pos + gct], pos + gct
    while d[pos] == 0x21:  # extensions
        pos += 2
        while d[pos]:
            pos += d[pos] + 1
        pos += 1
    desc, rest = bytearray(d[pos:pos + 10]), d[pos + 10:-1]
    struct.pack_into("<HH", desc, 1, left, top)
    if gct and not desc[9] & 0x80:  # the global table made local
        desc[9] |= 0x80 | (flags & 7)
        rest = table + rest
    return bytes([0x21, 0xF9, 4, disposal << 2]) + struct.pack("<H", 10) + b"\0\0" + bytes(desc) + rest


def test_gif_disposal_2_clears_to_transparent_as_browsers_show_it(tmp_path: Path) -> None:
    """An opaque first frame, a partial sprite frame with disposal 2 (restore to background), then a frame drawn
    elsewhere: the sprite's area becomes see-through in the third frame, as browsers show it (Pillow's own
    compositing paints it opaque black)."""
    import struct

    bg = Image.fromarray(noise(24, 32, 3, seed=3) // 4 + 128, "RGB").quantize(64)
    sprite = Image.fromarray(np.full((8, 8, 3), (250, 20, 20), np.uint8)).quantize(4)
    tile = Image.fromarray(np.full((4, 4, 3), (20, 20, 250), np.uint8)).quantize(4)
    src = tmp_path / "in.gif"
    src.write_bytes(b"GIF89a" + struct.pack("<HHBBB", 32, 24, 0, 0, 0) + _gif_block(bg, 0, 0, 1)
                    + _gif_block(sprite, 8, 8, 2) + _gif_block(tile, 24, 0, 1) + b";")
    code, out = run(str(src), str(tmp_path / "out.png"), "--variant", "mks", "-q")
    assert code == 0, out
    got, _, _ = frames_of(tmp_path / "out.png")
    assert len(got) == 3 and got[0][..., 3].min() == 255
    assert got[1][18:30, 18:30, 3].min() == 255 and got[1][20:28, 20:28, 0].min() > 200  # the sprite
    assert got[2][18:30, 18:30, 3].max() <= 16  # cleared, not black
    assert got[2][:, 40:, 3].min() >= 250 and got[2][2:6, 50:54, 2].min() > 200  # the rest, and the new tile


def test_apng_text_and_dpi_are_carried_or_named(tmp_path: Path) -> None:
    """An APNG's text chunks and DPI: kept in an APNG, as a still PNG keeps them, and named where the output can't
    hold them (WebP, GIF)."""
    from PIL import PngImagePlugin

    src = tmp_path / "in.png"
    frames = [f.convert("RGB") for f in sprite_frames(alpha=False)[:3]]
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "My loop")
    info.add_itxt("parameters", "prompt: cat", "en", "")
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=100, loop=0, pnginfo=info, dpi=(300, 300))
    code, out = run(str(src), str(tmp_path / "out.png"), "--variant", "mks")
    assert code == 0 and "left out" not in out, out
    with Image.open(tmp_path / "out.png") as im:
        assert im.n_frames == 3 and im.text["Title"] == "My loop" and im.text["parameters"] == "prompt: cat"
        assert [round(v) for v in im.info["dpi"]] == [300, 300]
    for ext in (".webp", ".gif"):
        code, out = run(str(src), str(tmp_path / f"out{ext}"), "--variant", "mks")
        want = f"in.png's DPI and PNG text (Title, parameters) can't be held in {ext}; left out"
        assert code == 0 and want in out, out


def test_an_animation_shown_turned_is_turned_into_gif(tmp_path: Path) -> None:
    """An animated WebP whose EXIF says it is shown turned (orientation 6), written to GIF (which holds no EXIF):
    its frames are turned, as a still's pixels are, and --size fits the turned picture."""
    src = tmp_path / "in.webp"
    a = np.zeros((24, 32, 3), np.uint8)
    a[:, :16] = (250, 20, 20)  # stored: red on the left; shown turned a quarter clockwise: red on top
    a[:, 16:] = (20, 20, 250)
    b = a.copy()
    b[20:, 28:] = (20, 250, 20)
    frames = [Image.fromarray(a), Image.fromarray(b)]
    exif = Image.Exif()
    exif[0x0112] = 6
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=100, loop=0, exif=exif.tobytes(),
                   lossless=True)
    code, out = run(str(src), str(tmp_path / "out.gif"), "--variant", "mks")
    assert code == 0 and "in.webp is shown turned (EXIF orientation), which .gif can't say" in out, out
    got, _, _ = frames_of(tmp_path / "out.gif")
    assert len(got) == 2 and got[0].shape == (64, 48, 4)
    assert got[0][4:28, :, 0].min() > 200 and got[0][36:60, :, 2].min() > 200
    code, out = run(str(src), str(tmp_path / "small.gif"), "--variant", "mks", "--size", "30x40")
    assert code == 0, out
    assert frames_of(tmp_path / "small.gif")[0][0].shape == (40, 30, 4)


def test_a_frame_longer_than_gif_holds_is_repeated(tmp_path: Path) -> None:
    """A GIF frame's delay holds 655.35 s: a longer frame (a WebP's, an APNG's) is written as repeats of the same
    picture, the whole time kept (Pillow's GIF writer raised OverflowError: a traceback), also when it follows
    see-through frames (disposal 2)."""
    for alpha in (False, True):
        frames = [Image.new("RGBA", (16, 12), (i * 100, 50, 50, 255 if not alpha or i else 0)) for i in range(3)]
        src = tmp_path / f"long_{alpha}.webp"
        frames[0].save(src, save_all=True, append_images=frames[1:], duration=[100, 1400000, 100], loop=0,
                       lossless=True)
        out = tmp_path / f"long_{alpha}.gif"
        code, log = run(str(src), str(out), "--variant", "mks", "-q")
        assert code == 0 and "Traceback" not in log, log
        got, durations, _ = frames_of(out)
        assert sum(durations) == 1400200 and max(durations) <= 655350 and len(got) == 5, durations
        assert all(np.array_equal(got[1], g) for g in got[2:4]) and not np.array_equal(got[1], got[4])
        assert got[1][0, 0, 3] == 255 and abs(int(got[1][0, 0, 0]) - 100) <= 8


def test_a_lossless_animated_webp_stays_lossless(tmp_path: Path) -> None:
    """An animated WebP whose frames are lossless (VP8L) is written lossless (it came back at quality 95); a lossy
    one stays lossy; an animation's EXIF PixelX/YDimension say the size written."""
    frames = sprite_frames(alpha=False)
    exif = Image.Exif()
    exif.get_ifd(0x8769).update({0xA002: 32, 0xA003: 24})
    frames[0].save(tmp_path / "lossless.webp", save_all=True, append_images=frames[1:], duration=DURATIONS, loop=0,
                   lossless=True, exif=exif)
    frames[0].save(tmp_path / "lossy.webp", save_all=True, append_images=frames[1:], duration=DURATIONS, loop=0,
                   quality=80)
    for name, lossless in (("lossless.webp", True), ("lossy.webp", False)):
        code, log = run(str(tmp_path / name), str(tmp_path / f"x2_{name}"), "--variant", "mks", "-q")
        assert code == 0, log
        data = (tmp_path / f"x2_{name}").read_bytes()
        assert (b"VP8L" in data, b"VP8 " in data) == (lossless, not lossless), name
    sub = Image.open(tmp_path / "x2_lossless.webp").getexif().get_ifd(0x8769)
    assert (sub.get(0xA002), sub.get(0xA003)) == (64, 48)


def _yuv_clip(path: Path, pix_fmt: str = "yuv420p", codec: str = "ffv1", frames: int = 2,
              chroma_location: int | None = None) -> Path:
    """A small clip written from YUV planes made here (no RGB on the way in): chroma in 4x4 blocks of two
    colours that swap (sharp colour edges both ways, where nearest and interpolated chroma differ most), luma a
    ramp, alpha (yuva) opaque on the left half only."""
    w, h = 48, 32
    fmt = av.VideoFormat(pix_fmt)
    bits = max(c.bits for c in fmt.components)
    up = 1 << (bits - 8)
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=10)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if chroma_location is not None:
            s.codec_context.chroma_sample_location = chroma_location
        for i in range(frames):
            planar = av.VideoFrame(w, h, pix_fmt if pix_fmt.startswith("yuv") else "yuv422p")  # yuyv422: packed below
            for k, p in enumerate(planar.planes):
                dt = np.uint8 if bits == 8 else np.uint16
                pw = p.line_size // np.dtype(dt).itemsize
                yy, xx = np.mgrid[:p.height, :pw]
                if k == 0:
                    a = 40 + (xx * 150) // w + 4 * i
                elif k == 3:
                    a = np.where(xx < p.width // 2, 255, 0)
                else:
                    cw, ch = -(-w // p.width), -(-h // p.height)  # luma pixels per chroma sample
                    on = ((xx * cw // 4) + (yy * ch // 4)) % 2 == (k == 1)
                    a = np.where(on, 40, 216)
                p.update((a * up).astype(dt).tobytes())
            f = planar if planar.format.name == pix_fmt else planar.reformat(format=pix_fmt)
            f.pts = i
            for pkt in s.encode(f):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return path


def _video_path_rgb(path: Path) -> list[np.ndarray]:
    """Every frame of ``path`` as float32 HxWx3 RGB as the video path reads it: the stream's colour decision,
    its planes (``frame_planes``) through ``yuv_to_rgb``."""
    from psr2video.video.color import yuv_to_rgb
    from psr2video.video.reader import frame_planes, stream_info

    out = []
    with av.open(str(path)) as c:
        color = stream_info(c).color
        for fr in c.decode(video=0):
            planes, bits, _, _, _ = frame_planes(fr, None, color)
            t = [torch.from_numpy(np.ascontiguousarray(p))[None] for p in planes]
            out.append(yuv_to_rgb(t[0], t[1], t[2], bits, color)[0].permute(1, 2, 0).numpy())
    return out


@pytest.mark.parametrize("pix_fmt,codec,loc", [("yuv420p", "ffv1", None), ("yuv420p", "ffv1", 2),
                                               ("yuv420p10le", "ffv1", None), ("yuva420p", "ffv1", None),
                                               ("yuyv422", "rawvideo", None)])
def test_video_frames_read_as_the_video_path_reads_them(tmp_path: Path, pix_fmt: str, codec: str,
                                                        loc: int | None) -> None:
    """A video's frames taken as pictures (a still, an animation) are the RGB the video path reads: the frame's
    matrix, range and chroma siting, its chroma interpolated (swscale's YUV to RGB takes the nearest chroma
    sample: colour edges came out blocky, up to 88 codes off); alpha is kept; a frame of more than 8 bits is also
    kept as float (written at 16 bits)."""
    from psr2video import animation
    from psr2video.video.trim import Trim

    clip = _yuv_clip(tmp_path / ("clip.avi" if codec == "rawvideo" else "clip.mkv"), pix_fmt, codec,
                     chroma_location=loc)
    ref = _video_path_rgb(clip)
    anim = animation.read_video(clip, 2, [])
    assert len(anim.frames) == len(ref) == 2
    for im, r in zip(anim.frames, ref, strict=True):
        a = np.asarray(im).astype(int)
        assert im.mode == ("RGBA" if pix_fmt.startswith("yuva") else "RGB")
        assert np.abs(a[..., :3] - np.round(r * 255)).max() <= 1
        if im.mode == "RGBA":
            assert a[:, :24, 3].min() == 255 and a[:, 24:, 3].max() == 0
    deep = animation.read_video(clip, 2, [], trim=Trim.from_options("0", None, None), grab=True,
                                deep=True).info.get("deep")
    assert (deep is not None) == (pix_fmt == "yuv420p10le")
    if deep is not None:
        assert deep.dtype == np.float32 and np.abs(deep - ref[0]).max() < 1e-6


def test_a_still_of_a_video_frame_is_that_frame_of_the_video_output(tmp_path: Path) -> None:
    """``psr2video clip.mkv f0.png --start 0`` is frame 0 of ``psr2video clip.mkv out.mkv`` (lossless 4:4:4) within
    a few codes (the still's input is rounded to 8 bits): one YUV to RGB for both (it was swscale's for the
    still, whose nearest chroma made colour edges blocky, 50+ codes off)."""
    from psr2video.video.color import decide_color, yuv_to_rgb

    clip = _yuv_clip(tmp_path / "clip.mkv")
    code, out = run(str(clip), str(tmp_path / "f0.png"), "--variant", "mks", "--start", "0", "-q")
    assert code == 0, out
    code, out = run(str(clip), str(tmp_path / "v.mkv"), "--variant", "mks", "--codec", "ffv1", "--pix-fmt",
                    "yuv444p", "-q")
    assert code == 0, out
    with av.open(str(tmp_path / "v.mkv")) as c:
        f = next(c.decode(video=0))
        info = decide_color(f.colorspace, f.color_range, None, None, f.height, f.format.name)
        y, u, v = (torch.from_numpy(np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width].copy())[None]
                   for p in f.planes)
        vid = np.round(yuv_to_rgb(y, u, v, 8, info)[0].permute(1, 2, 0).numpy() * 255)
    with Image.open(tmp_path / "f0.png") as im:
        still = np.asarray(im.convert("RGB")).astype(float)
    assert still.shape == vid.shape == (64, 96, 3)
    assert np.abs(still - vid).max() <= 4, np.abs(still - vid).max()


def test_limited_range_grey_video_frames_are_expanded_as_the_video_path_does(tmp_path: Path) -> None:
    """A grey video tagged limited range (libx265 gray, FFV1 gray with tv range) read as pictures: swscale left its
    codes as they were (black 16, white 235: 16-20 codes off the video output's frame); the video path's
    conversion expands them."""
    from psr2video import animation
    from psr2video.video.color import yuv_to_rgb
    from psr2video.video.reader import frame_planes, stream_info

    clip = tmp_path / "grey.mkv"
    w, h = 48, 32
    ramp = (16 + (np.mgrid[:h, :w][1] * 219) // (w - 1)).astype(np.uint8)
    with av.open(str(clip), "w") as out:
        s = out.add_stream("ffv1", rate=10)
        s.width, s.height, s.pix_fmt = w, h, "gray"
        s.codec_context.color_range = 1  # limited (tv)
        for i in range(2):
            f = av.VideoFrame.from_ndarray(ramp, format="gray")
            f.pts, f.color_range = i, 1
            for pkt in s.encode(f):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    with av.open(str(clip)) as c:
        color = stream_info(c).color
        fr = next(c.decode(video=0))
        planes, bits, _, _, _ = frame_planes(fr, None, color)
        ref = yuv_to_rgb(torch.from_numpy(np.ascontiguousarray(planes[0]))[None], None, None, bits, color)
    assert not color.full_range
    ref = np.round(ref[0].permute(1, 2, 0).numpy() * 255)
    assert ref.min() == 0 and ref.max() == 255  # expanded: 16 -> 0, 235 -> 255
    anim = animation.read_video(clip, 2, [])
    for im in anim.frames:
        assert np.abs(np.asarray(im).astype(int) - ref).max() <= 1
