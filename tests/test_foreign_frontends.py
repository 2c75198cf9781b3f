"""Foreign model files through every front end: the CLI on the sample clip, VapourSynth, bench and eval.

The models are made here: Real-ESRGAN Compact (spandrel's architecture) with random weights and a
damped last layer, so the output is a picture (nearest upscale plus small detail) that survives x264
and can be compared with PyTorch; saved as .pth and exported to ONNX (fp16 NHWC and fixed 64x64).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import export_onnx_file
from test_export import _one_error_line

from psr2video import Upscaler
from psr2video.cli import cli
from psr2video.paths import SAMPLE_CLIP
from psr2video.runtime.peers import ToNHWC

spandrel = pytest.importorskip("spandrel", reason="spandrel is not installed (pip install spandrel)")



def _sample() -> Path:
    if not SAMPLE_CLIP.is_file():
        pytest.skip("samples/bbb_480x270.mkv is not in this checkout")
    return SAMPLE_CLIP


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{'net': the torch module, 'pth': spandrel Compact .pth, 'onnx': fp32 NCHW, 'onnx16': fp16 NHWC, 'fixed'}."""
    from spandrel.architectures.Compact import Compact

    d = tmp_path_factory.mktemp("foreign")
    old = os.environ.get("PSR2VIDEO_CACHE")
    os.environ["PSR2VIDEO_CACHE"] = str(d / "cache")
    torch.manual_seed(0)
    net = Compact(num_feat=16, num_conv=4, upscale=2).eval()
    with torch.no_grad():
        net.body[-1].weight.mul_(0.05)  # small detail on top of the nearest upscale: a picture
        net.body[-1].bias.zero_()
    torch.save(net.state_dict(), d / "RealESRGAN_Compact_x2.pth")
    out = {"net": net, "pth": d / "RealESRGAN_Compact_x2.pth"}
    dyn = {"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n", 2: "H", 3: "W"}}
    xy = ("x", "y")  # a community file's own I/O names
    out["onnx"] = export_onnx_file(net, d / "2x_compact.onnx", torch.rand(1, 3, 32, 32), dyn, xy)
    nhwc = {"x": {0: "n", 1: "h", 2: "w"}, "y": {0: "n", 1: "H", 2: "W"}}
    out["onnx16"] = export_onnx_file(ToNHWC(copy.deepcopy(net)).half(), d / "2x_compact_fp16_nhwc.onnx",
                                     torch.rand(1, 32, 32, 3).half(), nhwc, xy)
    out["fixed"] = export_onnx_file(net, d / "2x_compact_64.onnx", torch.rand(1, 3, 64, 64), None, xy)
    yield out
    if old is None:
        os.environ.pop("PSR2VIDEO_CACHE", None)
    else:
        os.environ["PSR2VIDEO_CACHE"] = old


def _rgb_frames(path: Path, n: int) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        out = []
        for f in c.decode(video=0):
            out.append(f.to_ndarray(format="rgb24"))
            if len(out) == n:
                break
    return out


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse))


@pytest.mark.parametrize("kind", ["onnx16", "pth"])
def test_cli_upscales_the_sample_clip_with_a_model_file(models, tmp_path, kind):
    src, out = _sample(), tmp_path / "out.mkv"
    r = CliRunner().invoke(cli, [str(src), str(out), "--model", str(models[kind]), "--max-frames", "3", "-q"])
    assert r.exit_code == 0, r.output
    assert models[kind].name.split(".")[0] in r.output  # the summary names the model
    got, inp = _rgb_frames(out, 3), _rgb_frames(src, 1)[0]
    assert len(got) == 3 and got[0].shape == (inp.shape[0] * 2, inp.shape[1] * 2, 3)
    x = torch.from_numpy(inp).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        ref = (models["net"](x).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).round()
    # YUV 4:2:0 round trip and x264 on both sides of the comparison: picture-level agreement
    assert _psnr(got[0], ref) > 30


def test_cli_refusals_are_one_line(models, tmp_path):
    src = str(_sample())
    cases = [
        (["--model", str(models["fixed"])], "only takes inputs up to 64x64, not 480x270: run it tiled with --tile 32"),
        (["--model", str(models["onnx"]), "--variant", "realtime"], "drop --variant"),
        (["--model", str(models["onnx"]), "--backend", "torch"], "runs on the onnxruntime or tensorrt backend"),
        (["--model", str(models["onnx"]), "--scale", "4"], "is a x2 model, not x4"),
        (["--model", str(tmp_path / "nope.onnx")], "model file not found"),
    ]
    for args, words in cases:
        r = CliRunner().invoke(cli, [src, str(tmp_path / "o.mkv"), *args])
        assert r.exit_code == 1 and "Traceback" not in r.output, r.output
        assert words in r.output, r.output
        assert not (tmp_path / "o.mkv").exists()


def test_cli_fixed_size_model_runs_tiled(models, tmp_path):
    out = tmp_path / "tiled.mkv"
    r = CliRunner().invoke(cli, [str(_sample()), str(out), "--model", str(models["fixed"]), "--tile", "32",
                                 "--max-frames", "1", "-q"])
    assert r.exit_code == 0, r.output
    assert len(_rgb_frames(out, 2)) == 1


def test_bench_model_puts_files_in_the_same_table(models, tmp_path):
    js = tmp_path / "b.json"
    r = CliRunner().invoke(cli, ["bench", "model", "-v", "realtime", "--model", str(models["onnx16"]), "--model",
                                 str(models["pth"]), "--no-peers", "--no-baselines", "--size", "48x32", "--warmup",
                                 "1", "--iters", "1", "--backend", "onnxruntime", "--json", str(js)])
    assert r.exit_code == 0, r.output
    assert "2x_compact_fp16_nhwc.onnx (ONNX x2)" in r.output and "RealESRGAN_Compact_x2.pth (RealESRGAN Compact x2)" \
        in r.output and "realtime" in r.output
    import json

    rows = {row["name"]: row for row in json.loads(js.read_text())["results"]}
    assert rows[str(models["pth"])]["params"] == sum(p.numel() for p in models["net"].parameters())
    assert rows[str(models["onnx16"])]["output"] == "96x64" and rows[str(models["onnx16"])]["fps"] > 0



def test_bench_model_times_a_fixed_size_graph_tiled(models, tmp_path):
    """A fixed 64x64 graph (batch fixed to 1 as well) at 100x70, batch 2: refused in one line without --tile,
    timed with it."""
    base = ["bench", "model", "-v", "realtime", "--model", str(models["fixed"]), "--no-peers", "--no-baselines",
            "--size", "100x70", "--batch", "2", "--warmup", "0", "--iters", "1", "--backend", "onnxruntime",
            "--json", str(tmp_path / "b.json")]
    r = CliRunner().invoke(cli, base)
    assert r.exit_code == 1 and "only takes inputs up to 64x64, not 100x70: run it tiled" in r.output, r.output
    r = CliRunner().invoke(cli, [*base, "--tile", "32"])
    assert r.exit_code == 0 and "2x_compact_64.onnx" in r.output, r.output


def test_eval_takes_the_scale_from_the_model_file(val_root, tmp_path):
    """A x4 file needs no --scale 4 (the file says what it is); a --scale that contradicts it is refused."""

    class Near4(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest")

    f = export_onnx_file(Near4(), tmp_path / "near4.onnx", torch.rand(1, 3, 16, 16),
                         {"input": {0: "n", 2: "h", 3: "w"}, "output": {0: "n", 2: "H", 3: "W"}})
    args = ["eval", "--model", str(f), "--dataset", "Set5", "--no-ssim", "--data-root", str(val_root)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0 and "x4 PSNR-Y" in r.output and "near4.onnx" in r.output, r.output
    r = CliRunner().invoke(cli, [*args, "--scale", "2"])
    assert r.exit_code == 1 and "is a x4 model; run eval with --scale 4" in r.output, r.output


def test_eval_model_files_agree_across_backends(models, val_root, tmp_path):
    """The .pth (PyTorch) and its ONNX export (ONNX Runtime) score the same on Set5."""
    import json

    js = tmp_path / "e.json"
    r = CliRunner().invoke(cli, ["eval", "--model", str(models["pth"]), "--model", str(models["onnx"]), "--dataset",
                                 "Set5", "--no-ssim", "--data-root", str(val_root), "--json", str(js), "--stress"])
    # random weights may well fail the stress bar (exit 1); the tables must be there for foreign models too
    assert r.exit_code in (0, 1) and "Traceback" not in r.output, r.output
    for name in ("RealESRGAN_Compact_x2.pth", "2x_compact.onnx"):
        assert f"stress: {name} (bar:" in r.output
    report = json.loads(js.read_text())
    res = {row["method"]: row["psnr"] for row in report["clean"]}
    assert {row["model"] for row in report["stress"]} == {"RealESRGAN_Compact_x2.pth", "2x_compact.onnx"}
    a, b = res["RealESRGAN_Compact_x2.pth"], res["2x_compact.onnx"]
    assert 20 < a < 40 and abs(a - b) < 0.01


# ------------------------------------------------------------------------------------------ VapourSynth
@pytest.fixture(scope="module")
def core():
    vs = pytest.importorskip("vapoursynth", reason="vapoursynth is not installed")
    from psr2video.vs import install as vs_install

    try:
        vs_install.build(vs_install.installed_path(), quiet=True)
    except vs_install.InstallError as e:
        pytest.skip(f"cannot build the psr2 shim: {e}")
    c = vs.core
    if not hasattr(c, "psr2"):
        pytest.fail("psr2 plugin not autoloaded")
    return c


def _frame_tensor(frame) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(frame[p]) for p in range(3)]).astype(np.float32))[None]


def test_vapoursynth_model_file(core, models):
    import vapoursynth as vs

    from psr2video.vs.source import open_clip

    src = open_clip(_sample(), core)[10:12]
    clip = core.resize.Bicubic(core.std.CropAbs(src, 40, 24, 200, 100), format=vs.RGBS, matrix_in_s="709")

    def inp(n: int) -> torch.Tensor:  # the filter clamps its input to [0, 1], as the command line does
        return _frame_tensor(clip.get_frame(n)).clamp(0, 1)

    for kind in ("onnx", "pth"):
        out = core.psr2.Upscale(clip, model=str(models[kind]), device="cpu")
        assert (out.width, out.height, out.num_frames) == (80, 48, 2)
        for n in range(2):
            x = inp(n)
            with torch.no_grad():
                ref = models["net"](x).clamp(0, 1)
            torch.testing.assert_close(_frame_tensor(out.get_frame(n)), ref, atol=1e-4, rtol=0)
    want = Upscaler(model_file=models["onnx16"], backend="onnxruntime", device="cpu")(inp(0))
    got = core.psr2.Upscale(clip, model=str(models["onnx16"]), device="cpu").get_frame(0)
    torch.testing.assert_close(_frame_tensor(got), want, atol=1e-6, rtol=0)
    whole = core.psr2.Upscale(clip, model=str(models["fixed"]), device="cpu")  # 40x24 fits the 64x64 graph
    with torch.no_grad():
        ref = models["net"](inp(0)).clamp(0, 1)
    inner = (..., slice(0, -12), slice(0, -12))  # padded (replicate) to 64x64 where the bare net saw zeros
    torch.testing.assert_close(_frame_tensor(whole.get_frame(0))[inner], ref[inner], atol=1e-4, rtol=0)
    big = core.resize.Bicubic(core.std.CropAbs(src, 80, 70, 200, 100), format=vs.RGBS, matrix_in_s="709")
    with pytest.raises(vs.Error, match=r"psr2.Upscale: .*only takes inputs up to 64x64, not 80x70: run it tiled"):
        core.psr2.Upscale(big, model=str(models["fixed"]))  # said when the filter is made, not at a frame
    with pytest.raises(vs.Error, match="drop variant= and weights="):
        core.psr2.Upscale(clip, model=str(models["onnx"]), variant="stream")
    tiled = core.psr2.Upscale(clip, model=str(models["fixed"]), tile=32, device="cpu")
    assert (tiled.width, tiled.height) == (80, 48) and torch.isfinite(_frame_tensor(tiled.get_frame(0))).all()


def _dataset(folder: Path, size: tuple[int, int] = (180, 200), n: int = 2) -> Path:
    """A small image folder (``n`` random HxW PNGs) standing in for Set5."""
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_eval_refuses_a_fixed_size_graph_in_one_line(tmp_path):
    """A foreign ONNX file with a static 64x64 input: eval gives the picture CLI's and bench model's line (it
    was a FitError traceback) before measuring anything, and runs it with --tile."""

    class X2(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 12, 3, padding=1)
            self.shuffle = torch.nn.PixelShuffle(2)

        def forward(self, x):
            return self.shuffle(self.conv(x))

    torch.manual_seed(0)
    f = export_onnx_file(X2().eval(), tmp_path / "x2_fixed64.onnx", torch.rand(1, 3, 64, 64), None)
    ds = _dataset(tmp_path / "ds")  # 200x180 HR: 100x90 LR
    args = ["eval", "--model", str(f), "--dataset", str(ds), "--no-ssim"]
    line = _one_error_line(CliRunner().invoke(cli, args))
    assert "x2_fixed64 only takes inputs up to 64x64, not 100x90: run it tiled with --tile 32" in line, line
    r = CliRunner().invoke(cli, [*args, "--tile", "32"])
    assert r.exit_code == 0 and "x2_fixed64.onnx" in r.output, r.output


def test_eval_refuses_empty_datasets_and_damaged_pictures_in_one_line(tmp_path):
    """A dataset folder without pictures (it was a FileNotFoundError traceback) and one with a damaged picture
    (a PIL traceback): one line each, naming the folder or the file."""
    empty = tmp_path / "emptyds"
    empty.mkdir()
    line = _one_error_line(CliRunner().invoke(cli, ["eval", "--variant", "realtime", "--dataset", str(empty)]))
    assert f"dataset '{empty}' has no images" in line, line
    ds = _dataset(tmp_path / "ds", size=(40, 48))
    (ds / "z.png").write_bytes(b"garbage bytes, not a png")
    line = _one_error_line(CliRunner().invoke(cli, ["eval", "--variant", "bicubic", "--dataset", str(ds), "--no-ssim"]))
    assert f"can't read picture {ds / 'z.png'}" in line, line


def test_bench_model_refuses_a_fixed_size_graph_before_loading_anything(models, tmp_path):
    """The fixed 64x64 graph listed after a variant was refused only once the variant had loaded and warmed up."""
    r = CliRunner().invoke(cli, ["bench", "model", "-v", "realtime", "--model", str(models["fixed"]), "--no-peers",
                                 "--no-baselines", "--size", "96x64", "--warmup", "1", "--iters", "1", "--backend",
                                 "onnxruntime", "--json", str(tmp_path / "b.json")])
    assert r.exit_code == 1 and "only takes inputs up to 64x64, not 96x64: run it tiled" in r.output, r.output
    assert "loaded" not in r.output and "Traceback" not in r.output, r.output


@pytest.mark.parametrize("suite, words", [("--stress", "--stress (its test cards)"), ("--video", "--video (its pans)")])
def test_eval_refuses_a_fixed_size_graph_for_the_suites_before_the_clean_table(models, tmp_path, pan_folder, suite,
                                                                                 words):
    """A fixed 64x64 graph that takes the dataset's pictures whole but not the --stress suite's frames or the --video
    pans: it printed the whole clean table, then failed on the suite; now one line before any measuring."""
    ds = _dataset(tmp_path / "ds", size=(100, 120))  # 60x50 LR: fits the 64x64 graph
    r = CliRunner().invoke(cli, ["eval", "--model", str(models["fixed"]), "--dataset", str(ds), "--no-ssim", suite,
                                 *(["--video-dataset", str(pan_folder)] if suite == "--video" else [])])
    assert "PSNR-Y" not in r.output, r.output  # nothing measured
    line = _one_error_line(r)
    assert words in line and "only takes inputs up to 64x64" in line and "--tile" in line, line
