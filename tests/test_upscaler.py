"""The shared Upscaler on the torch backend: shapes, precision, tiling, errors."""

from __future__ import annotations

import pytest
import torch

from psr2video import Upscaler
from psr2video.models import WeightsError, build_model, load_model
from psr2video.runtime.backends import Backend, parse_backend
from psr2video.runtime.tiling import tiled_apply


def test_baseline_upscaler_cpu() -> None:
    up = Upscaler(variant="mks", scale=2, device="cpu")
    y = up(torch.rand(1, 3, 9, 11))
    assert y.shape == (1, 3, 18, 22) and y.min() >= 0 and y.max() <= 1
    assert up.device.type == "cpu" and up.dtype == torch.float32 and "mks x2" in repr(up)


@pytest.mark.parametrize("variant", ["realtime", "stream"])
def test_untrained_model_through_upscaler_matches_module(variant: str) -> None:
    net = build_model(variant, 2).eval()
    up = Upscaler(model=net, device="cpu", clamp=False)
    x = torch.rand(2, 3, 12, 10)
    with torch.no_grad():
        ref = net(x)
    assert (up(x) - ref).abs().max().item() < 1e-5


def test_bf16_on_cpu_runs_close_to_fp32() -> None:
    net = build_model("realtime", 2).eval()
    x = torch.rand(1, 3, 16, 16)
    a = Upscaler(model=net, device="cpu", precision="fp32")(x)
    b = Upscaler(model=net, device="cpu", precision="bf16")(x)
    assert b.dtype == torch.float32 and (a - b).abs().max().item() < 0.05


def test_bf16_keeps_the_base_path_float32() -> None:
    """bf16 has an 8-bit mantissa: a bf16 Magic Kernel base is off by up to 0.8 8-bit codes on a smooth ramp
    (banding on 10-bit output). The base path and the output stay float32; only the detail network is bf16."""
    ramp = torch.linspace(0, 1, 96).view(1, 1, 1, 96).expand(1, 3, 32, 96).contiguous()
    mks32 = Upscaler("mks", 2, device="cpu", precision="fp32")(ramp)
    mks16 = Upscaler("mks", 2, device="cpu", precision="bf16")(ramp)
    assert mks16.dtype == torch.float32 and torch.equal(mks16, mks32)
    net = load_model("realtime", 2)
    a = Upscaler(model=net, device="cpu", precision="fp32")(ramp)
    up = Upscaler(model=net, device="cpu", precision="bf16")
    assert up.dtype == torch.float32 and up.runner.compute_dtype == torch.bfloat16
    assert up.runner.model.base.kv.dtype == torch.float32  # .to(bfloat16) left the taps exact
    with torch.no_grad():  # the base path itself is exact: float32 taps on the float32 input
        assert torch.equal(up.runner.model.base(ramp), net.base(ramp))
    b = up(ramp)
    # what is left is the bf16 detail network's own rounding, which grows with the shipped file's detail (0.61
    # codes with realtime_x2 of 2026-12-03, 0.76 with that of 2026-12-04); a bf16 base would add up to 0.8 more
    assert b.dtype == torch.float32 and (a - b).abs().max().item() * 255 < 1.0


@pytest.mark.parametrize("variant", ["realtime", "stream", "mks"])
def test_tiled_equals_untiled(variant: str) -> None:
    net = build_model(variant, 2).eval()
    x = torch.rand(1, 3, 70, 53)
    full = Upscaler(model=net, device="cpu", clamp=False)(x)
    tiled = Upscaler(model=net, device="cpu", clamp=False, tile=24)(x)
    assert (full - tiled).abs().max().item() < 1e-4


def test_tiling_covers_every_pixel_once() -> None:
    x = torch.arange(35 * 29, dtype=torch.float32).view(1, 1, 35, 29)
    y = tiled_apply(lambda t: t.repeat_interleave(3, 2).repeat_interleave(3, 3), x, 3, tile=8, overlap=2)
    assert torch.equal(y, x.repeat_interleave(3, 2).repeat_interleave(3, 3))


def test_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        Upscaler(variant="mks", scale=2, device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="unknown precision"):
        Upscaler(variant="mks", scale=2, device="cpu", precision="fp8")
    with pytest.raises(ValueError, match="unknown backend"):
        parse_backend("cudnn")
    with pytest.raises(ValueError, match="NCHW"):
        Upscaler(variant="mks", scale=2, device="cpu")(torch.rand(3, 8, 8))
    with pytest.raises(WeightsError):
        Upscaler(variant="pro", scale=3, device="cpu")  # nothing shipped for pro x3
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Upscaler(variant="mks", scale=2, device="cuda")
    for bad in ("gpu", "0", "cuda:abc", "CPU", "mps"):  # torch's own parser error was a traceback in the CLI
        with pytest.raises(ValueError, match=f"unknown device '{bad}'; use auto, cpu, cuda or cuda:N"):
            Upscaler(variant="mks", scale=2, device=bad)


def test_backend_configs_are_frozen_dataclasses() -> None:
    cfg = Backend.Torch(channels_last=False)
    with pytest.raises(AttributeError):
        cfg.compile = True  # type: ignore[misc]
    assert parse_backend("torch") == Backend.Torch()


def test_upscalers_sharing_a_model_never_change_each_other() -> None:
    """Module.to converts in place: a bf16 Upscaler built from the model an fp32 one runs must not turn the
    fp32 one (or the caller's model) into bf16."""
    net = load_model("realtime", 2)
    x = torch.rand(1, 3, 24, 24)
    a = Upscaler(model=net, backend="torch", device="cpu", precision="fp32")
    want = a(x)
    b = Upscaler(model=net, backend="torch", device="cpu", precision="bf16")
    assert b(x).dtype == torch.float32 and next(b.runner.model.parameters()).dtype == torch.bfloat16
    assert next(net.parameters()).dtype == torch.float32
    assert torch.equal(a(x), want)


def test_every_backend_name_a_user_can_type() -> None:
    """Each CLI/plugin backend name maps to one config whose label is that name again (the bench tables and
    the Upscaler's repr say which form ran); the forms that need a GPU refuse the CPU in one line."""
    from psr2video.names import BACKENDS
    from psr2video.runtime.backends import backend_label

    for name in BACKENDS[1:]:
        assert backend_label(parse_backend(name)) == name
    assert parse_backend("torch-compile-graphs") == Backend.Torch(compile=True, cuda_graphs=True)
    assert parse_backend("onnxruntime-cuda") == Backend.ORT(provider="cuda")
    with pytest.raises(ValueError, match="unknown backend 'torch-fast'"):
        parse_backend("torch-fast")
    net = build_model("realtime", 2)
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        Upscaler(model=net, backend="torch-graphs", device="cpu")
    with pytest.raises(ValueError, match="needs --device cuda"):
        Upscaler(model=net, backend="onnxruntime-cuda", device="cpu")
    up = Upscaler(model=net, backend="onnxruntime-cpu", device="cpu")
    assert "backend=onnxruntime-cpu" in repr(up) and up(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (none on this machine)")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_half_precision(precision: str) -> None:
    net = build_model("stream", 2).eval()
    x = torch.rand(1, 3, 64, 64, device="cuda")
    a = Upscaler(model=net, device="cuda", precision="fp32")(x)
    b = Upscaler(model=net, device="cuda", precision=precision)(x)
    assert (a - b.float()).abs().max().item() < 0.02
    g = Upscaler(model=net, device="cuda", precision="fp32", backend=Backend.Torch(cuda_graphs=True))
    assert (g(x) - a).abs().max().item() < 1e-5


@pytest.mark.parametrize("h,w,tile,overlap,align", [(100, 70, 32, 8, 1), (64, 64, 64, 8, 16), (90, 130, 40, 6, 16),
                                                    (17, 300, 50, 0, 1)])
def test_tile_shapes_are_the_shapes_tiled_apply_runs(h, w, tile, overlap, align):
    """Engines are built for ``tile_shapes`` before the run: they must be exactly what ``tiled_apply`` asks for."""
    from psr2video.runtime.tiling import tile_shapes

    seen: set[tuple[int, int]] = set()

    def fn(t: torch.Tensor) -> torch.Tensor:
        seen.add(tuple(t.shape[-2:]))
        return t.repeat_interleave(2, -1).repeat_interleave(2, -2)

    x = torch.rand(1, 3, h, w)
    y = tiled_apply(fn, x, 2, tile, overlap, align)
    assert sorted(seen) == tile_shapes(h, w, tile, overlap, align)
    assert torch.equal(y, x.repeat_interleave(2, -1).repeat_interleave(2, -2))  # every pixel written once, right


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_tta_is_the_mean_over_mirror_images(backend: str) -> None:
    """--tta: the mean of the unclamped outputs for the frame and its three mirror images, mirrored back, then
    clamped; the same tiled (mirrors keep every shape, so any tile layout and engine takes them)."""
    x = torch.rand(2, 3, 21, 34, generator=torch.Generator().manual_seed(0))
    up = Upscaler(variant="realtime", scale=2, device="cpu", backend=backend, tta=True)
    plain = Upscaler(variant="realtime", scale=2, device="cpu", backend=backend, clamp=False)
    with torch.inference_mode():
        want = sum(plain(x.flip(d)).flip(d) if d else plain(x) for d in ((), (-1,), (-2,), (-2, -1))) / 4
        got = up(x)
        tiled = Upscaler(variant="realtime", scale=2, device="cpu", backend=backend, tta=True, tile=16)(x)
    assert "tta=x4" in repr(up) and got.shape == (2, 3, 42, 68)
    assert torch.allclose(got, want.clamp(0, 1), atol=1e-6)
    assert torch.allclose(tiled, got, atol=1e-5)
    assert (got - plain(x).clamp(0, 1)).abs().max() > 1e-3  # it does something


def test_a_bare_module_runs_at_its_own_scale() -> None:
    """A module without a descriptor is described by its own ``.scale`` (it was taken to be x2: a x3
    MagicKernelSharp2021 reported "mks x2", and tiled it returned a 40x40 mosaic of a 60x60 picture), and a
    ``scale=`` that disagrees with a module's own scale is refused (it was ignored: x2 ran when x4 was asked)."""
    from psr2video import MagicKernelSharp2021
    from psr2video.errors import SettingError
    from psr2video.models.paragonsr2 import ParagonSR2
    from psr2video.models.registry import SPECS

    x = torch.rand(1, 3, 20, 20)
    m = MagicKernelSharp2021(3)
    with torch.no_grad():
        want = m(x).clamp(0, 1)
    for tile in (0, 8):
        up = Upscaler(model=m, variant="mks", device="cpu", tile=tile)
        assert up.scale == 3 and "mks x3" in repr(up)
        y = up(x)
        assert y.shape == (1, 3, 60, 60) and (y - want).abs().max().item() < 1e-5
    assert Upscaler(model=MagicKernelSharp2021(4), device="cpu").descriptor.variant == "mks"  # named by its class
    up = Upscaler(model=ParagonSR2(SPECS["realtime"], 4), device="cpu", tile=8)
    assert up.scale == 4 and up.descriptor.variant == "realtime" and up(x).shape == (1, 3, 80, 80)
    with pytest.raises(SettingError, match=r"x3 model \(its \.scale\), not x2"):
        Upscaler(model=MagicKernelSharp2021(3), variant="mks", scale=2, device="cpu")
    with pytest.raises(SettingError, match=r"x2 model \(realtime\), not x4"):
        Upscaler(model=load_model("realtime", 2), scale=4, device="cpu")
    assert Upscaler(model=load_model("realtime", 2), scale=2, device="cpu").scale == 2
    mine = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.PixelShuffle(2))
    with pytest.raises(SettingError, match="needs scale= .*Sequential has no .scale"):  # not guessed: x2
        Upscaler(model=mine, variant="mine", device="cpu")
    assert Upscaler(model=mine, scale=2, device="cpu").descriptor.variant == "Sequential"


def test_a_weights_file_names_its_own_variant_and_scale() -> None:
    """``Upscaler(weights=FILE)`` with no variant= takes the file's variant, as the CLI and VapourSynth do (the
    default variant, stream, was taken as a choice and a realtime file refused); a variant given is checked."""
    from psr2video.models.registry import shipped_weights_path

    path = shipped_weights_path("realtime", 2)
    up = Upscaler(weights=path, device="cpu")
    assert up.descriptor.variant == "realtime" and up.scale == 2
    with pytest.raises(WeightsError, match="holds variant 'realtime', not 'stream'"):
        Upscaler(variant="stream", weights=path, device="cpu")
    with pytest.raises(WeightsError, match="not x4"):
        Upscaler(weights=path, scale=4, device="cpu")
    assert Upscaler(device="cpu").descriptor.variant == "stream"  # nothing named: the product's default


def test_mks_int8_leaves_the_resampler_float() -> None:
    """Reduced precision never touches the base path: ``--variant mks --precision int8`` quantised the Magic
    Kernel Sharp resampler itself (5 QuantizeLinear nodes, up to 5 8-bit codes off fp32); its int8 graph is
    its fp32 graph."""
    pytest.importorskip("onnxruntime")
    import onnx

    x = torch.rand(1, 3, 24, 40)
    ref = Upscaler(variant="mks", device="cpu", backend="torch")(x)
    up = Upscaler(variant="mks", device="cpu", backend="onnxruntime", precision="int8")
    ops = [n.op_type for n in onnx.load(str(up.runner.onnx_path)).graph.node]
    assert "QuantizeLinear" not in ops and "DequantizeLinear" not in ops
    assert (up(x) - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("variant", ["realtime", "stream", "mks"])
def test_a_nonfinite_input_pixel_stays_a_local_defect(variant: str) -> None:
    """One NaN/inf input pixel (an upstream filter that divided by zero) spread through every convolution and
    blacked out a whole block of the output (114x114 for stream x2); a frame with 1% NaN came out black."""
    up = Upscaler(variant=variant, scale=2, device="cpu")
    x = torch.full((1, 3, 96, 96), 0.6)
    clean = up(x)
    x[0, :, 30, 30] = float("nan")
    x[0, 1, 70, 60] = float("inf")
    x[0, 2, 20, 80] = float("-inf")
    for tile in (0, 40):
        up.tile = tile
        y = up(x)
        changed = int(((y - clean).abs().amax(1) > 0.02).sum())
        assert bool(torch.isfinite(y).all()) and changed < 400, changed  # ~100: the bad pixels' neighbourhoods
    up.tile = 0
    x = torch.full((1, 3, 24, 24), 0.6)
    x.view(-1)[::97] = float("nan")
    y = up(x)
    assert float((y < 0.3).float().mean()) < 0.05 and abs(float(y.mean()) - 0.6) < 0.02


def test_photo_tiles_are_seamless_and_pro_tiles_are_said_to_approximate(caplog) -> None:
    """Photo's 16 shifted-window blocks see further than one window: at the old default overlap (32) tiles were
    4e-3 off the whole frame (untrained, LayerScale 1); at its default now they match. Pro pools over the whole
    input (squeeze-excitation), so no overlap makes its tiles exact: its descriptor says so and a tiled pro
    Upscaler warns."""
    torch.manual_seed(2)  # wide and low: seams between 4 columns of tiles, at a fraction of a square's time
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 24), size=(48, 192), mode="bicubic").clamp(0, 1)
    x[..., :, 96:] *= 0.3
    torch.manual_seed(1)
    net = build_model("photo", 2, ls_init=1.0, width=16)  # photo's depth and window (what its reach is), narrow
    whole = Upscaler(model=net, device="cpu", clamp=False)(x)
    up = Upscaler(model=net, device="cpu", clamp=False, tile=48)
    assert up.tile_overlap == build_model("photo", 2).descriptor.tile_overlap
    assert (up(x) - whole).abs().max().item() < 1e-4
    assert build_model("photo", 2).descriptor.tiling == "supported"
    pro = build_model("pro", 2, width=16, groups=1, blocks=1)
    assert pro.descriptor.tiling == "discouraged"
    with caplog.at_level("WARNING", logger="psr2video.runtime"):
        Upscaler(model=pro, device="cpu", tile=64)
    assert "only approximates" in caplog.text


def test_small_api_mistakes_are_one_line() -> None:
    """An empty frame raised torch's RuntimeError; ``scale="2"`` said "unsupported scale 2" of a string."""
    from psr2video.errors import SettingError

    up = Upscaler(variant="mks", device="cpu")
    for shape in ((1, 3, 0, 8), (1, 3, 8, 0)):
        with pytest.raises(SettingError, match="at least 1x1"):
            up(torch.rand(*shape))
    assert up(torch.rand(0, 3, 5, 7)).shape == (0, 3, 10, 14)
    for bad in ("2", 2.0, True, 0):
        with pytest.raises(SettingError, match=f"unsupported scale {bad!r}"):
            Upscaler(variant="mks", scale=bad, device="cpu")
    with pytest.raises(SettingError, match="unsupported scale 5; choose one of 2, 3, 4"):
        Upscaler(variant="mks", scale=5, device="cpu")


def test_a_numpy_array_is_a_setting_error_naming_what_it_takes() -> None:
    import numpy as np

    from psr2video.errors import SettingError

    up = Upscaler(variant="mks", scale=2, device="cpu")
    with pytest.raises(SettingError, match=r"torch\.Tensor.*numpy\.ndarray.*torch\.from_numpy"):
        up(np.random.rand(1, 3, 16, 16).astype(np.float32))


def _span_file(tmp_path):
    """A small SPAN checkpoint (spandrel's own class, random weights): it rebuilds its eval weights in forward."""
    pytest.importorskip("spandrel")
    from spandrel.architectures.SPAN import SPAN

    torch.manual_seed(0)
    f = tmp_path / "2x_SPAN_compile.pth"
    torch.save(SPAN(num_in_ch=3, num_out_ch=3, feature_channels=16, upscale=2).eval().state_dict(), f)
    return f


def test_a_model_that_fails_under_torch_compile_at_its_second_call_is_one_line(tmp_path, monkeypatch):
    """torch-compile with a SPAN checkpoint: the first compiled call passed the one-call check, the second (the
    first frame) was a 100-line inductor traceback (an AssertionError, which the check did not catch either)."""
    from psr2video.errors import SettingError

    calls = []

    def compile_that_breaks_at_the_second_call(model, **_):
        def run(x):
            calls.append(x.shape)
            if len(calls) >= 2:
                raise AssertionError("expected size 3==3, stride 1==9 at dim=1\nError in op: input\n...")
            return model(x)
        return run

    monkeypatch.setattr(torch, "compile", compile_that_breaks_at_the_second_call)
    f = _span_file(tmp_path)
    with pytest.raises(SettingError) as e:
        Upscaler(model_file=f, backend="torch-compile", device="cpu")
    line = str(e.value)
    assert "\n" not in line and "can't run under torch.compile (AssertionError: expected size" in line, line
    assert line.endswith("; use --backend torch") and len(calls) == 2
    calls.clear()
    assert Upscaler(model_file=f, backend="torch", device="cpu")(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)
    assert calls == []  # eager: torch.compile is never called


@pytest.mark.slow  # torch.compile of SPAN: about a minute on two cores
def test_span_under_torch_compile_is_refused_in_one_line(tmp_path, monkeypatch):
    from psr2video.errors import SettingError

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    with pytest.raises(SettingError, match=r"can't run under torch\.compile \(.*\); use --backend torch$"):
        Upscaler(model_file=_span_file(tmp_path), backend="torch-compile", device="cpu")


def test_a_bare_module_with_the_wrong_scale_is_refused() -> None:
    """Upscaler(model=<a x2 module without .scale>, scale=3) returned x2 frames (tiled: a raw shape error)."""
    from psr2video.errors import SettingError

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.PixelShuffle(2))
    for kw in ({}, {"tile": 16}):
        with pytest.raises(SettingError,
                           match=r"^the model given turns 24x16 into 48x32 \(x2\), not x3; give scale=2$"):
            Upscaler(model=torch.nn.Sequential(*net), scale=3, device="cpu", **kw)
    assert Upscaler(model=net, scale=2, device="cpu", tile=16)(torch.rand(1, 3, 40, 40)).shape == (1, 3, 80, 80)


def test_tile_and_overlap_must_be_whole_numbers() -> None:
    """tile=2.5 ran as 2 and tile="64" was taken, without a word."""
    from psr2video.errors import SettingError

    for kw in ({"tile": 2.5}, {"tile": "64"}, {"tile": True}, {"tile": 64, "tile_overlap": 4.5}):
        with pytest.raises(SettingError, match=r"is a whole number of pixels, not "):
            Upscaler(variant="mks", scale=2, device="cpu", **kw)
    import numpy as np

    assert Upscaler(variant="mks", scale=2, device="cpu", tile=np.int64(32)).tile == 32


def test_a_tile_overlap_below_the_models_reach_is_said(caplog) -> None:
    """``Upscaler("realtime", 2, tile=16, tile_overlap=0)`` differed from the untiled output by up to 90.7 codes at
    the seams without a word: one warning naming the context the model needs."""
    x = torch.rand(1, 3, 40, 40)
    with caplog.at_level("WARNING", logger="psr2video.runtime"):
        short = Upscaler("realtime", 2, device="cpu", tile=16, tile_overlap=0)
    lines = [r.getMessage() for r in caplog.records if "tile_overlap" in r.getMessage()]
    assert len(lines) == 1 and "tile_overlap 0" in lines[0] and f"{short.descriptor.tile_overlap} px" in lines[0]
    whole = Upscaler("realtime", 2, device="cpu")
    assert (short(x) - whole(x)).abs().max().item() * 255 > 2  # what the line warns of
    caplog.clear()
    with caplog.at_level("WARNING", logger="psr2video.runtime"):
        enough = Upscaler("realtime", 2, device="cpu", tile=16, tile_overlap=short.descriptor.tile_overlap)
        Upscaler("realtime", 2, device="cpu", tile=16)  # the model's own overlap
        Upscaler("realtime", 2, device="cpu", tile_overlap=0)  # no tiles: no seams
    assert "tile_overlap" not in caplog.text
    assert (enough(x) - whole(x)).abs().max().item() * 255 < 0.5
