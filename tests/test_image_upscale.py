"""`psr2video in.png out.png` and `psr2video pics/ out/`: pictures through the same Upscaler as video, with what
they hold kept (alpha, grey, ICC/EXIF/DPI) and the same one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from psr2video.cli import cli

sys.path.insert(0, str(Path(__file__).parent))
from test_video import make_clip  # noqa: E402


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.output


def one_line_error(code: int, out: str, *words: str) -> None:
    lines = [ln for ln in out.splitlines() if ln.startswith("Error")]
    assert code == 1 and len(lines) == 1 and "Traceback" not in out, out
    assert all(w in lines[0] for w in words), lines[0]


def noise(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def test_picture_is_the_upscalers_output(tmp_path: Path) -> None:
    """A PNG comes back as exactly what the shared Upscaler makes of it (the same path as a video frame), with the
    clean-trained weights by default (pictures are not compressed video), the video ones with --weights video."""
    from psr2video import Upscaler

    src = tmp_path / "in.png"
    Image.fromarray(noise(24, 40, 3), "RGB").save(src)
    x = torch.from_numpy(np.asarray(Image.open(src), np.float32) / 255).permute(2, 0, 1)[None]
    outs = {}
    for weights in (None, "video"):
        extra = ("--weights", weights) if weights else ()
        code, out = run(str(src), str(tmp_path / "out.png"), "--variant", "realtime", "--backend", "torch", "-y",
                        *extra)
        assert code == 0 and "1 picture" in out, out
        assert ("[realtime_x2_clean]" in out) == (weights is None), out
        outs[weights] = got = np.asarray(Image.open(tmp_path / "out.png"))
        up = Upscaler(variant="realtime", scale=2, backend="torch", device="cpu", weights=weights or "clean")
        want = (up(x)[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        assert got.shape == (48, 80, 3) and np.array_equal(got, want)
    assert not np.array_equal(outs[None], outs["video"])


def test_alpha_grey_palette_and_metadata_are_kept(tmp_path: Path) -> None:
    """Alpha is upscaled (by the MKS2021 resampler), not dropped; grey stays grey; a palette picture comes back
    as RGB; a JPEG keeps its EXIF and DPI; an opaque alpha stays fully opaque."""
    rgba = noise(20, 30, 4)
    rgba[..., 3] = np.linspace(0, 255, 30, dtype=np.uint8)[None, :]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    opaque = rgba.copy()
    opaque[..., 3] = 255
    Image.fromarray(opaque, "RGBA").save(tmp_path / "o.png")
    Image.fromarray(rgba[..., 0], "L").save(tmp_path / "g.png")
    Image.fromarray(rgba[..., :3], "RGB").convert("P").save(tmp_path / "p.png")
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    Image.fromarray(rgba[..., :3], "RGB").save(tmp_path / "j.jpg", exif=exif, dpi=(300, 300))
    for name in ("a.png", "o.png", "g.png", "p.png", "j.jpg"):
        code, out = run(str(tmp_path / name), str(tmp_path / f"x2_{name}"), "--variant", "mks", "-q")
        assert code == 0, out
    a = Image.open(tmp_path / "x2_a.png")
    assert a.mode == "RGBA" and a.size == (60, 40)
    alpha = np.asarray(a)[..., 3].astype(float)
    assert np.abs(alpha.mean(0)[2:-2] - np.linspace(0, 255, 60)[2:-2]).max() < 8  # the ramp, upscaled
    assert np.asarray(Image.open(tmp_path / "x2_o.png"))[..., 3].min() == 255
    assert Image.open(tmp_path / "x2_g.png").mode == "L"
    assert Image.open(tmp_path / "x2_p.png").mode == "RGB"
    j = Image.open(tmp_path / "x2_j.jpg")
    assert j.size == (60, 40) and j.getexif().get(0x010F) == "TestCam"
    assert tuple(map(round, j.info["dpi"])) == (300, 300)


def test_what_a_picture_loses_is_said(tmp_path: Path) -> None:
    """16-bit samples written 8-bit (into JPEG) and alpha into JPEG are each one note, not silent."""
    Image.fromarray((np.linspace(0, 65535, 32)[None, :] * np.ones((16, 1))).astype(np.uint16)).save(tmp_path / "d.png")
    code, out = run(str(tmp_path / "d.png"), str(tmp_path / "d2.jpg"), "--variant", "mks", "-q")
    assert code == 0 and "note: d.png has more than 8 bits per sample; written 8-bit" in out, out
    assert np.asarray(Image.open(tmp_path / "d2.jpg")).max() >= 250  # scaled to 8 bits, not clipped
    Image.fromarray(noise(8, 8, 4), "RGBA").save(tmp_path / "t.png")
    code, out = run(str(tmp_path / "t.png"), str(tmp_path / "t.jpg"), "--variant", "mks", "-q")
    assert code == 0 and "alpha channel, which .jpg can't hold; dropped" in out, out
    opaque = noise(8, 8, 4)
    opaque[..., 3] = 255
    Image.fromarray(opaque, "RGBA").save(tmp_path / "o.png")  # an opaque alpha loses nothing: no note
    code, out = run(str(tmp_path / "o.png"), str(tmp_path / "o.jpg"), "--variant", "mks", "-q")
    assert code == 0 and "alpha" not in out, out


def test_folder_of_pictures(tmp_path: Path) -> None:
    """A folder in, a folder out: the same names and sub-folders; an unreadable file is named and skipped, the run
    exits 1 after writing the others; no temporary file is left; a second run without -y is refused."""
    pics = tmp_path / "pics"
    (pics / "sub").mkdir(parents=True)
    Image.fromarray(noise(10, 12, 3), "RGB").save(pics / "one.png")
    Image.fromarray(noise(10, 12, 3, 1), "RGB").save(pics / "sub" / "two.jpg")
    (pics / "notes.txt").write_text("not a picture, not a picture name")
    out = tmp_path / "out"
    code, log = run(str(pics), str(out), "--variant", "mks", "-q")
    assert code == 0 and "done: 2 pictures" in log, log
    assert Image.open(out / "one.png").size == (24, 20) and Image.open(out / "sub" / "two.jpg").size == (24, 20)
    one_line_error(*run(str(pics), str(out), "--variant", "mks", "-q"), "exists (and 1 more); use -y")
    (pics / "broken.png").write_bytes(b"not a png")
    code, log = run(str(pics), str(out), "--variant", "mks", "-q", "-y")
    one_line_error(code, log, "1 of 3 pictures could not be upscaled", "broken.png", "the others were written")
    assert "warning: not a readable picture" in log
    assert not list(out.rglob(".*.tmp"))


def test_picture_mistakes_are_one_line(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.fromarray(noise(8, 8, 3), "RGB").save(src)
    one_line_error(*run(str(src), str(tmp_path / "o.png"), "--crf", "20"), "--crf is a video option")
    one_line_error(*run(str(src), str(tmp_path / "o.png"), "--workers", "2"), "--workers is a video option")
    clip = make_clip(tmp_path / "v.mkv")
    one_line_error(*run(str(clip), str(tmp_path / "o.png"), "--variant", "mks"), "o.png is a picture but",
                   "v.mkv is not", ".gif or .webp")
    one_line_error(*run(str(tmp_path), str(tmp_path / "o.png"), "--variant", "mks"), "OUT must be a folder too")
    one_line_error(*run(str(tmp_path), str(tmp_path / "inside"), "--variant", "mks"), "inside IN")
    (tmp_path / "o.png").write_bytes(b"keep")
    one_line_error(*run(str(src), str(tmp_path / "o.png"), "--variant", "mks"), "exists; use -y")
    assert (tmp_path / "o.png").read_bytes() == b"keep"


@pytest.mark.parametrize("ext", [".webp", ".tif", ".bmp"])
def test_other_picture_formats(tmp_path: Path, ext: str) -> None:
    src = tmp_path / "in.png"
    Image.fromarray(noise(8, 10, 3), "RGB").save(src)
    code, out = run(str(src), str(tmp_path / f"o{ext}"), "--variant", "mks", "-q")
    assert code == 0, out
    assert Image.open(tmp_path / f"o{ext}").size == (20, 16)


def test_large_picture_is_tiled_on_the_cpu_with_the_same_result(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A picture over AUTO_TILE_PIXELS runs in tiles on the CPU (a 12-megapixel photo would not fit in memory
    whole through stream): said in a note, and the picture equals the untiled one."""
    from psr2video import image_upscale

    src = tmp_path / "in.png"
    Image.fromarray(noise(40, 56, 3), "RGB").save(src)
    code, out = run(str(src), str(tmp_path / "whole.png"), "--variant", "realtime", "-q")
    assert code == 0 and "tiles" not in out, out
    monkeypatch.setattr(image_upscale, "AUTO_TILE_PIXELS", 1000)
    monkeypatch.setattr(image_upscale, "AUTO_TILE", 24)
    code, out = run(str(src), str(tmp_path / "tiled.png"), "--variant", "realtime", "-q")
    assert code == 0 and "note: in.png (56x40) is upscaled in 24-px tiles on the CPU" in out, out
    a = np.asarray(Image.open(tmp_path / "whole.png")).astype(int)
    b = np.asarray(Image.open(tmp_path / "tiled.png")).astype(int)
    assert np.abs(a - b).max() <= 1


def test_odd_pictures_found_in_review(tmp_path: Path) -> None:
    """A CMYK picture's profile was attached to the RGB output (an invalid file); a dark 16-bit grey picture came
    out 325x brighter (scaled by its brightest value); grey+alpha into BMP failed after the work and RGBA into
    BMP lost its alpha in silence; a 1-bit picture came back RGB; a picture on stdin was sent to the video path."""
    fake_cmyk = bytes(16) + b"CMYK" + bytes(108)  # a profile header that says CMYK (not a usable profile)
    Image.fromarray(noise(8, 8, 4), "CMYK").save(tmp_path / "c.jpg", icc_profile=fake_cmyk)
    code, out = run(str(tmp_path / "c.jpg"), str(tmp_path / "c.png"), "--variant", "mks", "-q")
    assert code == 0 and "ICC profile (CMYK) does not describe the RGB picture written; left out" in out, out
    c = Image.open(tmp_path / "c.png")
    assert c.mode == "RGB" and "icc_profile" not in c.info

    Image.fromarray(np.full((8, 8), 200, np.uint16)).save(tmp_path / "dark.png")
    assert Image.open(tmp_path / "dark.png").mode.startswith("I")
    code, out = run(str(tmp_path / "dark.png"), str(tmp_path / "dark2.bmp"), "--variant", "mks", "-q")
    assert code == 0 and np.asarray(Image.open(tmp_path / "dark2.bmp")).max() <= 2, out  # 200/65535 of white
    code, out = run(str(tmp_path / "dark.png"), str(tmp_path / "dark2.png"), "--variant", "mks", "-q")
    assert code == 0 and np.abs(np.asarray(Image.open(tmp_path / "dark2.png")).astype(int) - 200).max() <= 1, out

    la = noise(8, 8, 2)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    code, out = run(str(tmp_path / "la.png"), str(tmp_path / "la.bmp"), "--variant", "mks", "-q")
    assert code == 0 and "alpha channel, which .bmp can't hold; dropped" in out, out
    assert Image.open(tmp_path / "la.bmp").mode == "L"

    Image.fromarray(noise(8, 8, 1)[..., 0] > 127).save(tmp_path / "bw.png")
    code, out = run(str(tmp_path / "bw.png"), str(tmp_path / "bw2.png"), "--variant", "mks", "-q")
    assert code == 0 and Image.open(tmp_path / "bw2.png").mode == "L", out

    r = CliRunner().invoke(cli, ["-", str(tmp_path / "s.png"), "--variant", "mks"], input=b"")
    one_line_error(r.exit_code, r.output, "made from a file, not stdin")


def test_model_file_with_a_fixed_size_graph(tmp_path: Path) -> None:
    """Any model a user owns works on pictures too; a fixed-size ONNX graph too small for the picture is one line
    that says which --tile to use (it was a traceback), and with that --tile it runs."""
    from conftest import export_onnx_file

    from psr2video.runtime.peers import SRVGGNetCompact

    torch.manual_seed(0)
    net = export_onnx_file(SRVGGNetCompact(16, 4, 2).eval(), tmp_path / "2x_fixed.onnx", torch.rand(1, 3, 32, 32),
                           None)
    src = tmp_path / "in.png"
    Image.fromarray(noise(40, 56, 3), "RGB").save(src)
    code, out = run(str(src), str(tmp_path / "o.png"), "--model", str(net), "-q")
    one_line_error(code, out, "--tile")
    assert not (tmp_path / "o.png").exists()
    code, out = run(str(src), str(tmp_path / "o.png"), "--model", str(net), "--tile", "16", "-q")
    assert code == 0 and Image.open(tmp_path / "o.png").size == (112, 80), out


def deep_frame(path: Path) -> tuple[str, np.ndarray]:
    """The pixel format FFmpeg decodes ``path`` as, and its samples (16-bit where the file is)."""
    import av

    with av.open(str(path)) as c:
        f = next(c.decode(video=0))
    name = f.format.name
    want = {"rgb48be": "rgb48le", "rgba64be": "rgba64le", "gray16be": "gray16le"}.get(name, name)
    return name, f.to_ndarray(format=want)


def test_16_bit_pictures_stay_16_bit(tmp_path: Path) -> None:
    """A 16-bit PNG (RGB, RGBA, grey) is read at 16 bits (Pillow alone reads RGB as 8) and written at 16 bits to
    PNG or TIFF: the Upscaler's output of the exact samples, within one 16-bit step, with its ICC profile and DPI
    in the PNG. Into a TIFF with a profile, or into JPEG, it is written 8-bit, said."""
    from PIL import ImageCms

    from psr2video import Upscaler, deep_pictures

    h, w = 20, 28
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([xx / w * 0.03 + 0.3, yy / h * 0.03 + 0.5, (xx + yy) / (w + h) * 0.03 + 0.1], 2)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    deep_pictures.write(smooth, "RGB", {"icc_profile": icc, "dpi": (300, 300)}, tmp_path / "s.png", tmp_path / "s.png")
    assert Image.open(tmp_path / "s.png").mode == "RGB"  # what Pillow alone would have read: 8 bits
    code, out = run(str(tmp_path / "s.png"), str(tmp_path / "o.png"), "--variant", "realtime", "--backend", "torch")
    assert code == 0 and "8-bit" not in out, out
    fmt, got = deep_frame(tmp_path / "o.png")
    up = Upscaler(variant="realtime", scale=2, backend="torch", device="cpu", weights="clean")  # (pictures: clean)
    _, src = deep_frame(tmp_path / "s.png")
    x = torch.from_numpy(src.astype(np.float32) / 65535).permute(2, 0, 1)[None]
    with torch.inference_mode():
        want = up(x)[0].permute(1, 2, 0).clamp(0, 1).numpy() * 65535
    assert fmt == "rgb48be" and got.shape == (40, 56, 3) and np.abs(got - want).max() <= 1.0
    assert len(np.unique(got[..., 0])) > 4 * len(np.unique(got[..., 0] >> 8))  # far more levels than 8 bits
    info = Image.open(tmp_path / "o.png").info
    assert info["icc_profile"] == icc and round(info["dpi"][0]) == 300

    code, out = run(str(tmp_path / "s.png"), str(tmp_path / "o.tif"), "--variant", "mks", "-q")
    assert code == 0 and "written 8-bit (a 16-bit TIFF from here can't hold its ICC profile; use .png" in out, out
    assert deep_frame(tmp_path / "o.tif")[0] == "rgb24" and Image.open(tmp_path / "o.tif").info["icc_profile"] == icc
    deep_pictures.write(smooth, "RGB", {}, tmp_path / "plain.png", tmp_path / "plain.png")
    code, out = run(str(tmp_path / "plain.png"), str(tmp_path / "o2.tif"), "--variant", "mks", "-q")
    assert code == 0 and "8-bit" not in out and deep_frame(tmp_path / "o2.tif")[0] == "rgb48le", out

    rgba = np.concatenate([smooth, np.linspace(0, 1, w)[None, :, None] * np.ones((h, 1, 1))], 2)
    deep_pictures.write(rgba, "RGBA", {}, tmp_path / "a.png", tmp_path / "a.png")
    code, out = run(str(tmp_path / "a.png"), str(tmp_path / "a2.png"), "--variant", "mks", "-q")
    fmt, got = deep_frame(tmp_path / "a2.png")
    assert code == 0 and fmt == "rgba64be" and got.shape == (40, 56, 4) and got[..., 3].min() < got[..., 3].max()
    Image.fromarray((smooth[..., 0] * 65535).astype(np.uint16)).save(tmp_path / "g.png")  # Pillow's I;16
    code, out = run(str(tmp_path / "g.png"), str(tmp_path / "g2.png"), "--variant", "mks", "-q")
    assert code == 0 and deep_frame(tmp_path / "g2.png")[0] == "gray16be" and Image.open(tmp_path / "g2.png").mode \
        .startswith("I;16"), out


def planar_tiff(path: Path, samples: np.ndarray) -> Path:
    """An uncompressed TIFF with 16-bit samples stored plane by plane (PlanarConfiguration 2), written by hand:
    Pillow can't write one (scanners and ImageMagick's -interlace plane do)."""
    import struct

    h, w, c = samples.shape
    planes = [np.ascontiguousarray(samples[..., i]).astype("<u2").tobytes() for i in range(c)]
    n_tags, first = 10, 8 + 2 + 10 * 12 + 4
    bits, offsets, counts = first, first + 2 * c, first + 6 * c
    data = first + 10 * c
    tags = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, c, bits), (259, 3, 1, 1), (262, 3, 1, 2), (273, 4, c, offsets),
            (277, 3, 1, c), (278, 4, 1, h), (279, 4, c, counts), (284, 3, 1, 2)]
    out = b"II" + struct.pack("<HIH", 42, 8, n_tags) + b"".join(struct.pack("<HHII", *t) for t in tags)
    out += struct.pack("<I", 0) + struct.pack(f"<{c}H", *[16] * c)
    out += struct.pack(f"<{c}I", *[data + i * len(planes[0]) for i in range(c)])
    out += struct.pack(f"<{c}I", *[len(planes[0])] * c) + b"".join(planes)
    path.write_bytes(out)
    return path


def test_planar_16_bit_tiff_is_read_right(tmp_path: Path) -> None:
    """A 16-bit TIFF stored plane by plane: Pillow reads each plane's low bytes as 8-bit samples (noise, no
    error), so FFmpeg's decoder reads it: a 16-bit PNG of the right picture, and a right 8-bit JPEG."""
    yy, xx = np.mgrid[0:24, 0:32]
    samples = np.stack([xx * 2000, yy * 2600, (xx + yy) * 1100], -1).astype(np.uint16)
    src = planar_tiff(tmp_path / "planar.tif", samples)
    assert np.abs(np.asarray(Image.open(src).convert("RGB"), float) - samples / 257).max() > 50  # Pillow alone
    code, out = run(str(src), str(tmp_path / "o.png"), "--variant", "mks", "-q")
    assert code == 0, out
    fmt, got = deep_frame(tmp_path / "o.png")
    from psr2video import Upscaler

    x = torch.from_numpy(samples.astype(np.float32) / 65535).permute(2, 0, 1)[None]
    with torch.inference_mode():
        want = Upscaler("mks", 2, device="cpu")(x)[0].permute(1, 2, 0).numpy() * 65535
    assert fmt == "rgb48be" and np.abs(got - want).max() <= 1.0
    code, out = run(str(src), str(tmp_path / "o.jpg"), "--variant", "mks", "-q")
    assert code == 0 and "written 8-bit" in out, out
    assert np.abs(np.asarray(Image.open(tmp_path / "o.jpg"), float) - want / 257).mean() < 1.5


def test_16_bit_fallbacks_found_in_review(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FFmpeg's TIFF decoder reads some 16-bit files wrong without an error (tiled ones as black, premultiplied
    alpha as straight, an unspecified extra sample as alpha): its samples are used only where they are the
    picture Pillow reads. A 16-bit TIFF keeps its DPI (FFmpeg wrote 72). A picture FFmpeg's encoder refuses
    (past its size limit) is written 8-bit, said, not an error that stops a folder."""
    from PIL import Image as PILImage

    from psr2video import deep_pictures

    rng = np.random.default_rng(0)
    straight = rng.random((6, 9, 4)).astype(np.float32)
    straight[..., 3] = 0.5
    pil = PILImage.fromarray((straight * 255).astype(np.uint8), "RGBA")
    assert deep_pictures.agrees((straight, "RGBA"), pil)
    assert not deep_pictures.agrees((np.zeros_like(straight), "RGBA"), pil)  # a tiled TIFF read as black
    premultiplied = straight.copy()
    premultiplied[..., :3] *= premultiplied[..., 3:]
    assert not deep_pictures.agrees((premultiplied, "RGBA"), pil)
    assert not deep_pictures.agrees((straight, "RGBA"), pil.convert("RGB"))  # an extra sample read as alpha
    stars = np.zeros((32, 32, 3), np.uint8)
    stars[[3, 9, 17, 25, 30], [5, 21, 2, 14, 28]] = 255  # mostly black: a mean difference would pass
    assert not deep_pictures.agrees((np.zeros((32, 32, 3), np.float32), "RGB"), PILImage.fromarray(stars))

    h, w = 12, 16
    smooth = np.stack([np.linspace(0.2, 0.3, w)[None, :].repeat(h, 0)] * 3, 2)
    deep_pictures.write(smooth, "RGB", {"dpi": (300, 300)}, tmp_path / "s.png", tmp_path / "s.png")
    code, out = run(str(tmp_path / "s.png"), str(tmp_path / "s.tif"), "--variant", "mks", "-q")
    assert code == 0 and deep_frame(tmp_path / "s.tif")[0] == "rgb48le", out
    assert round(Image.open(tmp_path / "s.tif").info["dpi"][0]) == 300

    def refuse(*args, **kwargs):
        raise deep_pictures.DeepWriteError("Invalid argument")

    monkeypatch.setattr(deep_pictures, "write", refuse)
    code, out = run(str(tmp_path / "s.png"), str(tmp_path / "s8.png"), "--variant", "mks", "-q")
    assert code == 0 and "s8.png is written 8-bit: FFmpeg's encoder refused the 16-bit picture" in out, out
    assert deep_frame(tmp_path / "s8.png")[0] == "rgb24"


def test_tta_on_a_picture_and_a_video(tmp_path: Path) -> None:
    """--tta reaches the shared Upscaler from the command line, for a picture and a video (the start line says
    so); scale-out records it in the settings that decide a segment's bytes."""
    from psr2video.scaleout.tasks import Settings

    Image.fromarray(noise(12, 16, 3), "RGB").save(tmp_path / "in.png")
    code, out = run(str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--variant", "realtime", "--tta")
    assert code == 0 and "tta=x4" in out and Image.open(tmp_path / "out.png").size == (32, 24), out
    clip = make_clip(tmp_path / "v.mkv")
    code, out = run(str(clip), str(tmp_path / "v_x2.mkv"), "--variant", "realtime", "--tta", "-q")
    assert code == 0 and "tta=x4" in out, out
    assert Settings("mks", 2, None, "auto", None, 0, 1, "ffv1", None, None, None, True).tta


def test_16_bit_png_with_a_see_through_colour(tmp_path: Path) -> None:
    """A 16-bit RGB PNG whose tRNS names a see-through colour keeps it see-through (Pillow compared the 16-bit
    colour with its 8-bit reading and missed it; FFmpeg reads it as alpha)."""
    import struct
    import zlib

    from psr2video import deep_pictures

    a = np.full((10, 12, 3), 0.5, np.float32)
    a[:4, :4] = (1000 / 65535, 2000 / 65535, 3000 / 65535)
    deep_pictures.write(a, "RGB", {}, tmp_path / "p.png", tmp_path / "p.png")
    data = (tmp_path / "p.png").read_bytes()
    body = b"tRNS" + struct.pack(">HHH", 1000, 2000, 3000)
    chunk = struct.pack(">I", 6) + body + struct.pack(">I", zlib.crc32(body))
    end = 8 + 8 + 13 + 4  # after the signature and IHDR
    (tmp_path / "t.png").write_bytes(data[:end] + chunk + data[end:])
    code, out = run(str(tmp_path / "t.png"), str(tmp_path / "t2.png"), "--variant", "mks", "-q")
    fmt, got = deep_frame(tmp_path / "t2.png")
    assert code == 0 and "8-bit" not in out and fmt == "rgba64be", out
    assert got[:6, :6, 3].max() < 4000 and got[12:, 12:, 3].min() > 60000
    # into 8 bits: FFmpeg's samples too (Pillow matched the 16-bit key against its 8-bit reading)
    code, out = run(str(tmp_path / "t.png"), str(tmp_path / "t2.webp"), "--variant", "mks", "-q")
    alpha = np.asarray(Image.open(tmp_path / "t2.webp").convert("RGBA"))[..., 3]
    assert code == 0 and "written 8-bit" in out and alpha[:6, :6].max() < 16 and alpha[12:, 12:].min() > 240, out
    # an 8-bit grey PNG's see-through grey becomes alpha
    g = np.full((6, 6), 100, np.uint8)
    g[0, 0] = 7
    Image.fromarray(g, "L").save(tmp_path / "g.png", transparency=7)
    code, out = run(str(tmp_path / "g.png"), str(tmp_path / "g2.png"), "--variant", "mks", "-q")
    with Image.open(tmp_path / "g2.png") as im:
        assert code == 0 and im.mode == "LA" and im.getchannel("A").getextrema()[0] < 128, out


def test_text_comment_and_colour_chunks_are_carried(tmp_path: Path) -> None:
    """PNG text chunks (Stable Diffusion's ``parameters``, an iTXt ``workflow`` with its language), gAMA/cHRM,
    and a JPEG's comment reach an output that holds them, 8-bit and 16-bit PNG alike, and are named where the
    output can't hold them; they used to be dropped without a word."""
    from PIL import PngImagePlugin

    from psr2video import deep_pictures

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat, steps 20, seed 1")
    info.add_itxt("workflow", '{"node": "é"}', lang="en", tkey="Workflow")
    info.add(b"gAMA", (45455).to_bytes(4, "big"))
    info.add(b"cHRM", b"".join(round(v * 100000).to_bytes(4, "big")
                               for v in (0.3127, 0.329, 0.64, 0.33, 0.3, 0.6, 0.15, 0.06)))
    Image.fromarray(noise(12, 16, 3)).save(tmp_path / "sd.png", pnginfo=info)
    code, out = run(str(tmp_path / "sd.png"), str(tmp_path / "o.png"), "--variant", "mks", "-q")
    assert code == 0 and "left out" not in out, out
    got = Image.open(tmp_path / "o.png")
    got.load()
    assert got.text == {"parameters": "a cat, steps 20, seed 1", "workflow": '{"node": "é"}'}
    assert got.text["workflow"].lang == "en" and got.text["workflow"].tkey == "Workflow"
    assert got.info["gamma"] == 0.45455 and got.info["chromaticity"][0] == 0.3127
    code, out = run(str(tmp_path / "sd.png"), str(tmp_path / "o.jpg"), "--variant", "mks", "-q")
    assert code == 0 and "sd.png's PNG text (parameters, workflow) and gamma (gAMA) and chromaticities (cHRM) " \
        "can't be held in .jpg; left out" in out, out

    deep = np.random.default_rng(0).random((12, 16, 3)).astype(np.float32)  # 16-bit PNG: FFmpeg writes it
    deep_pictures.write(deep, "RGB", {}, tmp_path / "d.png", tmp_path / "d.png")
    im = Image.open(tmp_path / "d.png")
    (tmp_path / "dt.png").write_bytes(deep_pictures._with_png_metadata(
        (tmp_path / "d.png").read_bytes(), {"extra": {"text": {"parameters": "deep"}, "gamma": 0.45455}}))
    code, out = run(str(tmp_path / "dt.png"), str(tmp_path / "do.png"), "--variant", "mks", "-q")
    assert code == 0 and deep_frame(tmp_path / "do.png")[0] == "rgb48be", out
    got = Image.open(tmp_path / "do.png")
    got.load()
    assert got.text == {"parameters": "deep"} and got.info["gamma"] == 0.45455 and im.size == (16, 12)

    Image.fromarray(noise(12, 16, 3)).save(tmp_path / "c.jpg", comment=b"shot on a phone")
    assert run(str(tmp_path / "c.jpg"), str(tmp_path / "c2.jpg"), "--variant", "mks", "-q")[0] == 0
    assert Image.open(tmp_path / "c2.jpg").info["comment"] == b"shot on a phone"
    assert run(str(tmp_path / "c.jpg"), str(tmp_path / "c2.png"), "--variant", "mks", "-q")[0] == 0
    assert Image.open(tmp_path / "c2.png").text == {"Comment": "shot on a phone"}
    code, out = run(str(tmp_path / "c.jpg"), str(tmp_path / "c2.webp"), "--variant", "mks", "-q")
    assert code == 0 and "c.jpg's comment can't be held in .webp; left out" in out, out


def broken_png(path: Path) -> Path:
    """An 80x60 PNG whose second IDAT chunk has a garbage type: Pillow raises SyntaxError reading it."""
    import io
    import struct
    import zlib

    buf = io.BytesIO()
    Image.fromarray(noise(60, 80, 3)).save(buf, "PNG")
    data = buf.getvalue()
    i = data.index(b"IDAT") - 4  # split the picture data into two IDAT chunks, the second with a bad type
    n = struct.unpack(">I", data[i:i + 4])[0]
    body = data[i + 8:i + 8 + n]

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    half = len(body) // 2
    path.write_bytes(data[:i] + chunk(b"IDAT", body[:half]) + chunk(b"\xe0\xc0\x8b\xff", body[half:])
                     + data[i + 12 + n:])
    return path


def test_a_broken_png_is_one_line_and_a_folder_goes_on(tmp_path: Path) -> None:
    """Pillow raises SyntaxError for a broken PNG chunk: a traceback for one file, and a folder stopped at it with
    the other pictures never written."""
    bad = broken_png(tmp_path / "a.png")
    one_line_error(*run(str(bad), str(tmp_path / "o.png"), "--variant", "mks"), "not a readable picture", "a.png")
    folder = tmp_path / "in"
    folder.mkdir()
    broken_png(folder / "a.png")
    Image.fromarray(noise(20, 30, 3)).save(folder / "b.png")
    code, out = run(str(folder), str(tmp_path / "out"), "--variant", "mks")
    assert code != 0 and "Traceback" not in out and "a.png" in out and "skipped" in out, out
    assert (tmp_path / "out" / "b.png").exists()


def test_an_output_past_the_format_limit_is_refused_before_the_work(tmp_path: Path) -> None:
    """WebP holds at most 16383 pixels a side: a 9000x4 picture x2 into .webp failed in the encoder after the work
    with a traceback ('encoding error 5'); --size up to 16384 passed the same way. Now one line, before."""
    src = tmp_path / "wide.png"
    Image.fromarray(noise(4, 9000, 3)).save(src)
    one_line_error(*run(str(src), str(tmp_path / "o.webp"), "--variant", "mks"),
                   "the output would be 18000x8 pixels, and .webp holds at most 16383 a side")
    assert not list(tmp_path.glob("o*")) and not list(tmp_path.glob(".o*"))
    code, out = run(str(src), str(tmp_path / "o.png"), "--variant", "mks")
    assert code == 0, out
    # TGA's sides are 16-bit (Pillow's OverflowError after the work), AVIF's past 65535 unreadable
    Image.fromarray(noise(2, 33000, 3)).save(wide := tmp_path / "wider.png")
    from PIL import features

    for ext in (".tga", ".avif") if features.check("avif") else (".tga",):
        one_line_error(*run(str(wide), str(tmp_path / f"w{ext}"), "--variant", "mks"),
                       f"the output would be 66000x4 pixels, and {ext} holds at most 65535 a side")


def test_exif_orientation_kept_or_applied(tmp_path: Path) -> None:
    """A phone photo stored on its side (EXIF orientation 6): WebP's EXIF into JPEG was written without the
    'Exif' header that JPEG readers look for (lost, no note: the photo showed sideways); into BMP/GIF, which hold
    no EXIF, the pixels stayed on their side and --size x100 gave 100x50. Now kept, or the pixels are turned."""
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "Cam"
    webp, jpg = tmp_path / "phone.webp", tmp_path / "phone.jpg"
    Image.fromarray(noise(20, 40, 3)).save(webp, exif=exif.tobytes(), lossless=True)
    Image.fromarray(noise(20, 40, 3)).save(jpg, exif=exif.tobytes())
    assert run(str(webp), str(tmp_path / "o.jpg"), "--variant", "mks")[0] == 0
    with Image.open(tmp_path / "o.jpg") as im:
        assert dict(im.getexif()) == {0x0112: 6, 0x010F: "Cam"}
    code, out = run(str(jpg), str(tmp_path / "o.bmp"), "--variant", "mks", "--size", "x100")
    assert code == 0 and "its pixels are turned instead" in out, out
    with Image.open(tmp_path / "o.bmp") as im:
        assert im.size == (50, 100)


def test_see_through_edges_keep_their_colour(tmp_path: Path) -> None:
    """A white sticker on transparent black: upscaled as stored, the hidden black bled into the edge (a pixel at
    alpha 205 came out 205, not 255: a dark fringe over any background). Visible pixels now take the premultiplied
    upscale's colour; the colour hidden under alpha 0 far from the edge (a texture's RGB under its mask) stays."""
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 1] = 200  # hidden green under alpha 0
    rgba[10:30, 10:30] = (255, 255, 255, 255)
    src = tmp_path / "sticker.png"
    Image.fromarray(rgba, "RGBA").save(src)
    assert run(str(src), str(tmp_path / "o.png"), "--variant", "mks")[0] == 0
    out = np.asarray(Image.open(tmp_path / "o.png").convert("RGBA")).astype(int)
    visible = out[..., 3] >= 128
    assert out[visible][:, :3].min() >= 250, out[visible][:, :3].min()
    assert tuple(out[2, 2, :3]) == (0, 200, 0) and out[2, 2, 3] == 0


def test_a_tiff_without_resolution_is_not_written_at_1_dpi(tmp_path: Path) -> None:
    """Pillow reads a TIFF with no resolution as 1 dpi, which was carried: a JPEG that prints 1,000 times too
    large."""
    src = tmp_path / "scan.tif"
    Image.fromarray(noise(8, 8, 3)).save(src)
    assert run(str(src), str(tmp_path / "o.jpg"), "--variant", "mks")[0] == 0
    with Image.open(tmp_path / "o.jpg") as im:
        assert im.info.get("dpi") in (None, (72, 72))


def test_16_bit_grey_with_a_see_through_value_stays_see_through(tmp_path: Path) -> None:
    """A 16-bit grey PNG whose tRNS makes value 0 see-through came out opaque grey with only 'written 8-bit'."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    g = np.tile((np.arange(40) * 1600).astype(">u2"), (30, 1))
    g[:, :10] = 0
    raw = b"".join(b"\0" + g[r].tobytes() for r in range(30))
    src = tmp_path / "g16.png"
    src.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40, 30, 16, 0, 0, 0, 0))
                    + chunk(b"tRNS", b"\0\0") + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    assert run(str(src), str(tmp_path / "o.png"), "--variant", "mks")[0] == 0
    with Image.open(tmp_path / "o.png") as im:
        assert im.mode == "LA"
        alpha = np.asarray(im.getchannel("A"))
    assert alpha[:, :15].max() == 0 and alpha[:, 26:].min() >= 250  # (x2: the see-through 10 columns are 20)


def test_out_a_folder_named_like_a_picture(tmp_path: Path) -> None:
    """OUT 'sub.png' that is a folder: '-y to overwrite' was offered, and with -y the model loaded and then failed."""
    src = tmp_path / "a.png"
    Image.fromarray(noise(8, 8, 3)).save(src)
    (tmp_path / "sub.png").mkdir()
    for extra in ((), ("-y",)):
        one_line_error(*run(str(src), str(tmp_path / "sub.png"), "--variant", "mks", *extra),
                       "sub.png is a folder, not an output file")


XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:rights>(c) Artist</dc:rights>'
       b'</rdf:Description></rdf:RDF></x:xmpmeta>')


@pytest.mark.parametrize("src_ext", [".jpg", ".webp", ".tif", ".png"])
def test_xmp_is_carried_or_named(tmp_path: Path, src_ext: str) -> None:
    """XMP (rights, keywords) from a JPEG, WebP, TIFF or PNG is written into every output that holds it (JPEG,
    WebP, TIFF with its EXIF kept, PNG as an iTXt chunk) and named where the output can't (BMP)."""
    from PIL import PngImagePlugin

    src = tmp_path / f"in{src_ext}"
    im = Image.fromarray(noise(16, 16, 3), "RGB")
    exif = Image.Exif()
    exif[0x013B] = "Artist"
    if src_ext == ".tif":
        im.save(src, tiffinfo={700: XMP})
    elif src_ext == ".png":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", XMP.decode())
        im.save(src, pnginfo=info)
    else:
        im.save(src, xmp=XMP, exif=exif, **({"lossless": True} if src_ext == ".webp" else {}))
    for ext in (".jpg", ".webp", ".tif", ".png"):
        code, out = run(str(src), str(tmp_path / f"out{ext}"), "--variant", "mks")
        assert code == 0 and "XMP" not in out and "text" not in out, out
        with Image.open(tmp_path / f"out{ext}") as got:
            got.load()
            assert got.info.get("xmp") == XMP, (ext, got.info.keys())
            if src_ext in (".jpg", ".webp"):
                assert got.getexif().get(0x013B) == "Artist", ext
    code, out = run(str(src), str(tmp_path / "out.bmp"), "--variant", "mks")
    assert code == 0 and "in" + src_ext + "'s XMP can't be held in .bmp; left out" in out, out


def test_jpeg_iptc_is_named(tmp_path: Path) -> None:
    """A JPEG's IPTC block (APP13), which Pillow can't write, is named in a note, not dropped silently."""
    buf = tmp_path / "plain.jpg"
    Image.fromarray(noise(16, 16, 3), "RGB").save(buf)
    data = buf.read_bytes()
    iptc = b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x07\x1c\x02t\x00\x03(c)"
    src = tmp_path / "in.jpg"
    src.write_bytes(data[:2] + b"\xff\xed" + (len(iptc) + 2).to_bytes(2, "big") + iptc + data[2:])
    code, out = run(str(src), str(tmp_path / "out.jpg"), "--variant", "mks")
    assert code == 0 and "in.jpg's IPTC (captions, credits) is not written by psr2video; left out" in out, out


@pytest.mark.parametrize("tiling", ["supported", "discouraged"])
def test_large_pictures_are_auto_tiled_on_the_cpu_for_whole_frame_models_too(monkeypatch: pytest.MonkeyPatch,
                                                                             tiling: str) -> None:
    """A picture past AUTO_TILE_PIXELS on the CPU runs in tiles for a model that looks at the whole frame (pro:
    tiling "discouraged", tens of GB whole), the note saying the tiles only approximate the whole picture."""
    from types import SimpleNamespace

    import torch

    from psr2video import image_upscale

    class Up:
        descriptor = SimpleNamespace(tiling=tiling, fixed_size=False, variant="pro")
        tile, device, scale, seen = 0, "cpu", 2, []

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            self.seen.append(self.tile)
            return torch.nn.functional.interpolate(x, scale_factor=2)

    monkeypatch.setattr(image_upscale, "AUTO_TILE_PIXELS", 16 * 16)
    monkeypatch.setattr(image_upscale, "AUTO_TILE", 12)
    up, notes = Up(), []
    y = image_upscale.upscale_tensor(up, torch.rand(1, 3, 20, 20), "RGB", "big.png", notes)
    assert y.shape == (1, 3, 40, 40) and up.seen == [12] and up.tile == 0
    assert len(notes) == 1 and "big.png (20x20) is upscaled in 12-px tiles on the CPU" in notes[0]
    assert ("pro looks at the whole picture, which the tiles only approximate" in notes[0]) == (tiling != "supported")


def _png16(path: Path, a: np.ndarray, colour_type: int, extra: tuple[tuple[bytes, bytes], ...] = ()) -> Path:
    """A 16-bit PNG of ``a`` (HxWxC uint16; colour type 0 grey, 2 RGB, 4 grey + alpha) with ``extra`` chunks
    before its data, written by hand (Pillow writes neither 16-bit RGB nor 16-bit grey + alpha)."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    h, w = a.shape[:2]
    rows = b"".join(b"\0" + a[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
                     + b"".join(chunk(k, d) for k, d in extra) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


def test_a_32_bit_integer_tiff_of_8_bit_values_is_not_black(tmp_path: Path) -> None:
    """A 32-bit integer grey TIFF whose samples all lie within 0-255 (Pillow's mode I saves an 8-bit picture so):
    read at the 8-bit range, said, not as a fraction of 65535 (black)."""
    g = noise(16, 16, 1)[..., 0]
    Image.fromarray(g.astype(np.int32), "I").save(tmp_path / "in.tif")
    code, out = run(str(tmp_path / "in.tif"), str(tmp_path / "out.png"), "--variant", "mks")
    assert code == 0 and "in.tif holds 32-bit integer samples, all within 0-255: read as 8-bit values" in out, out
    got = np.asarray(Image.open(tmp_path / "out.png"), np.float64)
    assert got.shape == (32, 32) and abs(got.mean() - g.mean()) < 8


def test_a_16_bit_grey_alpha_png_stays_grey_alpha(tmp_path: Path) -> None:
    """A 16-bit grey + alpha PNG (Pillow reads it as 8-bit RGBA) comes out grey + alpha, the note saying why it
    is 8-bit."""
    g = noise(16, 16, 1)[..., 0].astype(np.uint16) * 257
    alpha = np.zeros_like(g)
    alpha[4:12, 4:12] = 65535
    src = _png16(tmp_path / "in.png", np.dstack([g, alpha]), 4)
    code, out = run(str(src), str(tmp_path / "out.png"), "--variant", "mks")
    assert code == 0 and "written 8-bit (16-bit grey with alpha is read at 8 bits here)" in out, out
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode == "LA" and im.size == (32, 32)
        assert im.getchannel("A").getpixel((16, 16)) == 255 and im.getchannel("A").getpixel((1, 1)) == 0


def test_a_16_bit_png_whose_exif_has_a_jpeg_header_stays_16_bit(tmp_path: Path) -> None:
    """A 16-bit PNG whose eXIf chunk starts with JPEG's "Exif\\0\\0" (older writers), which FFmpeg refuses: read
    at 16 bits without that chunk and written 16-bit with its EXIF (without the extra header, so the output is
    readable at 16 bits too)."""
    import av

    exif = Image.Exif()
    exif[0x010F] = "Canon"
    a = noise(16, 16, 3).astype(np.uint16) * 257 + 3  # not 8-bit values: 16 bits to keep
    src = _png16(tmp_path / "in.png", a, 2, ((b"eXIf", exif.tobytes()),))
    assert exif.tobytes().startswith(b"Exif\0\0")
    code, out = run(str(src), str(tmp_path / "out.png"), "--variant", "mks")
    assert code == 0 and "8-bit" not in out, out
    with Image.open(tmp_path / "out.png") as im:
        assert "16" in str(im.tile[0][3]) and im.getexif().get(0x010F) == "Canon"
    with av.open(str(tmp_path / "out.png")) as c:
        assert next(c.decode(video=0)).format.name == "rgb48be"


def test_exif_xmp_or_a_comment_too_long_for_jpeg_is_left_out_said(tmp_path: Path) -> None:
    """A JPEG segment holds 64 KB: a longer EXIF, XMP or comment (fine in PNG or GIF) is left out of a .jpg with a
    note naming it and its size, the picture written (Pillow raised "EXIF data is too long": a traceback)."""
    from PIL import PngImagePlugin

    base = Image.fromarray(noise(8, 10, 3), "RGB")
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x010E] = "x" * 70000
    base.save(tmp_path / "exif.png", exif=exif)
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", '<x:xmpmeta xmlns:x="adobe:ns:meta/">' + "a" * 70000 + "</x:xmpmeta>")
    base.save(tmp_path / "xmp.png", pnginfo=info)
    base.save(tmp_path / "comment.gif", comment=b"c" * 70000)
    for name, what in (("exif.png", "EXIF"), ("xmp.png", "XMP"), ("comment.gif", "comment")):
        out = tmp_path / f"{name}.jpg"
        code, log = run(str(tmp_path / name), str(out), "--variant", "mks", "-q")
        assert code == 0 and "Traceback" not in log, log
        assert f"the {what} (68 KB) is longer than a JPEG segment holds (64 KB); left out" in log, log
        assert Image.open(out).size == (20, 16)
    small = Image.Exif()
    small[0x010F] = "Canon"
    base.save(tmp_path / "fine.png", exif=small)  # a small one is carried, unsaid
    code, log = run(str(tmp_path / "fine.png"), str(tmp_path / "fine.jpg"), "--variant", "mks", "-q")
    assert code == 0 and "segment" not in log and Image.open(tmp_path / "fine.jpg").getexif()[0x010F] == "Canon"


def test_a_lossless_webp_stays_lossless(tmp_path: Path) -> None:
    """A lossless WebP (VP8L) is written lossless again (it came back lossy at quality 95); a lossy one, and a
    PNG, at quality 95 (the README's measure: lossless, an upscaled photo is 3.4-4.6 times larger)."""
    pic = Image.fromarray(noise(12, 16, 3), "RGB")
    pic.save(tmp_path / "lossless.webp", lossless=True)
    pic.save(tmp_path / "lossy.webp", quality=80)
    pic.save(tmp_path / "pic.png")
    for name, lossless in (("lossless.webp", True), ("lossy.webp", False), ("pic.png", False)):
        out = tmp_path / f"x2_{name}.webp"
        code, log = run(str(tmp_path / name), str(out), "--variant", "mks", "-q")
        assert code == 0, log
        data = out.read_bytes()
        assert (b"VP8L" in data, b"VP8 " in data) == (lossless, not lossless), name
    code, log = run(str(tmp_path / "lossless.webp"), str(tmp_path / "same.webp"), "--variant", "mks", "-q")
    from psr2video import Upscaler

    x = torch.from_numpy(np.asarray(pic, np.float32) / 255).permute(2, 0, 1)[None]
    with torch.inference_mode():
        want = (Upscaler("mks", 2, device="cpu")(x)[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "same.webp").convert("RGB")), want)  # every sample


def test_avif_tga_and_jpegs_other_names_are_pictures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """.avif is written as a picture through Pillow (it went through the video path: a turned photo written
    sideways, alpha, ICC and EXIF lost), .jfif and .jpe as JPEG, .tga as TGA (they were "use .mkv..."); a folder's
    .avif and .tga pictures are upscaled, not "not copied". Without Pillow's AVIF codec: one line, before the
    model loads."""
    from PIL import features

    rgba = noise(10, 14, 4)
    rgba[..., 3] = 255
    rgba[:3, :3, 3] = 0
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Cam"
    Image.fromarray(rgba[..., :3], "RGB").save(tmp_path / "photo.jpg", exif=exif, quality=95)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "sticker.png")
    for src, out in (("photo.jpg", "p.jfif"), ("photo.jpg", "p.jpe"), ("sticker.png", "s.tga")):
        code, log = run(str(tmp_path / src), str(tmp_path / out), "--variant", "mks", "-q")
        assert code == 0, log
        im = Image.open(tmp_path / out)
        assert im.format == ("TGA" if out.endswith("tga") else "JPEG") and im.size == (28, 20), out
    assert Image.open(tmp_path / "s.tga").mode == "RGBA"
    assert Image.open(tmp_path / "p.jfif").getexif().get(0x0112) == 6  # turned as the source is shown
    one_line_error(*run(str(tmp_path / "photo.jpg"), str(tmp_path / "newdir"), "--variant", "mks"),
                   "photo.jpg is a picture", ".png", "e.g. newdir.png")  # (it said "use .mkv, .mp4...")
    if features.check("avif"):
        for src, out in (("photo.jpg", "p.avif"), ("sticker.png", "s.avif")):
            code, log = run(str(tmp_path / src), str(tmp_path / out), "--variant", "mks", "-q")
            assert code == 0, log
        p, s = Image.open(tmp_path / "p.avif"), Image.open(tmp_path / "s.avif")
        assert p.format == "AVIF" and p.size == (28, 20) and p.getexif().get(0x0112) == 6
        assert p.getexif().get(0x010F) == "Cam"
        assert s.mode == "RGBA" and np.asarray(s)[0, 0, 3] < 20 and np.asarray(s)[-1, -1, 3] == 255
        pics = tmp_path / "pics"
        pics.mkdir()
        Image.fromarray(rgba[..., :3], "RGB").save(pics / "a.avif")
        Image.fromarray(rgba, "RGBA").save(pics / "b.tga")
        code, log = run(str(pics), str(tmp_path / "pics_x2"), "--variant", "mks", "-q")
        assert code == 0 and "done: 2 pictures" in log and "not copied" not in log, log
        assert Image.open(tmp_path / "pics_x2" / "a.avif").size == (28, 20)
        assert Image.open(tmp_path / "pics_x2" / "b.tga").size == (28, 20)
    monkeypatch.setattr(features, "check", lambda name: False if name == "avif" else True)
    code, log = run(str(tmp_path / "photo.jpg"), str(tmp_path / "none.avif"), "--variant", "mks")
    one_line_error(code, log, "without AVIF", ".png", ".webp")
    assert "Upscaler(" not in log and not (tmp_path / "none.avif").exists()


def test_a_folder_into_an_out_that_cant_be_written(tmp_path: Path) -> None:
    """An OUT folder that can't be made is refused before the model loads (every picture was upscaled, then each
    failed); when every picture fails, the line says none was written (it said "the others were written")."""
    pics = tmp_path / "pics"
    pics.mkdir()
    Image.fromarray(noise(8, 8, 3), "RGB").save(pics / "one.png")
    code, log = run(str(pics), "/proc/psr2video-test-out", "--variant", "mks")
    one_line_error(code, log, "can't write into /proc/psr2video-test-out")
    assert "Upscaler(" not in log, log
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"not a png")
    (bad / "b.png").write_bytes(b"nor this")
    code, log = run(str(bad), str(tmp_path / "bad_x2"), "--variant", "mks", "-q")
    one_line_error(code, log, "2 of 2 pictures could not be upscaled", "none was written")
    # the probe leaves nothing behind: a model that then fails to load left an empty OUT tree
    (tmp_path / "bogus.onnx").write_bytes(b"not a model")
    code, log = run(str(pics), str(tmp_path / "out" / "sub"), "--model", str(tmp_path / "bogus.onnx"))
    one_line_error(code, log, "bogus.onnx")
    assert not (tmp_path / "out").exists()
    # --quality with --skip-existing over a finished folder: nothing to do (it was refused as "no picture ... so")
    done = tmp_path / "done"
    done.mkdir()
    Image.fromarray(noise(8, 8, 3), "RGB").save(pics / "two.jpg")
    code, log = run(str(pics), str(done), "--variant", "mks", "-q")
    assert code == 0, log
    code, log = run(str(pics), str(done), "--variant", "mks", "--skip-existing", "--quality", "80")
    assert code == 0 and "nothing to do" in log, log


def deep_tiff(path: Path, samples: np.ndarray, planar: bool = False, orientation: int = 1,
              make: bytes = b"") -> Path:
    """An uncompressed 16-bit RGB TIFF written by hand, interleaved or plane by plane, with an Orientation tag (and
    a Make tag): Pillow 13 turns such a file as it loads it, FFmpeg's decoder does not."""
    import struct

    h, w, c = samples.shape
    strips = ([np.ascontiguousarray(samples[..., i]).astype("<u2").tobytes() for i in range(c)] if planar
              else [samples.astype("<u2").tobytes()])
    k = len(strips)
    tags = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, c, "bits"), (259, 3, 1, 1), (262, 3, 1, 2),
            (273, 4, k, "offsets"), (274, 3, 1, orientation), (277, 3, 1, c), (278, 4, 1, h), (279, 4, k, "counts"),
            (284, 3, 1, 2 if planar else 1)]
    if make:
        tags.insert(5, (271, 2, len(make) + 1, "make"))
    first = 8 + 2 + len(tags) * 12 + 4
    at = {"bits": first, "offsets": first + 2 * c, "counts": first + 2 * c + 4 * k,
          "make": first + 2 * c + 8 * k}
    data = at["make"] + (len(make) + 1 if make else 0)
    if k == 1:  # one value: in the tag itself
        at["offsets"], at["counts"] = data, len(strips[0])
    out = b"II" + struct.pack("<HIH", 42, 8, len(tags))
    out += b"".join(struct.pack("<HHII", t, kind, n, at.get(v, v) if isinstance(v, str) else v)
                    for t, kind, n, v in tags)
    out += struct.pack("<I", 0) + struct.pack(f"<{c}H", *[16] * c)
    out += struct.pack(f"<{k}I", *[data + i * len(strips[0]) for i in range(k)])
    out += struct.pack(f"<{k}I", *[len(s) for s in strips]) + (make + b"\0" if make else b"") + b"".join(strips)
    path.write_bytes(out)
    return path


def test_tiff_exif_and_orientation(tmp_path: Path) -> None:
    """A TIFF's EXIF (its own Make, Model, DateTime tags: Pillow gives a TIFF no ``exif``) is carried; a 16-bit TIFF
    with an Orientation tag, which Pillow 13 turns as it loads it and FFmpeg doesn't, stays 16-bit (it was written
    8-bit "FFmpeg's decoder and Pillow disagree"; plane by plane it was refused), turned once; LZW stays LZW."""
    exif = Image.Exif()
    exif[271], exif[272], exif[306] = "Nikon", "D850", "2020:01:01 10:00:00"
    Image.fromarray(noise(10, 12, 3), "RGB").save(tmp_path / "cam.tif", exif=exif, compression="tiff_lzw")
    for ext in (".jpg", ".tif", ".png", ".webp"):
        code, log = run(str(tmp_path / "cam.tif"), str(tmp_path / f"x2{ext}"), "--variant", "mks", "-q")
        assert code == 0, log
        got = Image.open(tmp_path / f"x2{ext}").getexif()
        assert (got.get(271), got.get(272), got.get(306)) == ("Nikon", "D850", "2020:01:01 10:00:00"), ext
    assert Image.open(tmp_path / "x2.tif").info["compression"] == "tiff_lzw"
    yy, xx = np.mgrid[0:12, 0:16]
    samples = np.stack([xx * 4000 + 3, yy * 5000 + 1, (xx + yy) * 2000], -1).astype(np.uint16)
    shown = np.rot90(samples, -1)  # orientation 6: shown turned a quarter clockwise
    from psr2video import Upscaler

    x = torch.from_numpy(shown.astype(np.float32) / 65535).permute(2, 0, 1)[None]
    with torch.inference_mode():
        want = Upscaler("mks", 2, device="cpu")(x)[0].permute(1, 2, 0).numpy() * 65535
    for planar in (False, True):
        src = deep_tiff(tmp_path / f"o6_{planar}.tif", samples, planar=planar, orientation=6, make=b"Nikon")
        code, log = run(str(src), str(tmp_path / f"o6_{planar}.png"), "--variant", "mks", "-q")
        assert code == 0 and "8-bit" not in log, log
        fmt, got = deep_frame(tmp_path / f"o6_{planar}.png")
        assert fmt == "rgb48be" and got.shape == (32, 24, 3) and np.abs(got - want).max() <= 1.0, planar
        out = Image.open(tmp_path / f"o6_{planar}.png")
        assert out.getexif().get(0x0112) in (None, 1) and out.getexif().get(271) == "Nikon"  # turned once
    code, log = run(str(src), str(tmp_path / "o6.tif"), "--variant", "mks", "-q")
    assert code == 0 and "EXIF (camera, date) can't be held in a 16-bit TIFF" in log, log
    fmt, got = deep_frame(tmp_path / "o6.tif")
    assert fmt.startswith("rgb48") and np.abs(got - want).max() <= 1.0


def test_small_losses_found_in_review(tmp_path: Path) -> None:
    """EXIF PixelX/YDimension say the size written; DPI into .webp is named; alpha into .jpg is laid on white (not
    the hidden colour, black); a 1-bit Group 4 TIFF is written Deflate, not uncompressed; a PNG whose text chunk
    has a wrong checksum is read without it, said (it was "cannot identify image file")."""
    import zlib

    exif = Image.Exif()
    exif.get_ifd(0x8769).update({0xA002: 12, 0xA003: 10})
    Image.fromarray(noise(10, 12, 3), "RGB").save(tmp_path / "p.jpg", exif=exif, dpi=(300, 300))
    code, log = run(str(tmp_path / "p.jpg"), str(tmp_path / "p2.jpg"), "--variant", "mks", "-q")
    assert code == 0, log
    sub = Image.open(tmp_path / "p2.jpg").getexif().get_ifd(0x8769)
    assert (sub.get(0xA002), sub.get(0xA003)) == (24, 20)
    code, log = run(str(tmp_path / "p.jpg"), str(tmp_path / "p2.webp"), "--variant", "mks", "-q")
    assert code == 0 and "p.jpg's DPI can't be held in .webp; left out" in log, log
    a = np.zeros((10, 12, 4), np.uint8)
    a[:, 6:] = (200, 30, 30, 255)
    Image.fromarray(a, "RGBA").save(tmp_path / "s.png")
    code, log = run(str(tmp_path / "s.png"), str(tmp_path / "s.jpg"), "--variant", "mks", "-q")
    assert code == 0 and "laid on white" in log, log
    assert min(Image.open(tmp_path / "s.jpg").getpixel((1, 1))) >= 250
    Image.fromarray(noise(16, 16, 1)[..., 0] > 128).save(tmp_path / "scan.tif", compression="group4")
    code, log = run(str(tmp_path / "scan.tif"), str(tmp_path / "scan2.tif"), "--variant", "mks", "-q")
    assert code == 0 and Image.open(tmp_path / "scan2.tif").info["compression"] == "tiff_adobe_deflate", log
    png = tmp_path / "crc.png"
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "kept")
    info.add_text("Author", "damaged")
    Image.fromarray(noise(8, 8, 3), "RGB").save(png, pnginfo=info)
    data = bytearray(png.read_bytes())
    at = data.index(b"tEXtAuthor")
    data[at + 4] ^= 0x20  # "author": its checksum no longer matches
    assert zlib.crc32(bytes(data[at:at + 4 + len("Author\0damaged")])) != int.from_bytes(
        data[at + 4 + len("Author\0damaged"):at + 8 + len("Author\0damaged")], "big")
    png.write_bytes(bytes(data))
    code, log = run(str(png), str(tmp_path / "crc2.png"), "--variant", "mks", "-q")
    assert code == 0 and "crc.png has 1 damaged chunk (tEXt; wrong checksum)" in log, log
    assert Image.open(tmp_path / "crc2.png").text == {"Title": "kept"}


def test_quality_chooses_a_lossy_pictures_quality(tmp_path: Path) -> None:
    """JPEG, WebP and AVIF were always written at quality 95 (a q75 web photo came out 6.6x its size), with no way
    to choose: --quality sets it (a lossless WebP source too, when asked); where no OUT is lossy it is refused, not
    ignored (a .png, a folder of them, a video: --crf)."""
    from PIL import features

    src = tmp_path / "in.png"
    Image.fromarray(noise(40, 48, 3)).save(src)
    exts = (".jpg", ".webp", ".avif") if features.check("avif") else (".jpg", ".webp")
    for ext in exts:
        sizes = {}
        for q in (None, 40):
            out = tmp_path / f"o{q}{ext}"
            code, said = run(str(src), str(out), "--variant", "mks", *(("--quality", str(q)) if q else ()))
            assert code == 0, said
            sizes[q] = out.stat().st_size
        assert sizes[40] < sizes[None] * 0.8, (ext, sizes)
    lossless = tmp_path / "ll.webp"
    Image.fromarray(noise(40, 48, 3)).save(lossless, lossless=True)
    code, said = run(str(lossless), str(tmp_path / "ll_x2.webp"), "--variant", "mks", "--quality", "60")
    assert code == 0 and b"VP8 " in (tmp_path / "ll_x2.webp").read_bytes()[:64], said  # lossy, as asked
    frames = [Image.fromarray(noise(24, 32, 3, seed)) for seed in (1, 2)]
    frames[0].save(anim := tmp_path / "a.webp", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    sizes = {}
    for q in (None, 30):
        code, said = run(str(anim), str(out := tmp_path / f"a{q}.webp"), "--variant", "mks",
                         *(("--quality", str(q)) if q else ()))
        assert code == 0, said
        sizes[q] = out.stat().st_size
    assert sizes[30] < sizes[None] * 0.5, sizes  # lossless (its source's) against quality 30
    one_line_error(*run(str(src), str(tmp_path / "x.png"), "--variant", "mks", "--quality", "80"),
                   "--quality is for pictures written .jpg, .webp or .avif; x.png is written lossless")
    folder = tmp_path / "pngs"
    folder.mkdir()
    Image.fromarray(noise(8, 8, 3)).save(folder / "a.png")
    one_line_error(*run(str(folder), str(tmp_path / "pngs_x2"), "--variant", "mks", "--quality", "80"),
                   "no picture under IN is written so")
    assert not (tmp_path / "pngs_x2").exists()
    clip = make_clip(tmp_path / "clip.mkv", pts=[0, 1])
    one_line_error(*run(str(clip), str(tmp_path / "v.mkv"), "--variant", "mks", "--quality", "80"),
                   "a video's quality is --crf")
