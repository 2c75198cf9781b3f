"""The psr2 VapourSynth plugin on a real VapourSynth core: autoload, every variant, errors, vspipe."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

vs = pytest.importorskip("vapoursynth", reason="vapoursynth is not installed (pip install 'psr2video[vapoursynth]')")

from psr2video import Upscaler  # noqa: E402
from psr2video.cli import cli  # noqa: E402
from psr2video.models import BASELINES, VARIANTS, build_model, list_shipped, save_weights  # noqa: E402
from psr2video.vs import install as vs_install  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VSPIPE = Path(sys.executable).parent / "vspipe"


def _sample() -> Path:
    for p in sorted((ROOT / "samples").glob("*.mkv")) + sorted((ROOT / "samples").glob("*.mp4")):
        return p
    pytest.skip("no sample clip under samples/")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """VapourSynth brings its own frame threads; one intra-op thread each avoids oversubscribing 2 shared cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def core():
    """The in-process core, after making sure the installed shim is built from the current source."""
    try:
        vs_install.build(vs_install.installed_path(), quiet=True)
    except vs_install.InstallError as e:
        pytest.skip(f"cannot build the psr2 shim: {e}")
    c = vs.core
    c.num_threads = 2
    if not hasattr(c, "psr2"):
        pytest.fail("psr2 plugin not autoloaded (was the core created before the shim was built?)")
    return c


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, str]:
    """Untrained but real weights files for every ParagonSR2 variant at x2."""
    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    return {v: str(save_weights(build_model(v, 2).fuse_for_release(), d / f"{v}_x2.safetensors"))
            for v in VARIANTS}


@pytest.fixture(scope="module")
def real_rgb(core):
    """Two real frames (a 24x16 crop of the sample clip) as RGBS."""
    from psr2video.vs.source import open_clip

    src = open_clip(_sample(), core)[10:12]
    src = core.std.CropAbs(src, 24, 16, 200, 100)
    return core.resize.Bicubic(src, format=vs.RGBS, matrix_in_s="709")


def frame_tensor(frame) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(frame[p]) for p in range(3)]).astype(np.float32))[None]


def kwargs_for(variant: str, weights: dict[str, str]) -> dict:
    kw = {"variant": variant, "scale": 2, "device": "cpu"}
    if variant in VARIANTS:
        kw["weights"] = weights[variant]
    return kw


def test_autoload_in_clean_process(core, tmp_path):
    """A plain `from vapoursynth import core` sees psr2 without any import of psr2video or LoadPlugin."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    code = ("import sys; from vapoursynth import core; "
            "print(core.psr2.Upscale.name, 'psr2video' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["Upscale", "False"]


def test_installer_builds_once(tmp_path):
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler")
    r = CliRunner().invoke(cli, ["vs", "install", "--plugin-dir", str(tmp_path), "--quiet", "--no-check",
                                 "--no-config"])
    assert r.exit_code == 0, r.output
    lib = tmp_path / vs_install.LIB_NAME
    assert lib.is_file() and lib.stat().st_size > 0
    assert vs_install.build(lib, quiet=True) is False  # up to date: not rebuilt
    r = CliRunner().invoke(cli, ["vs", "install", "--plugin-dir", str(tmp_path), "--uninstall", "--quiet"])
    assert r.exit_code == 0, r.output
    assert not lib.exists()


@pytest.mark.parametrize("variant", [pytest.param(v, marks=[pytest.mark.slow] if v in ("photo", "pro") else [])
                                     for v in VARIANTS + BASELINES])
def test_every_variant_matches_upscaler(core, weights, real_rgb, variant):
    """Blank and real frames through the plugin equal the Upscaler called directly (attention variants are
    slow on the CPU, so they get one real frame)."""
    kw = kwargs_for(variant, weights)
    blank = core.std.BlankClip(width=24, height=16, format=vs.RGBS, length=1, color=[0.1, 0.5, 0.9])
    real = real_rgb[:1] if variant in ("photo", "pro") else real_rgb
    clip = blank + real
    out = core.psr2.Upscale(clip, **kw)
    assert (out.width, out.height, out.format.id, out.num_frames) == (48, 32, vs.RGBS, clip.num_frames)
    up = Upscaler(**kw, backend="auto")
    b = frame_tensor(out.get_frame(0))
    assert b.shape == (1, 3, 32, 48) and torch.isfinite(b).all()
    for n in range(1, out.num_frames):
        want = up(frame_tensor(clip.get_frame(n)).clamp(0, 1))  # the filter clamps its input, as the CLI does
        torch.testing.assert_close(frame_tensor(out.get_frame(n)), want, atol=1e-6, rtol=0)


def test_rgbh_and_props(core):
    clip = core.std.BlankClip(width=32, height=12, format=vs.RGBS, length=3, fpsnum=30000, fpsden=1001)
    clip = core.std.ModifyFrame(clip, clip, _fill)
    clip = core.std.SetFrameProps(clip, _SARNum=4, _SARDen=3, custom=42)
    s = core.psr2.Upscale(clip, variant="mks", scale=3)
    h = core.psr2.Upscale(core.resize.Point(clip, format=vs.RGBH), variant="mks", scale=3)
    assert (h.format.id, h.width, h.height, h.fps) == (vs.RGBH, 96, 36, clip.fps)
    p = h.get_frame(2).props
    assert (p["_SARNum"], p["_SARDen"], p["custom"]) == (4, 3, 42)  # square scaling keeps the pixel aspect
    a, b = frame_tensor(s.get_frame(2)), frame_tensor(h.get_frame(2))
    torch.testing.assert_close(b, a, atol=2e-3, rtol=0)


def test_parallel_out_of_order_requests_and_streams(core):
    clip = core.std.BlankClip(width=32, height=16, format=vs.RGBS, length=8)
    clip = core.std.ModifyFrame(clip, clip, _fill)
    ref = core.psr2.Upscale(clip, variant="bicubic", device="cpu")
    want = [frame_tensor(ref.get_frame(n)) for n in range(8)]
    for streams in (1, 2):
        two = core.psr2.Upscale(clip, variant="bicubic", device="cpu", num_streams=streams)
        futures = {n: two.get_frame_async(n) for n in (7, 0, 5, 2, 6, 1, 4, 3)}
        for n, fut in futures.items():
            torch.testing.assert_close(frame_tensor(fut.result()), want[n])


def test_tta_matches_upscaler(core, real_rgb):
    """tta=1 in a script is the Upscaler's --tta (the mean over the frame's mirror images)."""
    out = core.psr2.Upscale(real_rgb, variant="realtime", device="cpu", backend="torch", tta=1)
    up = Upscaler("realtime", 2, device="cpu", backend="torch", tta=True)
    plain = frame_tensor(core.psr2.Upscale(real_rgb, variant="realtime", device="cpu", backend="torch").get_frame(0))
    got = frame_tensor(out.get_frame(0))
    torch.testing.assert_close(got, up(frame_tensor(real_rgb.get_frame(0)).clamp(0, 1)), atol=1e-6, rtol=0)
    assert (got - plain).abs().max() > 1e-3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (no GPU on this machine)")
@pytest.mark.parametrize("fmt,precision,tol", [("RGBS", "fp32", 1e-5), ("RGBS", "fp16", 2e-2),
                                               ("RGBH", "fp16", 2e-2)])
def test_upscale_on_cuda(core, fmt, precision, tol, monkeypatch):
    """core.psr2.Upscale on the GPU (shipped realtime, two streams, frames asked out of order) equals the
    Upscaler called on the same GPU; RGBH clips go through the half path without a float round trip."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    clip = core.std.BlankClip(width=32, height=16, format=vs.RGBS, length=6)
    clip = core.std.ModifyFrame(clip, clip, _fill)
    if fmt == "RGBH":
        clip = core.resize.Point(clip, format=vs.RGBH)
    out = core.psr2.Upscale(clip, variant="realtime", device="cuda", backend="torch", precision=precision,
                            num_streams=2)
    up = Upscaler("realtime", 2, device="cuda", backend="torch", precision="fp32")
    futures = {n: out.get_frame_async(n) for n in (5, 0, 3, 1, 4, 2)}
    for n, fut in futures.items():
        want = up(frame_tensor(clip.get_frame(n)).cuda()).cpu()
        torch.testing.assert_close(frame_tensor(fut.result()), want, atol=tol, rtol=0)


def _fill(n, f):
    out = f.copy()
    for p in range(3):
        np.asarray(out[p])[:] = np.linspace(0, 1, 32, dtype=np.float32)[None] * (n + 1) / 8 * (p + 1) / 3
    return out


def test_frame_errors_become_vs_errors(core, monkeypatch):
    """An exception while upscaling a frame (e.g. out of GPU memory) fails that frame with its message."""
    import psr2video.vs.filter as psr2vs

    def boom(self, *args):
        raise RuntimeError("CUDA out of memory (simulated)\nlong details")

    monkeypatch.setattr(psr2vs.Instance, "_process", boom)
    out = core.psr2.Upscale(core.std.BlankClip(format=vs.RGBS, width=8, height=8), variant="mks")
    with pytest.raises(vs.Error, match=r"psr2.Upscale: frame 8x8: RuntimeError: CUDA out of memory \(simulated\)$"):
        out.get_frame(0)


def test_variable_size_clip(core):
    a = core.std.BlankClip(width=16, height=8, format=vs.RGBS, length=2)
    b = core.std.BlankClip(width=10, height=6, format=vs.RGBS, length=2)
    var = core.std.Splice([a, b], mismatch=True)
    out = core.psr2.Upscale(var, variant="mks")
    assert (out.width, out.height) == (0, 0)
    assert [(f.width, f.height) for f in (out.get_frame(0), out.get_frame(3))] == [(32, 16), (20, 12)]


@pytest.mark.parametrize("make, expected", [
    (lambda c: c.std.BlankClip(format=vs.YUV420P8), 'core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s="709")'),
    (lambda c: c.std.BlankClip(format=vs.RGB24), "core.resize.Point(clip, format=vs.RGBS)"),
    (lambda c: c.std.BlankClip(format=vs.GRAYS), "ShufflePlanes"),
    (lambda c: c.std.Splice([c.std.BlankClip(format=vs.RGBS), c.std.BlankClip(format=vs.RGBH)], mismatch=True),
     "variable format"),
])
def test_format_errors(core, make, expected):
    with pytest.raises(vs.Error) as e:
        core.psr2.Upscale(make(core), variant="mks")
    assert str(e.value).startswith("psr2.Upscale: ")
    assert expected in str(e.value)


@pytest.mark.parametrize("kw, expected", [
    ({"variant": "huge"}, "variant='huge' is not valid"),
    ({"variant": "mks", "scale": 5}, "scale=5 is not valid"),
    ({"variant": "mks", "tile": -1}, "tile=-1"),
    ({"variant": "mks", "backend": "cuda-magic"}, "backend='cuda-magic' is not valid"),
    ({"variant": "mks", "num_streams": 0}, "num_streams=0"),
    ({"variant": "mks", "tta": 2}, "tta=2 must be 0 or 1"),
    ({"weights": "/nonexistent/w.safetensors"}, "weights file not found"),
    ({"weights": str(ROOT / "tests")}, "tests is a directory, not a weights file"),
    ({"weights": ""}, 'weights="" is empty'),
    ({"model": ""}, 'model="" is empty'),  # (Path("") is the current folder: "  is a directory")
    ({"weights": "sharp", "variant": "realtime"}, "no weights file or shipped preset 'sharp'"),
    ({"weights": "clean", "variant": "mks"}, "takes no weights"),
    ({"variant": "mks", "device": "gpu"}, "unknown device 'gpu'; use auto, cpu, cuda or cuda:N"),
    # the shared messages name CLI flags; a script is told its own arguments
    ({"variant": "realtime", "backend": "onnxruntime-cuda", "device": "cpu"}, 'needs device="cuda"'),
    ({"variant": "realtime", "backend": "tensorrt", "device": "cpu"}, 'use backend="onnxruntime" or backend="torch"'),
])
def test_argument_errors(core, kw, expected):
    clip = core.std.BlankClip(format=vs.RGBS, width=16, height=16)
    with pytest.raises(vs.Error, match="^psr2.Upscale: ") as e:
        core.psr2.Upscale(clip, **kw)
    assert expected in str(e.value)


def test_tile_overlap_warning_names_the_script_argument(core, caplog):
    """The Upscaler's warning says tile_overlap= to Python callers; a script sets overlap=."""
    clip = core.std.BlankClip(format=vs.RGBS, width=16, height=16)
    with caplog.at_level("WARNING", logger="psr2video.runtime"):
        core.psr2.Upscale(clip, variant="realtime", device="cpu", backend="torch", tile=16, overlap=0)
    assert "use overlap=16 or more" in caplog.text and "tile_overlap" not in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="psr2video.runtime"):
        Upscaler("realtime", 2, device="cpu", backend="torch", tile=16, tile_overlap=0)
    assert "use tile_overlap=16 or more" in caplog.text


def test_input_is_clamped_like_the_command_line(core):
    """A Bicubic 4:2:0 -> RGBS conversion overshoots [0, 1]; the filter clamps its input as the CLI does."""
    clip = core.std.BlankClip(width=32, height=12, format=vs.RGBS, length=1)

    def overshoot(n, f):
        out = f.copy()
        for p in range(3):
            np.asarray(out[p])[:] = np.tile(np.float32([-0.2, 0.4, 1.2, 0.6]), 8)[None] * (1 - 0.1 * p)
        return out

    clip = core.std.ModifyFrame(clip, clip, overshoot)
    up = Upscaler("bicubic", 2, device="cpu")
    x = frame_tensor(clip.get_frame(0))
    for fmt, tol in ((vs.RGBS, 1e-6), (vs.RGBH, 2e-3)):
        got = frame_tensor(core.psr2.Upscale(core.resize.Point(clip, format=fmt), variant="bicubic",
                                             device="cpu").get_frame(0))
        torch.testing.assert_close(got, up(x.clamp(0, 1)), atol=tol, rtol=0)
    assert (up(x) - up(x.clamp(0, 1))).abs().max() > 0.01  # (the unclamped input gives another picture)


def test_cpu_frames_hand_memory_back(core, monkeypatch):
    """A Python host's get_frame() loop grew 0.1-0.3 MiB a frame (glibc kept the freed frame tensors):
    CPU slots call malloc_trim after every TRIM_EVERY bytes of output."""
    import psr2video.vs.filter as psr2vs

    calls = []
    monkeypatch.setattr(psr2vs, "_TRIM", calls.append)
    monkeypatch.setattr(psr2vs, "TRIM_EVERY", 8 * 16 * 16 * 3 * 4)  # every 8 frames of 16x16 RGBS output
    clip = core.std.BlankClip(format=vs.RGBS, width=8, height=8, length=16)
    out = core.psr2.Upscale(clip, variant="mks", device="cpu")
    for n in range(out.num_frames):
        out.get_frame(n)
    assert calls == [0, 0]


def test_weights_preset(core):
    """weights="clean" is the shipped clean-source file of the variant (stream when none is named)."""
    clip = core.std.BlankClip(format=vs.RGBS, width=16, height=16)
    assert core.psr2.Upscale(clip, weights="clean", variant="realtime").width == 32
    assert core.psr2.Upscale(clip, weights="clean").height == 32


def test_missing_shipped_weights_is_a_clean_error(core):
    assert "pro_x3" not in list_shipped()
    with pytest.raises(vs.Error, match=r"^psr2.Upscale: no shipped weights for pro x3.*weights=") as e:
        core.psr2.Upscale(core.std.BlankClip(format=vs.RGBS, width=16, height=16), variant="pro", scale=3)
    assert "Traceback" not in str(e.value)


def test_weights_file_of_another_variant(core, weights):
    clip = core.std.BlankClip(format=vs.RGBS, width=16, height=16)
    assert core.psr2.Upscale(clip, weights=weights["realtime"]).width == 32  # variant comes from the file
    with pytest.raises(vs.Error, match="holds variant 'realtime', not 'stream'"):
        core.psr2.Upscale(clip, variant="stream", weights=weights["realtime"])


@pytest.fixture(scope="module")
def vspipe_env(core, tmp_path_factory):
    """Environment for vspipe with its own `vapoursynth config` (the user's config is left alone)."""
    if not VSPIPE.is_file():
        pytest.skip(f"vspipe not found at {VSPIPE}")
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path_factory.mktemp("xdg")))
    r = subprocess.run([sys.executable, "-m", "vapoursynth", "config"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "Failed" not in r.stdout, r.stdout + r.stderr
    return env


def test_host_without_python_gets_a_clean_error(core, tmp_path):
    """A C host with no interpreter: the plugin autoloads and Upscale fails with a message, no crash."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    vsdir = Path(vs.__file__).parent
    lib = vsdir / "libvapoursynth.so.4"
    if not lib.is_file():
        pytest.skip(f"{lib} not found")
    exe = tmp_path / "host"
    subprocess.run([cc, f"-I{vsdir / 'include'}", str(ROOT / "plugins/vapoursynth/tests/nopython_host.c"), "-o",
                    str(exe), str(lib), f"-Wl,-rpath,{vsdir}"], check=True, capture_output=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "error: psr2.Upscale: no Python interpreter in this process" in r.stdout


def test_vspipe_renders_sample(vspipe_env, tmp_path):
    sample = _sample()
    out = tmp_path / "out.y4m"
    r = subprocess.run([str(VSPIPE), str(ROOT / "samples" / "upscale.vpy"), "-c", "y4m", str(out),
                        "-a", f"clip={sample}", "-a", "frames=3", "-a", "variant=mks"],
                       env=vspipe_env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    header = data.split(b"\n", 1)[0].decode()
    import av

    with av.open(str(sample)) as c:
        w, h = c.streams.video[0].width, c.streams.video[0].height
    assert f"W{w * 2} H{h * 2}" in header and header.startswith("YUV4MPEG2 C420")
    assert data.count(b"FRAME\n") == 3
    assert len(data) == len(header) + 1 + 3 * (len(b"FRAME\n") + w * 2 * h * 2 * 3 // 2)


def _ffv1(path: Path, pix_fmt: str, full: bool = False) -> Path:
    """Two 16x8 lossless frames: a 0..255 ramp (Y or every RGB plane)."""
    import av

    with av.open(str(path), "w") as o:
        s = o.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 16, 8, pix_fmt
        if full:
            s.codec_context.color_range = 2
        ramp = np.tile(np.linspace(0, 255, 16).astype(np.uint8), (8, 1))
        for i in range(2):
            f = av.VideoFrame.from_ndarray(np.stack([ramp] * 3, -1), "rgb24").reformat(format=pix_fmt)
            if full:
                f = av.VideoFrame(16, 8, pix_fmt)
                grey = np.full((4, 8), 128, np.uint8)
                for plane, a in zip(f.planes, (ramp, grey, grey), strict=True):
                    np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :a.shape[1]] = a
                f.color_range = 2
            f.pts = i
            o.mux(s.encode(f))
        o.mux(s.encode())
    return path


def test_vspipe_sample_keeps_depth_and_range(vspipe_env, tmp_path):
    """upscale.vpy writes a 10-bit RGB source as 10-bit 4:4:4 (not 8-bit) and a full-range YUV source as full
    range (not limited)."""
    def render(src: Path) -> tuple[str, bytes]:
        out = tmp_path / (src.stem + ".y4m")
        r = subprocess.run([str(VSPIPE), str(ROOT / "samples" / "upscale.vpy"), "-c", "y4m", str(out),
                            "-a", f"clip={src}", "-a", "variant=mks"],
                           env=vspipe_env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        header, data = out.read_bytes().split(b"\n", 1)
        return header.decode(), data[len(b"FRAME\n"):]

    header, _ = render(_ffv1(tmp_path / "rgb10.mkv", "gbrp10le"))
    assert header.startswith("YUV4MPEG2 C444p10 W32 H16")
    header, data = render(_ffv1(tmp_path / "full.mkv", "yuv420p", full=True))
    assert header.startswith("YUV4MPEG2 C420 W32 H16")
    y = np.frombuffer(data[:32 * 16], np.uint8)
    assert (y.min(), y.max()) == (0, 255)  # limited would be 16..235


def test_vspipe_reports_errors_cleanly(vspipe_env, tmp_path):
    script = tmp_path / "bad.vpy"
    script.write_text("from vapoursynth import core\ncore.psr2.Upscale(core.std.BlankClip()).set_output()\n")
    r = subprocess.run([str(VSPIPE), str(script), "-c", "y4m", os.devnull], env=vspipe_env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0
    assert "psr2.Upscale: input is RGB24 (integer RGB)" in r.stderr + r.stdout


@pytest.mark.slow  # CI runs it (--run-slow); the default suite stays under 90 s
def test_bench_smoke(vspipe_env, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", vspipe_env["XDG_CONFIG_HOME"])
    r = CliRunner().invoke(cli, ["vs", "bench", "--variant", "mks", "--frames", "2", "--device", "cpu",
                                 "--repeat", "1"])
    assert r.exit_code == 0, r.output
    out = r.output
    assert "machine:" in out and "Upscaler alone" in out and "vspipe (psr2)" in out and "ratio" in out


def test_pyav_source_random_access(core):
    import av

    from psr2video.vs.source import open_clip

    sample = _sample()
    clip = open_clip(sample, core)
    with av.open(str(sample)) as c:
        ref = [f.to_ndarray(format="yuv420p")[: clip.height] for f in islice(c.decode(video=0), 12)]
    assert clip.num_frames >= 12
    for n in (11, 3, 7, 0, 10):
        np.testing.assert_array_equal(np.asarray(clip.get_frame(n)[0]), ref[n])


def test_pyav_source_rate_of_an_elementary_stream(core, tmp_path):
    """A raw .h264 (no timestamps) written at 30 fps is a 30 fps clip, as the CLI reads it (its demuxer's
    default 25 fps made the clip run 20 % slow)."""
    from test_video import raw_h264

    from psr2video.vs.source import open_clip

    clip = open_clip(raw_h264(tmp_path / "raw.h264", 30, 12, 48, 32, 10), core)
    assert (clip.fps_num, clip.fps_den) == (30, 1) and clip.num_frames == 12


def test_vspipe_fps_of_a_very_fast_run(monkeypatch, tmp_path):
    """A tiny clip renders in "0.00 seconds" by vspipe's clock: the bench reports vspipe's own fps figure (from
    its unrounded time), not a ZeroDivisionError; without a usable figure, the frames over the run's wall time."""
    from psr2video.vs import bench as vs_bench

    def fake_run(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 0, "", "Output 4 frames in 0.00 seconds (5000.00 fps)\n")

    monkeypatch.setattr(vs_bench.subprocess, "run", fake_run)
    fps, cmd = vs_bench.time_vspipe(tmp_path / "clip.mkv", 4, {"variant": "mks"}, tmp_path)
    assert fps == pytest.approx(5000.0) and "bench.vpy" in cmd
    assert vs_bench.vspipe_fps("Output 4 frames in 0.00 seconds (4357.11 fps)\n", 0.5) == pytest.approx(4357.11)
    assert vs_bench.vspipe_fps("Output 4 frames in 2.00 seconds (2.00 fps)", 9.0) == pytest.approx(2.0)
    assert vs_bench.vspipe_fps("Output 4 frames in 0.00 seconds (inf fps)", 0.5) == pytest.approx(8.0)
    assert vs_bench.vspipe_fps("Output 0 frames in 0.00 seconds (nan fps)", 0.5) == 0.0
    assert vs_bench.vspipe_fps("Script evaluation failed", 0.5) is None


@pytest.mark.slow  # a real vspipe run, as test_bench_smoke
def test_bench_on_a_tiny_clip(vspipe_env, monkeypatch, tmp_path):
    """A 66x50 clip: vspipe's run takes "0.00 seconds"; the bench still prints its figures."""
    import av

    clip = tmp_path / "small.mkv"
    with av.open(str(clip), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 66, 50, "yuv420p"
        for i in range(6):
            frame = av.VideoFrame.from_ndarray(np.full((50, 66, 3), i * 30, np.uint8), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    monkeypatch.setenv("XDG_CONFIG_HOME", vspipe_env["XDG_CONFIG_HOME"])
    for _ in range(3):  # "0.00 seconds" comes most runs, not every run
        r = CliRunner().invoke(cli, ["vs", "bench", "--variant", "mks", "--frames", "1", "--clip", str(clip),
                                     "--device", "cpu", "--repeat", "1"])
        assert r.exit_code == 0 and "vspipe (psr2)" in r.output and "ratio" in r.output, r.output


def test_per_frame_errors_use_script_words() -> None:
    """A frame that fails (a fixed-size graph given a larger frame of a variable-size clip) said '--tile 32' in a
    script, where the argument is tile=32; and the library's own messages carried a Python type name."""
    from psr2video.runtime.upscaler import FitError
    from psr2video.vs.filter import Instance, PluginError

    inst = Instance.__new__(Instance)

    def fail(*a):
        raise FitError("x2_fixed64 only takes inputs up to 64x64, not 96x80: run it tiled with --tile 32")

    inst._process = fail
    with pytest.raises(PluginError) as e:
        inst.process(None, None, 96, 80, 0, 0)
    assert str(e.value) == "frame 96x80: x2_fixed64 only takes inputs up to 64x64, not 96x80: run it tiled with tile=32"


def test_the_grey_clip_hint_runs() -> None:
    """The refusal of a grey clip suggested a conversion that fails on the usual grey clip, a YUV luma plane (it
    keeps its _Matrix, which RGB can't have: 'Resize error 1026'). The suggested line now runs as written."""
    import re

    from psr2video.vs.filter import PluginError, check_format

    core = vs.core
    yuv = core.std.SetFrameProps(core.std.BlankClip(format=vs.YUV420P8, color=[128, 128, 128]), _Matrix=1)
    clip = core.std.ShufflePlanes(yuv, 0, vs.GRAY)
    with pytest.raises(PluginError) as e:
        check_format({"format": "Gray8", "color_family": clip.format.color_family, "sample_type": 0, "bits": 8})
    line = re.search(r"add (clip = .*?\)) before it", str(e.value)).group(1)
    scope = {"core": core, "vs": vs, "clip": clip}
    exec(line, scope)
    assert scope["clip"].format.id == vs.RGBS and np.asarray(scope["clip"].get_frame(0)[0])[0, 0] > 0.5


def test_script_words_do_not_repeat_the_script_form() -> None:
    """'runs with --model (model= in Python/VapourSynth)' became 'runs with model= (model= in ...)' in a script."""
    from psr2video.vs.filter import script_words

    msg = "x.pth is not readable; another project's checkpoint runs with --model (model= in Python/VapourSynth)"
    assert script_words(msg) == "x.pth is not readable; another project's checkpoint runs with model=..."


@pytest.mark.parametrize("args, said", [(["--device", "gpu"], "unknown device 'gpu'"),
                                        (["--variant", "stream", "--weights", "nope.safetensors"],
                                         "weights file not found: nope.safetensors"),
                                        (["--frames", "-1"], "'--frames': -1 is not in the range")])
def test_vs_bench_mistakes_are_one_line(args: list[str], said: str) -> None:
    """vs bench printed tracebacks for a wrong device, missing weights or a damaged clip, and timed the whole clip
    for --frames -1."""
    r = CliRunner().invoke(cli, ["vs", "bench", *args])
    assert r.exit_code in (1, 2) and said in r.output and "Traceback" not in r.output, r.output
