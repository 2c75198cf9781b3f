"""Bring your own model: foreign ONNX files and spandrel checkpoints made here, run like our own models.

Every model file is made at test time: Real-ESRGAN's SRVGGNetCompact (runtime/peers.py) exported to ONNX
in fp16 with NHWC I/O, with a fixed input size, or needing a size multiple; spandrel's SPAN with random
weights saved as .pth and .safetensors. Each runs through the Upscaler on ONNX Runtime (and PyTorch where
it can) and is compared with the PyTorch module it came from.
"""

from __future__ import annotations

import copy
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import export_onnx_file
from torch import nn

from psr2video import Upscaler
from psr2video.foreign import ForeignModelError, load_model_file
from psr2video.runtime.peers import SRVGGNetCompact, ToNHWC

spandrel = pytest.importorskip("spandrel", reason="spandrel is not installed (pip install spandrel)")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PSR2VIDEO_CACHE", str(tmp_path / "cache"))


class NeedsMultiple(nn.Module):
    """x2 through PixelUnshuffle(4): runs only on sizes that are multiples of 4."""

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.PixelUnshuffle(4)
        self.conv = nn.Conv2d(48, 3 * 64, 3, padding=1)
        self.up = nn.PixelShuffle(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.conv(self.down(x))) + F.interpolate(x, scale_factor=2, mode="nearest")


@pytest.fixture(scope="module")
def compact() -> SRVGGNetCompact:
    torch.manual_seed(0)
    return SRVGGNetCompact(16, 4, 2).eval()


def frame(h: int = 45, w: int = 70) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(1))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / torch.mean((a.double() - b.double()) ** 2)))


# ------------------------------------------------------------------------------------------------ ONNX
def test_onnx_fp16_nhwc_read_from_the_graph_and_matches_torch(tmp_path, compact):
    f = export_onnx_file(ToNHWC(copy.deepcopy(compact)).half(), tmp_path / "2x_compact_fp16_nhwc.onnx",
                         torch.rand(1, 40, 40, 3).half(),
                         {"img": {0: "b", 1: "h", 2: "w"}, "out": {0: "b", 1: "H", 2: "W"}}, names=("img", "out"))
    d = load_model_file(f).descriptor
    assert (d.scale, d.layout, d.io_dtype, d.size_multiple, d.fixed_size) == (2, "NHWC", "fp16", 1, None)
    assert d.backends == ("onnxruntime", "tensorrt") and d.source_sha256
    x = frame()
    with torch.no_grad():
        ref = compact(x).clamp(0, 1)
    up = Upscaler(model_file=f, backend="onnxruntime", device="cpu")  # fp32 on the CPU: the graph is upcast
    y = up(x)
    assert y.shape == (1, 3, 90, 140) and y.dtype == torch.float32
    assert (y - ref).abs().max().item() < 2e-3  # only the weights' fp16 rounding differs
    up16 = Upscaler(model_file=f, backend="onnxruntime", device="cpu", precision="fp16")
    assert up16.dtype == torch.float16
    plain = Upscaler(model_file=f, device="cpu")  # no backend chosen: one that runs ONNX, not a torch refusal
    assert plain.runner.name.startswith("onnxruntime") and torch.equal(plain(x), y)
    assert psnr(up16(x.half()).float(), ref) > 45


def test_onnx_file_in_the_wrong_place_says_where_it_goes(tmp_path, compact):
    """An ONNX file given to --weights points to --model; a TensorRT refusal for it offers only backends an
    ONNX file has (it offered torch, which refuses ONNX files)."""
    from psr2video.models.registry import WeightsError, read_metadata

    f = export_onnx_file(copy.deepcopy(compact), tmp_path / "2x_compact.onnx", torch.rand(1, 3, 32, 32), None)
    with pytest.raises(WeightsError, match="an ONNX file runs with --model"):
        read_metadata(f)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"needs a CUDA device, not cpu; use --backend onnxruntime$"):
            Upscaler(model_file=f, backend="tensorrt", device="cpu")


def test_onnx_fixed_size_runs_frames_that_fit_and_tiles_the_rest(tmp_path, compact):
    f = export_onnx_file(compact, tmp_path / "fixed64.onnx", torch.rand(1, 3, 64, 64), None)
    d = load_model_file(f).descriptor
    assert d.fixed_size == (64, 64) and not d.dynamic_shapes and d.scale == 2
    whole = Upscaler(model_file=f, backend="onnxruntime", device="cpu")
    small = frame(64, 64)
    with torch.no_grad():  # a frame of the graph's size runs whole; a smaller one padded to it
        torch.testing.assert_close(whole(small), compact(small).clamp(0, 1), atol=1e-4, rtol=0)
        assert whole(frame(40, 50)).shape == (1, 3, 80, 100)
    with pytest.raises(ValueError, match=r"only takes inputs up to 64x64, not 130x100: run it tiled with --tile 32"):
        whole.prepare(1, 100, 130)
    with pytest.raises(ValueError, match=r"only takes inputs up to 64x64, not 130x100: run it tiled"):
        whole(frame(100, 130))
    with pytest.raises(ValueError, match="exceeds"):
        Upscaler(model_file=f, backend="onnxruntime", device="cpu", tile=48)
    x = frame(100, 130)
    y = Upscaler(model_file=f, backend="onnxruntime", device="cpu", tile=32)(x)
    with torch.no_grad():
        ref = compact(x).clamp(0, 1)
    # tiles at the right/bottom edge are padded (replicate) where the untiled net saw zeros: compare
    # everywhere but the last 6 input pixels (the net's receptive field radius)
    inner = (..., slice(0, -12), slice(0, -12))
    assert y.shape == ref.shape and (y - ref)[inner].abs().max().item() < 1e-4


def test_onnx_size_multiple_is_measured_and_padded(tmp_path):
    torch.manual_seed(0)
    net = NeedsMultiple().eval()
    f = export_onnx_file(net, tmp_path / "mult4.onnx", torch.rand(1, 3, 32, 32), {"input": {2: "h", 3: "w"}})
    d = load_model_file(f).descriptor
    assert (d.size_multiple, d.scale) == (4, 2)
    x = frame(45, 70)
    y = Upscaler(model_file=f, backend="onnxruntime", device="cpu")(x)
    with torch.no_grad():  # the same replicate padding to 48x72 in PyTorch, cropped back
        ref = net(F.pad(x, (0, 2, 0, 3), mode="replicate"))[..., :90, :140].clamp(0, 1)
    assert y.shape == (1, 3, 90, 140) and (y - ref).abs().max().item() < 1e-5


def test_onnx_refusals(tmp_path, compact):
    one_x = export_onnx_file(nn.Conv2d(3, 3, 3, padding=1), tmp_path / "1x_denoise.onnx", torch.rand(1, 3, 32, 32),
                             {"input": {2: "h", 3: "w"}})
    with pytest.raises(ForeignModelError, match="1x model"):
        load_model_file(one_x)
    gray = export_onnx_file(SRVGGNetCompact(8, 1, 2, in_ch=1, out_ch=1), tmp_path / "gray.onnx",
                            torch.rand(1, 1, 32, 32), {"input": {2: "h", 3: "w"}})
    with pytest.raises(ForeignModelError, match="1-channel"):
        load_model_file(gray)
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(ForeignModelError, match="not a readable ONNX"):
        load_model_file(bad)
    f = export_onnx_file(compact, tmp_path / "c.onnx", torch.rand(1, 3, 32, 32), {"input": {2: "h", 3: "w"}})
    with torch.no_grad():  # an fp32 file asked to run in fp16: converted (weights, compute and I/O)
        ref = compact(frame()).clamp(0, 1)
    up16 = Upscaler(model_file=f, backend="onnxruntime", device="cpu", precision="fp16")
    assert up16.dtype == torch.float16 and psnr(up16(frame().half()).float(), ref) > 45
    with pytest.raises(ValueError, match="runs on the onnxruntime or tensorrt backend, not torch"):
        Upscaler(model_file=f, backend="torch", device="cpu")
    from psr2video.models.registry import ModelDescriptor
    from psr2video.runtime.upscaler import default_precision

    no_half = ModelDescriptor(variant="x", scale=2, precisions=("fp32", "bf16"))
    cuda = torch.device("cuda")
    assert default_precision(no_half, cuda, "torch") == "bf16"
    assert default_precision(no_half, cuda, "onnxruntime") == "fp32"
    assert default_precision(no_half, torch.device("cpu")) == "fp32"
    with pytest.raises(ValueError, match="does not run in int8"):
        Upscaler(model_file=f, backend="onnxruntime", device="cpu", precision="int8")
    with pytest.raises(ValueError, match="x2 model, not x4"):
        Upscaler(model_file=f, scale=4, backend="onnxruntime", device="cpu")
    (tmp_path / "m.bin").write_bytes(b"x")
    with pytest.raises(ForeignModelError, match="unknown model file type .bin"):
        load_model_file(tmp_path / "m.bin")


def test_onnx_cache_key_follows_the_file(tmp_path, compact):
    """Two different files of the same name get different cached graphs; the same file reuses its own."""
    from psr2video.runtime.engine_cache import EngineCache
    from psr2video.runtime.export import cached_onnx

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    fa = export_onnx_file(compact, a / "m.onnx", torch.rand(1, 3, 32, 32), {"input": {2: "h", 3: "w"}})
    torch.manual_seed(5)
    fb = export_onnx_file(SRVGGNetCompact(16, 4, 2).eval(), b / "m.onnx", torch.rand(1, 3, 32, 32),
                          {"input": {2: "h", 3: "w"}})
    cache = EngineCache()
    ma, mb = load_model_file(fa), load_model_file(fb)
    pa = cached_onnx(ma, ma.descriptor, "fp32", cache)
    pb = cached_onnx(mb, mb.descriptor, "fp32", cache)
    assert pa != pb and cached_onnx(load_model_file(fa), ma.descriptor, "fp32", cache) == pa


# ------------------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def span(tmp_path_factory):
    from safetensors.torch import save_file
    from spandrel.architectures.SPAN import SPAN

    torch.manual_seed(0)
    net = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=16, upscale=2).eval()
    d = tmp_path_factory.mktemp("span")
    torch.save(net.state_dict(), d / "2x_SPAN_test.pth")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(d / "2x_SPAN_test.safetensors"))
    return net, d


@pytest.mark.parametrize("ext", [".pth", ".safetensors"])
def test_spandrel_checkpoint_on_torch_and_onnxruntime(span, ext):
    net, d = span
    f = d / f"2x_SPAN_test{ext}"
    desc = load_model_file(f).descriptor
    assert (desc.arch, desc.scale, desc.variant) == ("SPAN", 2, "2x_SPAN_test")
    assert "fp16" in desc.precisions and desc.backends == ("torch", "onnxruntime", "tensorrt")
    x = frame()
    with torch.no_grad():
        ref = net(x).clamp(0, 1)
    yt = Upscaler(model_file=f, backend="torch", device="cpu")(x)
    assert yt.shape == (1, 3, 90, 140) and (yt - ref).abs().max().item() < 1e-6
    if ext == ".pth":  # the export to ONNX (through the engine cache) does not depend on the file type
        yo = Upscaler(model_file=f, backend="onnxruntime", device="cpu")(x)
        assert yo.shape == (1, 3, 90, 140) and (yo - ref).abs().max().item() < 1e-4


def test_training_framework_checkpoint_prefixes(span, tmp_path):
    """A Lightning checkpoint (``state_dict`` of ``model.*``) or a GAN's (``generator.*`` next to
    ``discriminator.*``): the network is found under its prefix (spandrel alone strips only module./netG.)."""
    net, _ = span
    x = frame()
    with torch.no_grad():
        ref = net(x).clamp(0, 1)
    sd = net.state_dict()
    lightning = {"epoch": 3, "state_dict": {f"model.{k}": v for k, v in sd.items()}}
    gan = {**{f"generator.{k}": v for k, v in sd.items()}, "discriminator.conv.weight": torch.zeros(8, 3, 3, 3),
           "discriminator.conv.bias": torch.zeros(8)}
    for name, state in (("2x_lightning.ckpt", lightning), ("2x_gan.pth", gan)):
        torch.save(state, tmp_path / name)
        assert load_model_file(tmp_path / name).descriptor.arch == "SPAN", name
        y = Upscaler(model_file=tmp_path / name, backend="torch", device="cpu")(x)
        assert (y - ref).abs().max().item() < 1e-6, name


def test_spandrel_unknown_and_1x_refused(tmp_path):
    from spandrel.architectures.Compact import Compact as SCompact

    torch.save({"foo.weight": torch.zeros(3, 3)}, tmp_path / "unknown.pth")
    with pytest.raises(ForeignModelError, match="does not recognise this architecture"):
        load_model_file(tmp_path / "unknown.pth")
    torch.save(SCompact(num_feat=16, num_conv=2, upscale=1).state_dict(), tmp_path / "1x_compact.pth")
    with pytest.raises(ForeignModelError, match="1x"):
        load_model_file(tmp_path / "1x_compact.pth")


class _Sentinel:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mknod, (self.path,))


def test_malicious_pickle_is_refused_and_its_code_does_not_run(tmp_path, span):
    net, _ = span
    sentinel = tmp_path / "code_ran"
    evil = tmp_path / "RealESRGAN_x2.pth"
    torch.save({"params_ema": net.state_dict(), "extra": _Sentinel(str(sentinel))}, evil)
    with pytest.raises(ForeignModelError, match=r"refusing RealESRGAN_x2\.pth: its pickle calls posix\.mknod"):
        load_model_file(evil)
    with pytest.raises(ValueError, match="refusing"):
        Upscaler(model_file=evil, backend="torch", device="cpu")
    assert not sentinel.exists()
    with pytest.raises(ForeignModelError) as e:
        load_model_file(evil)
    assert "state_dict" not in str(e.value)  # os/posix calls are not mistaken for a whole pickled model
    whole = tmp_path / "whole.pth"
    torch.save(net, whole)  # torch.save(model): a class of its own, not weights
    with pytest.raises(ForeignModelError, match=r"its pickle calls .*\(a whole pickled model\? save "
                                                r"model.state_dict\(\) instead\)"):
        load_model_file(whole)
    with pytest.raises(ValueError, match="model_file= says what the model is; drop variant="):
        Upscaler(variant="realtime", model_file=evil, device="cpu")
    # the same payload really runs when unpickled without protection (the test would catch a regression)
    with open(tmp_path / "plain.pkl", "wb") as fh:
        pickle.dump(_Sentinel(str(sentinel)), fh)
    with open(tmp_path / "plain.pkl", "rb") as fh:
        pickle.load(fh)  # noqa: S301 - deliberately unsafe, on our own file
    assert sentinel.exists()


def test_a_plain_pickle_is_refused_and_garbage_is_not_called_code(tmp_path, span):
    """A protocol-4 pickle (pickle.dump, not torch.save) is still refused as code; an HTML error page or random
    bytes saved as .pth are named as not a checkpoint (they used to be called code-running pickles)."""
    sentinel = tmp_path / "code_ran"
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as fh:
        pickle.dump({"w": _Sentinel(str(sentinel))}, fh, protocol=4)
    with pytest.raises(ForeignModelError, match="refusing evil.pth: its pickle"):
        load_model_file(evil)
    assert not sentinel.exists()
    (tmp_path / "page.pth").write_text("<html><body>404 Not Found</body></html>")
    (tmp_path / "noise.pth").write_bytes(bytes(range(7, 256)) * 20)
    (tmp_path / "hi.pth").write_text("hi\n")  # torch's unpickler raised KeyError: 105 on it (a traceback)
    (tmp_path / "cut.pth").write_bytes(b"\x80\x02}q\x00(X")  # a pickle cut short
    with pytest.raises(ForeignModelError, match="cut.pth is not a readable PyTorch checkpoint"):
        load_model_file(tmp_path / "cut.pth")
    for name in ("page.pth", "noise.pth", "hi.pth"):
        with pytest.raises(ForeignModelError, match=f"{name} is not a PyTorch checkpoint"):
            load_model_file(tmp_path / name)


def test_torchscript_archive_refused(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(nn.Conv2d(3, 12, 3)).save(str(tmp_path / "model.pt"))
    with pytest.raises(ForeignModelError, match="TorchScript archive"):
        load_model_file(tmp_path / "model.pt")


def test_our_own_safetensors_through_model_file(tmp_path):
    from psr2video.models import build_model, save_weights

    torch.manual_seed(0)
    f = save_weights(build_model("realtime", 2).fuse_for_release(), tmp_path / "mine.safetensors")
    up = Upscaler(model_file=f, backend="torch", device="cpu")
    assert up.descriptor.variant == "realtime" and up.descriptor.arch == "ParagonSR2"
    ref = Upscaler(weights=f, variant="realtime", backend="torch", device="cpu")
    x = frame(24, 24)
    assert torch.equal(up(x), ref(x))


def test_upscaler_pads_to_descriptor_requirements():
    """A torch model needing a multiple of 4 and at least 32 px: the Upscaler pads, crops, and matches."""

    torch.manual_seed(0)
    net = NeedsMultiple().eval()
    from psr2video.models.registry import ModelDescriptor

    net.descriptor = ModelDescriptor(variant="m4", scale=2, size_multiple=4, min_size=32)
    assert net.descriptor.input_size(45, 70) == (48, 72)
    assert net.descriptor.input_size(10, 70) == (32, 72)
    x = frame(10, 70)
    y = Upscaler(model=net, backend="torch", device="cpu")(x)
    with torch.no_grad():
        ref = net(F.pad(x, (0, 2, 0, 22), mode="replicate"))[..., :20, :140].clamp(0, 1)
    assert torch.equal(y, ref)
    assert np.isfinite(y.numpy()).all()


def test_onnx_fixed_batch_takes_any_batch(tmp_path, compact):
    """Most community exports fix the batch to 1: a batch of 3 runs as three calls (the pipeline's --batch)."""
    f = export_onnx_file(compact, tmp_path / "b1.onnx", torch.rand(1, 3, 32, 32),
                         {"input": {2: "h", 3: "w"}, "output": {2: "H", 3: "W"}})
    up = Upscaler(model_file=f, backend="onnxruntime", device="cpu")
    assert up.descriptor.fixed_batch == 1
    x = torch.rand(3, 3, 20, 28, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(up(x), compact(x).clamp(0, 1), atol=1e-4, rtol=0)


def test_onnx_external_data_is_part_of_the_cache_key(tmp_path):
    """Replacing ``model.onnx.data`` (the weights) must not run the previous weights from the cache."""
    import onnx

    class Gain(torch.nn.Module):
        def __init__(self, g: float) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 1, bias=False)
            with torch.no_grad():
                self.conv.weight.copy_(g * torch.eye(3).view(3, 3, 1, 1))

        def forward(self, x):
            return F.interpolate(self.conv(x), scale_factor=2, mode="nearest")

    def write(g: float) -> Path:
        tmp = export_onnx_file(Gain(g), tmp_path / f"g{g}.onnx", torch.rand(1, 3, 16, 16),
                               {"input": {0: "n", 2: "h", 3: "w"}, "output": {0: "n", 2: "H", 3: "W"}})
        (tmp_path / "gain.onnx.data").unlink(missing_ok=True)  # onnx appends to an existing data file
        onnx.save_model(onnx.load(str(tmp)), str(tmp_path / "gain.onnx"), save_as_external_data=True,
                        all_tensors_to_one_file=True, location="gain.onnx.data", size_threshold=0)
        return tmp_path / "gain.onnx"

    x = torch.full((1, 3, 8, 8), 0.5)
    f = write(1.0)
    assert float(Upscaler(model_file=f, device="cpu")(x).mean()) == pytest.approx(0.5)
    first, graph = load_model_file(f).descriptor.source_sha256, f.read_bytes()
    write(0.5)
    assert f.read_bytes() == graph  # same .onnx bytes, new .onnx.data
    assert load_model_file(f).descriptor.source_sha256 != first
    assert float(Upscaler(model_file=f, device="cpu")(x).mean()) == pytest.approx(0.25)


def test_onnx_external_data_walk_reaches_constants_and_subgraphs():
    """The cache key's walk over a graph's tensors (public onnx API only) must see every place a weight can live:
    initializers, Constant attributes and the branches of an If."""
    import numpy as np
    from onnx import helper, numpy_helper

    from psr2video.foreign.onnx_file import _graph_tensors

    def t(name: str):
        return numpy_helper.from_array(np.zeros(2, np.float32), name)

    branch = helper.make_graph([helper.make_node("Identity", ["b_init"], ["y"])], "branch", [],
                               [helper.make_tensor_value_info("y", 1, [2])], initializer=[t("b_init")])
    nodes = [helper.make_node("Constant", [], ["c"], value=t("const")),
             helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("cond", 9, [])],
                              [helper.make_tensor_value_info("y", 1, [2])], initializer=[t("init")])
    assert sorted(x.name for x in _graph_tensors(graph)) == ["b_init", "b_init", "const", "init"]


def test_onnx_refusals_name_the_real_reason(tmp_path, compact):
    f = export_onnx_file(compact, tmp_path / "c.onnx", torch.rand(1, 3, 32, 32),
                         {"input": {0: "n", 2: "h", 3: "w"}, "output": {0: "n", 2: "H", 3: "W"}})
    with pytest.raises(ValueError, match=r"does not run in bf16; it runs in fp32, fp16"):
        Upscaler(model_file=f, device="cpu", precision="bf16")
    up = Upscaler(model_file=f, device="cpu")
    with pytest.raises(ValueError, match=r"expected a float tensor in \[0, 1\], got torch.uint8"):
        up((torch.rand(1, 3, 8, 8) * 255).byte())
    x = torch.rand(1, 3, 8, 8, requires_grad=True)  # an autograd tensor is read, not refused
    assert up(x).shape == (1, 3, 16, 16)


def test_stress_holds_checkpoints_and_onnx_files_to_mks2021(tmp_path, compact):
    """A model from a file has no MKS base: its stress baseline is MKS2021 (alpha 1), the .pth as the .onnx."""
    from psr2video.stress import run_suite, stress_model

    torch.save(compact.state_dict(), tmp_path / "c.pth")
    net = load_model_file(tmp_path / "c.pth")
    ours = {r.card: r.psnr_mks for r in stress_model(net, precisions=("fp32",), real=[])}
    near = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731 - only the baseline is read
    mks = {r.card: r.psnr_mks for r in run_suite(near, 2, "fp32", real=[], alpha=1.0)}
    assert ours == mks


@pytest.fixture(scope="module")
def swinir(tmp_path_factory):
    """A tiny SwinIR (window attention) with its attention weights made strong, so that mixing frames shows."""
    from safetensors.torch import save_file
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(0)
    net = SwinIR(upscale=2, in_chans=3, img_size=16, window_size=8, img_range=1.0, depths=[2], embed_dim=12,
                 num_heads=[2], mlp_ratio=2, upsampler="pixelshuffledirect").eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "attn" in name:
                p.mul_(20)
    path = tmp_path_factory.mktemp("swinir") / "2x_SwinIR_test.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def test_window_attention_frames_do_not_mix_in_a_batch(swinir):
    """SwinIR works out its batch with Python arithmetic that the ONNX trace froze at 1: on ONNX Runtime a
    frame's output changed by up to 0.28 with the frame that shared its batch. Now such a model runs one frame
    per call (fixed batch 1), and on PyTorch a batch's channels-last output is handed on contiguous (the video
    writer refused it: 'plane 1 must be contiguous')."""
    a, b = frame(32, 32), torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    ort = Upscaler(model_file=swinir, backend="onnxruntime", device="cpu")
    assert ort.descriptor.fixed_batch == 1
    assert (ort(torch.cat([a, b]))[0] - ort(a)[0]).abs().max().item() < 1e-5
    pt = Upscaler(model_file=swinir, backend="torch", device="cpu")
    y = pt(torch.cat([a, b]))
    assert y.is_contiguous() and (y[0] - ort(a)[0]).abs().max().item() < 1e-4


def test_a_checkpoint_that_cannot_run_is_one_line_before_any_frame(swinir):
    """spandrel says SwinIR runs in bf16, but it builds its attention mask in float32 at any size but its training
    one: the run failed on every frame (VapourSynth too). The model is now tried once on a small input."""
    from psr2video.errors import PsrError

    with pytest.raises(PsrError, match=r"can't run in bf16 here .*; use --precision fp32"):
        Upscaler(model_file=swinir, backend="torch", device="cpu", precision="bf16")
    with pytest.raises(PsrError):  # the library's user errors share one base (WeightsError was a bare ValueError)
        Upscaler(variant="realtime", scale=4)
    with pytest.raises(PsrError, match="CUDA"):
        Upscaler(variant="mks", device="cuda:7")


# ------------------------------------------------------------------------- quantised, fixed batch, tiling
def _qdq_file(tmp_path: Path, compact) -> Path:
    """An int8 QDQ community file (ONNX Runtime's quantize_static, its defaults: bias quantised to int32)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    src = export_onnx_file(compact, tmp_path / "f32.onnx", torch.rand(1, 3, 32, 32),
                           {"inp": {0: "n", 2: "h", 3: "w"}, "out": {0: "n", 2: "H", 3: "W"}}, names=("inp", "out"))

    class Reader:
        def __init__(self) -> None:
            self.it = iter([{"inp": np.random.default_rng(i).random((1, 3, 32, 32), np.float32)} for i in range(2)])

        def get_next(self):
            return next(self.it, None)

    out = tmp_path / "x2_qdq.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return out


def test_a_qdq_file_runs_in_fp32_and_refuses_fp16_in_one_line(tmp_path, compact):
    """A QDQ graph converted to fp16 got half Q/DQ scales (invalid before opset 19): a traceback, and the broken
    rewrite stayed in the cache marked ok. It is fp32-only now, and fp32 is its default on CUDA too."""
    from psr2video.runtime.engine_cache import EngineCache
    from psr2video.runtime.upscaler import default_precision

    f = _qdq_file(tmp_path, compact)
    d = load_model_file(f).descriptor
    assert d.precisions == ("fp32",) and "int8 QDQ" in d.arch
    assert default_precision(d, torch.device("cuda"), "onnxruntime") == "fp32"
    with pytest.raises(ValueError, match=r"^x2_qdq \(ONNX \(fp32, int8 QDQ, NCHW\)\) does not run in fp16; it runs "
                                         r"in fp32$"):
        Upscaler(model_file=f, backend="onnxruntime", device="cpu", precision="fp16")
    x = frame(20, 24)
    with torch.no_grad():
        ref = compact(x).clamp(0, 1)
    assert psnr(Upscaler(model_file=f, backend="onnxruntime", device="cpu")(x), ref) > 30
    assert all(e.problem is None for e in EngineCache().entries(full_hash=True))


def test_a_rewrite_that_does_not_load_never_enters_the_cache(tmp_path, compact, monkeypatch):
    """Whatever the rewrite gets wrong, the file is loaded back before the cache renames it into place: a broken
    graph is one line and leaves no artifact behind (it was cached and marked ok)."""
    from onnx import helper

    from psr2video.foreign import onnx_file
    from psr2video.runtime.engine_cache import EngineCache
    from psr2video.runtime.export import cached_onnx

    f = export_onnx_file(compact, tmp_path / "c.onnx", torch.rand(1, 3, 32, 32), {"input": {2: "h", 3: "w"}})
    m = load_model_file(f)
    real = onnx_file.rewrite

    def broken(*a, **k):  # what the fp16 converter did to a QDQ graph: a node input of a type its op refuses
        g = real(*a, **k)
        g.graph.node.append(helper.make_node("DequantizeLinear", ["output", "output"], ["junk"]))
        return g

    monkeypatch.setattr(onnx_file, "rewrite", broken)
    cache = EngineCache()
    with pytest.raises(ForeignModelError, match=r"^c.onnx: its fp16 rewrite is not a valid ONNX graph \(.*\); use "
                                                r"--precision fp32$"):
        cached_onnx(m, m.descriptor, "fp16", cache)
    assert cache.entries() == []


def test_a_fixed_batch_above_one_loads_and_takes_any_batch(tmp_path, compact):
    """A graph fixed to batch 2 was probed with one image and refused; the README says any --batch is split into
    calls of the graph's batch."""
    f = export_onnx_file(compact, tmp_path / "b2.onnx", torch.rand(2, 3, 32, 32), {"input": {2: "h", 3: "w"}})
    up = Upscaler(model_file=f, backend="onnxruntime", device="cpu")
    assert up.descriptor.fixed_batch == 2 and up.descriptor.scale == 2
    x = torch.rand(3, 3, 20, 28, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(up(x), compact(x).clamp(0, 1), atol=1e-4, rtol=0)


def test_tiles_of_a_size_multiple_model_start_on_its_grid(tmp_path):
    """A PixelUnshuffle(4) graph tiled off its 4-px grid differed from the whole frame by up to 1.0 whatever the
    overlap: tile_align is the size multiple, and a tiled frame equals the untiled one."""
    torch.manual_seed(0)
    net = NeedsMultiple().eval()
    f = export_onnx_file(net, tmp_path / "mult4.onnx", torch.rand(1, 3, 32, 32), {"input": {2: "h", 3: "w"}})
    assert load_model_file(f).descriptor.tile_align == 4
    x = frame(45, 70)
    whole = Upscaler(model_file=f, backend="onnxruntime", device="cpu")(x)
    for tile, overlap in ((17, 3), (30, 6)):
        y = Upscaler(model_file=f, backend="onnxruntime", device="cpu", tile=tile, tile_overlap=overlap)(x)
        assert (y - whole).abs().max().item() < 1e-5, (tile, overlap)


def test_tiles_of_a_pixel_unshuffle_checkpoint_start_on_its_grid(tmp_path):
    """A Real-ESRGAN x2plus-like checkpoint pixel-unshuffles its input (spandrel: size multiple 4): its tiles keep
    to that grid, so tiled equals whole on PyTorch (it was 0.04 off whatever the overlap)."""
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    arch = ESRGAN(in_nc=12, out_nc=3, num_filters=8, num_blocks=1, scale=4, shuffle_factor=2)
    path = tmp_path / "2x_RealESRGAN_x2plus_like.pth"
    torch.save(arch.state_dict(), path)
    d = load_model_file(path).descriptor
    assert (d.scale, d.size_multiple, d.tile_align) == (2, 4, 4)
    x = frame(30, 41)
    whole = Upscaler(model_file=path, backend="torch", device="cpu")(x)
    y = Upscaler(model_file=path, backend="torch", device="cpu", tile=13, tile_overlap=12)(x)
    assert (y - whole).abs().max().item() < 1e-5


# ------------------------------------------------------------- exports checked at other sizes and batches
REFUSED = "2x_DITN.pth's ONNX export does not run at other sizes (traced at 48x48): use --backend torch"


def _spandrel_file(path: Path, arch: str, **kw) -> Path:
    """A spandrel architecture with random weights saved as ``path`` (a .pth)."""
    import importlib

    torch.manual_seed(0)
    net = getattr(importlib.import_module(f"spandrel.architectures.{arch}"), arch)(**kw).eval()
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture
def ditn(tmp_path) -> Path:
    """DITN: its reshapes use Python ints of the input size, so its export runs at the traced size only."""
    return _spandrel_file(tmp_path / "2x_DITN.pth", "DITN", dim=12, ITL_blocks=1, SAL_blocks=1, patch_size=8,
                          upscale=2)


def test_an_export_that_runs_only_at_its_trace_size_is_refused_and_remembered(ditn):
    """The export was traced at 48x48 and never run at another size: DITN's graph failed (ORT Reshape) at every
    other size, a traceback mid-run. check_onnx runs it at another size (and batch 2) against PyTorch before the
    cache keeps it: refused in one line, nothing cached, and a later load knows without exporting again."""
    from psr2video.runtime.engine_cache import EngineCache
    from psr2video.runtime.export import ExportError, cached_onnx

    m = load_model_file(ditn)
    with pytest.raises(ExportError) as e:
        cached_onnx(m, m.descriptor, "fp32")
    assert str(e.value) == REFUSED
    assert not [p for p in EngineCache().dir.glob("*.onnx")]
    assert load_model_file(ditn).onnx_refusal == REFUSED


def test_an_export_whose_crop_branch_was_traced_away_is_refused(tmp_path):
    """RealCUGAN x2 crops its output with a branch the trace froze: through the Python API on ONNX Runtime a 53x37
    frame came back 108x76 (not 106x74), silently. Its export is refused naming the sizes."""
    from spandrel.architectures.RealCUGAN import UpCunet2x

    from psr2video.runtime.export import ExportError, cached_onnx

    torch.manual_seed(0)
    torch.save(UpCunet2x().state_dict(), tmp_path / "up2x.pth")
    m = load_model_file(tmp_path / "up2x.pth")
    with pytest.raises(ExportError) as e:
        cached_onnx(m, m.descriptor, "fp32")
    assert str(e.value) == ("up2x.pth's ONNX export does not run at other sizes (traced at 48x48: 53x37 gives "
                            "108x76, not 106x74): use --backend torch")


def test_auto_runs_a_refused_export_on_pytorch_with_one_note(ditn, caplog):
    """backend auto picks ONNX Runtime on the CPU: a foreign checkpoint whose export is refused runs on PyTorch,
    said in one note line; asked for, ONNX Runtime is refused in the same one line (no traceback at a frame)."""
    import logging

    from psr2video.errors import SettingError

    with caplog.at_level(logging.WARNING):
        up = Upscaler(model_file=ditn, backend="auto", device="cpu")
    notes = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert up.backend.name == "torch"
    assert notes == [f"note: {REFUSED.removesuffix(': use --backend torch')}; running it on PyTorch (backend auto)"]
    x = frame(37, 29)
    ref = Upscaler(model_file=ditn, backend="torch", device="cpu")(x)
    assert up(x).shape == (1, 3, 74, 58) and torch.equal(up(x), ref)
    for _ in range(2):  # exported and refused, then refused from the kept verdict: the same line
        with pytest.raises(SettingError) as e:
            Upscaler(model_file=ditn, backend="onnxruntime", device="cpu")
        assert str(e.value) == REFUSED


def test_cli_refused_export_is_one_line_and_auto_carries_on(ditn, tmp_path, caplog):
    """The CLI on a picture and a folder (an odd-sized picture among them): auto writes every picture on PyTorch
    after one note; --backend onnxruntime is one error line, exit 1, nothing written."""
    from click.testing import CliRunner
    from PIL import Image
    from test_export import _one_error_line

    from psr2video.cli import cli

    pics = tmp_path / "pics"
    pics.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in (("a.png", (31, 41)), ("b.png", (48, 48))):
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(pics / name)
    r = CliRunner().invoke(cli, [str(pics / "a.png"), str(tmp_path / "o.png"), "-y", "--model", str(ditn),
                                 "--backend", "onnxruntime"])
    assert _one_error_line(r) == f"Error: {REFUSED}" and not (tmp_path / "o.png").exists()
    r = CliRunner().invoke(cli, [str(pics), str(tmp_path / "out"), "-y", "--model", str(ditn)])
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert [m for m in caplog.messages if "running it on PyTorch" in m]  # the note (on stderr outside pytest)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    assert Image.open(tmp_path / "out" / "a.png").size == (82, 62)


def test_an_export_that_mixes_a_batch_runs_one_frame_per_call(tmp_path):
    """RGT works out its attention windows from the batch with Python ints: the export, traced at batch 1,
    mixed the frames of a --batch 2 on ONNX Runtime (0.0093 off, silently). check_onnx compares batch 2 with
    frame by frame: the model then runs one frame per call (on ONNX Runtime still), from this load on."""
    f = _spandrel_file(tmp_path / "2x_RGT.pth", "RGT", embed_dim=32, depth=[1], num_heads=[2], upscale=2,
                       img_size=32)
    assert load_model_file(f).descriptor.fixed_batch == 0
    up = Upscaler(model_file=f, backend="onnxruntime", device="cpu")
    assert up.backend.name == "onnxruntime" and up.descriptor.fixed_batch == 1
    x = torch.rand(2, 3, 40, 48, generator=torch.Generator().manual_seed(3))
    both = up(x)
    assert torch.equal(both, torch.cat([up(x[:1]), up(x[1:])]))
    ref = Upscaler(model_file=f, backend="torch", device="cpu")(x)
    assert (both - ref).abs().max().item() < 1e-4
    assert load_model_file(f).descriptor.fixed_batch == 1  # kept: later loads know before any session


def test_an_export_torch_cannot_write_is_quiet_and_auto_runs_pytorch(tmp_path, capfd):
    """SAFMN's adaptive pooling can't be exported: torch's exporter dumped its whole IR graph on stderr (270 KB
    for the released model) before the one-line error. Now: nothing from the exporter, and auto runs PyTorch."""
    f = _spandrel_file(tmp_path / "2x_SAFMN.pth", "SAFMN", dim=8, n_blocks=1, upscaling_factor=2)
    capfd.readouterr()
    up = Upscaler(model_file=f, backend="auto", device="cpu")
    said = "".join(capfd.readouterr())  # torch's C++ log goes to stdout or stderr
    assert up.backend.name == "torch" and "IR graph" not in said and len(said) < 500, said[:500]
    assert up(frame(21, 30)).shape == (1, 3, 42, 60)


def test_a_long_model_file_name_runs_on_onnxruntime(tmp_path, compact):
    """The cache's artifact names carry the variant, a foreign model's file name: a 230-character name failed on
    every non-torch backend with 'File name too long'. The readable part is cut; the key keeps it unique."""
    from psr2video.runtime.engine_cache import EngineCache

    name = "2x_" + "a" * 230 + ".onnx"
    f = export_onnx_file(compact, tmp_path / name, torch.rand(1, 3, 32, 32), {"input": {0: "n", 2: "h", 3: "w"}})
    y = Upscaler(model_file=f, backend="onnxruntime", device="cpu")(frame())
    assert y.shape == (1, 3, 90, 140)
    names = [p.name for p in EngineCache().dir.iterdir()]
    assert names and max(len(n.encode()) for n in names) < 200
    from psr2video.runtime.engine_cache import short_label
    long = "ü" * 100 + "_x2_fp32"
    assert len(short_label(long).encode()) <= 80 and short_label(long).endswith("_x2_fp32")
    assert short_label("2x_SPAN_x2_fp32") == "2x_SPAN_x2_fp32"


def test_scale_given_as_a_string_is_not_called_a_mismatch(tmp_path, compact):
    """scale="2" for a x2 file said 'is a x2 model, not x2'."""
    from psr2video.errors import SettingError

    f = export_onnx_file(compact, tmp_path / "2x_dyn.onnx", torch.rand(1, 3, 32, 32), {"input": {2: "h", 3: "w"}})
    try:  # taken as 2, or refused showing the string as given: never "not x2" for a x2 file
        assert Upscaler(model_file=f, scale="2", backend="onnxruntime", device="cpu").scale == 2
    except SettingError as e:
        assert "'2'" in str(e) and "not x2" not in str(e), str(e)
    with pytest.raises(SettingError, match=r"x2 model, not x3"):
        Upscaler(model_file=f, scale=3, backend="onnxruntime", device="cpu")


def test_a_folder_given_as_the_model_is_called_a_folder(tmp_path):
    """A folder given as the model (Python model_file=) said 'model file not found'."""
    folder = tmp_path / "models.pth"
    folder.mkdir()
    for call in (lambda: load_model_file(folder), lambda: Upscaler(model_file=folder, device="cpu")):
        with pytest.raises(ForeignModelError, match=r"models\.pth is a directory, not a model file$"):
            call()


def test_export_and_engine_build_take_a_model_file(span, tmp_path):
    """'another project's checkpoint runs with --model': export and engine build now have --model (the export
    verified against PyTorch and checked at other sizes; engine build prebuilds what upscale --model uses)."""
    from click.testing import CliRunner
    from test_export import _one_error_line

    from psr2video.cli import cli
    from psr2video.runtime.engine_cache import EngineCache

    _, d = span
    out = tmp_path / "span.onnx"
    r = CliRunner().invoke(cli, ["export", "--model", str(d / "2x_SPAN_test.pth"), "-o", str(out)])
    assert r.exit_code == 0 and out.is_file() and "fp32: PSNR vs PyTorch fp32" in r.output, r.output
    assert "(ok)" in r.output
    r = CliRunner().invoke(cli, ["engine", "build", "--model", str(out), "--device", "cpu"])
    assert r.exit_code == 0 and "ready" in r.output, r.output
    assert any(p.suffix == ".onnx" for p in EngineCache().dir.iterdir())
    r = CliRunner().invoke(cli, ["export", "--model", str(out)])
    assert "is an ONNX file already" in _one_error_line(r)
    r = CliRunner().invoke(cli, ["export", "--model", str(d / "2x_SPAN_test.pth"), "-p", "int8"])
    assert "not int8" in _one_error_line(r)


class Unshuffle3(nn.Module):
    """x2 through a pixel-unshuffle by 3: runs on multiples of 3 only."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(27, 3 * 36, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        detail = F.pixel_shuffle(self.conv(F.pixel_unshuffle(x, 3)), 6)
        return F.interpolate(x, scale_factor=2, mode="nearest") + 0.01 * detail


class Times255(nn.Module):
    """A x2 model whose output is 0..255."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest") * 255


def test_onnx_probe_finds_a_multiple_of_3(tmp_path):
    """The probe tried sizes that are powers of two only: a graph that pixel-unshuffles by 3 was 'not an
    image-to-image model'."""
    torch.manual_seed(0)
    net = Unshuffle3().eval()
    f = export_onnx_file(net, tmp_path / "2x_unshuffle3.onnx", torch.rand(1, 3, 63, 63),
                         {"input": {0: "n", 2: "h", 3: "w"}, "output": {0: "n", 2: "H", 3: "W"}})
    d = load_model_file(f).descriptor
    assert (d.scale, d.size_multiple, d.min_size) == (2, 3, 9)
    x = frame(36, 54)
    with torch.no_grad():
        ref = net(x).clamp(0, 1)
    up = Upscaler(model_file=f, backend="onnxruntime", device="cpu")
    assert (up(x) - ref).abs().max().item() < 1e-5
    assert up(frame(37, 53)).shape == (1, 3, 74, 106)


def test_onnx_whose_output_is_0_255_is_refused(tmp_path):
    """A graph whose output is 0..255 ran with no word, every frame white: refused in one line."""
    g = export_onnx_file(Times255(), tmp_path / "2x_255.onnx", torch.rand(1, 3, 32, 32),
                         {"input": {0: "n", 2: "h", 3: "w"}})
    with pytest.raises(ForeignModelError, match=r"^2x_255\.onnx seems to output 0\.\.255, not 0\.\.1"):
        load_model_file(g)


# ------------------------------------------------------------------------- export verdicts (review fixes)
from psr2video.errors import SettingError  # noqa: E402 - with the tests below


def _rgt(tmp_path: Path) -> Path:
    return _spandrel_file(tmp_path / "2x_RGT.pth", "RGT", embed_dim=32, depth=[1], num_heads=[2], upscale=2,
                          img_size=32)


def _verdicts() -> list[str]:
    from psr2video.paths import cache_root

    folder = cache_root() / "foreign"
    return sorted(p.suffix for p in folder.iterdir()) if folder.is_dir() else []


def test_a_broken_checkpoint_does_not_refuse_its_architecture(tmp_path, monkeypatch):
    """A diverged snapshot (NaN out of PyTorch) was refused as 'differs from PyTorch (PSNR inf dB)' and the verdict
    kept per architecture: every healthy checkpoint of that architecture was refused (auto: PyTorch) for good.
    Now it is said for what it is, and no difference in values (weights-dependent) is kept."""
    import psr2video.runtime.export as E
    from psr2video.runtime.export import ExportError, cached_onnx

    torch.manual_seed(0)
    state = SRVGGNetCompact(16, 2, 2).state_dict()
    torch.save(state, tmp_path / "2x_compact.pth")
    convs = [k for k, v in state.items() if k.endswith("weight") and v.dim() == 4][:2]
    torch.save({k: v * 1e25 if k in convs else v for k, v in state.items()}, tmp_path / "2x_diverged.pth")
    bad = load_model_file(tmp_path / "2x_diverged.pth")
    with pytest.raises(ExportError) as e:
        cached_onnx(bad, bad.descriptor, "fp32")
    assert str(e.value) == "2x_diverged.pth outputs NaN/inf in PyTorch too: the checkpoint looks broken"
    monkeypatch.setitem(E.PSNR_FLOOR, "fp32", 1000.0)  # a difference in values: this export only
    good = load_model_file(tmp_path / "2x_compact.pth")
    with pytest.raises(ExportError, match="differs from PyTorch"):
        cached_onnx(good, good.descriptor, "fp32")
    assert _verdicts() == [".differs"]  # kept for this export (weights, precision, floor) alone
    monkeypatch.setitem(E.PSNR_FLOOR, "fp32", 60.0)
    assert load_model_file(tmp_path / "2x_compact.pth").onnx_refusal is None
    up = Upscaler(model_file=tmp_path / "2x_compact.pth", backend="onnxruntime", device="cpu")
    assert up.backend.name == "onnxruntime"


def test_an_export_that_differs_is_not_made_again(tmp_path, monkeypatch):
    """An export refused for differing from PyTorch was exported (and refused) again on every run: each 'auto' run
    of a large model paid the export only to run PyTorch. The refusal is kept for that export alone: the next run
    says it and falls back at once; other weights of the architecture export as before."""
    import psr2video.runtime.export as E
    from psr2video.runtime.export import ExportError, cached_onnx

    torch.manual_seed(0)
    torch.save(SRVGGNetCompact(16, 2, 2).state_dict(), tmp_path / "2x_compact.pth")
    torch.save(SRVGGNetCompact(16, 2, 2).state_dict(), tmp_path / "2x_other.pth")
    monkeypatch.setitem(E.PSNR_FLOOR, "fp32", 1000.0)
    m = load_model_file(tmp_path / "2x_compact.pth")
    with pytest.raises(ExportError, match="differs from PyTorch") as first:
        cached_onnx(m, m.descriptor, "fp32")
    exports = []
    real = E.export_onnx
    monkeypatch.setattr(E, "export_onnx", lambda *a, **k: exports.append(1) or real(*a, **k))
    m = load_model_file(tmp_path / "2x_compact.pth")
    with pytest.raises(ExportError) as again:
        cached_onnx(m, m.descriptor, "fp32")
    assert str(again.value) == str(first.value) and exports == []
    up = Upscaler(model_file=tmp_path / "2x_compact.pth", backend="auto", device="cpu")
    assert up.backend.name == "torch" and "ONNX export can't be used" in up.backend_reason and exports == []
    other = load_model_file(tmp_path / "2x_other.pth")
    with pytest.raises(ExportError, match="differs from PyTorch"):
        cached_onnx(other, other.descriptor, "fp32")
    assert exports == [1]
    from click.testing import CliRunner

    from psr2video.cli import cli

    r = CliRunner().invoke(cli, ["engine", "clear"])  # starting over: the kept findings go too
    assert r.exit_code == 0 and "removed 2 export verdict(s)" in r.output and _verdicts() == [], r.output


def test_engine_clear_removes_the_export_verdicts(ditn):
    """A kept verdict outlived 'engine clear' (the only way to start over was to find cache/foreign by hand)."""
    from click.testing import CliRunner

    from psr2video.cli import cli

    assert load_model_file(ditn).onnx_refusal is None
    with pytest.raises(SettingError):
        Upscaler(model_file=ditn, backend="onnxruntime", device="cpu")
    assert _verdicts() == [".refused"]
    r = CliRunner().invoke(cli, ["engine", "clear"])
    assert r.exit_code == 0 and "removed 1 export verdict(s) of model files" in r.output, r.output
    assert _verdicts() == [] and load_model_file(ditn).onnx_refusal is None


def test_a_cached_export_keeps_its_batch_finding_without_the_verdict(tmp_path):
    """The 'mixes the frames of a batch' finding lived only in cache/foreign (keyed with the torch/spandrel
    versions), the cached ONNX's key had neither: verdict lost (an upgrade, an unwritable foreign/, a copied
    engines/ folder), the cached ONNX ran unchecked at batch 2, mixing frames. The graph now carries it."""
    import shutil

    from psr2video.paths import cache_root

    f = _rgt(tmp_path)
    assert Upscaler(model_file=f, backend="onnxruntime", device="cpu").descriptor.fixed_batch == 1
    shutil.rmtree(cache_root() / "foreign")
    assert load_model_file(f).descriptor.fixed_batch == 0  # the verdict is gone
    up = Upscaler(model_file=f, backend="onnxruntime", device="cpu")  # a cache hit: no check runs
    assert up.descriptor.fixed_batch == 1
    x = torch.rand(2, 3, 40, 48, generator=torch.Generator().manual_seed(3))
    assert torch.equal(up(x), torch.cat([up(x[:1]), up(x[1:])]))


def test_an_fp16_graph_with_fp32_io_is_judged_as_fp16(span, tmp_path, monkeypatch):
    """check_onnx read the precision from the input's dtype: an fp16 graph with fp32 I/O (export -p fp16
    --fp32-io) was held to the fp32 floor (and its refusal kept for the architecture)."""
    import psr2video.runtime.export as E

    _, d = span
    m = load_model_file(d / "2x_SPAN_test.pth")
    p = tmp_path / "span16.onnx"
    E.export_onnx(m, p, "fp16", fp16_io=False, example_hw=m.descriptor.input_size(48, 48))
    monkeypatch.setitem(E.PSNR_FLOOR, "fp32", 1000.0)  # what an fp16 graph can't meet: not its floor
    m.check_onnx(p)
    assert _verdicts() == []


def test_every_export_of_a_batch_mixing_model_says_so(tmp_path):
    """The second 'export --model' of RGT wrote the same frame-mixing file without the note (the kept verdict had
    made fixed_batch 1 at load, and the note was said only when the check found it)."""
    from click.testing import CliRunner

    from psr2video.cli import cli

    f = _rgt(tmp_path)
    for i in (1, 2):
        out = tmp_path / f"rgt_{i}.onnx"
        r = CliRunner().invoke(cli, ["export", "--model", str(f), "-o", str(out), "--no-verify"])
        assert r.exit_code == 0 and f"note: {out.name} mixes the frames of a batch" in r.output, (i, r.output)


def test_auto_fp16_on_the_cpu_is_one_line_without_the_fallback_note(tmp_path, caplog):
    """auto with --precision fp16 on the CPU, export refused: the note said 'running it on PyTorch', then the run
    failed with 'fp16 needs a CUDA device'. Now one line, no note (as --backend torch -p fp16 on the CPU)."""
    import logging

    from spandrel.architectures.RealCUGAN import UpCunet2x

    torch.manual_seed(0)
    torch.save(UpCunet2x().state_dict(), tmp_path / "up2x.pth")
    with caplog.at_level(logging.WARNING), pytest.raises(SettingError) as e:
        Upscaler(model_file=tmp_path / "up2x.pth", backend="auto", device="cpu", precision="fp16")
    assert str(e.value).startswith("up2x.pth's ONNX export does not run at other sizes")
    assert "needs a CUDA device for fp16" in str(e.value)
    assert not [m for m in caplog.messages if "running it on PyTorch" in m]


def test_export_default_name_of_a_long_model_file_is_shortened(span, tmp_path, monkeypatch):
    """'export --model' named its output after the whole stem: 'File name too long' for a 250-character one."""
    from click.testing import CliRunner

    from psr2video.cli import cli

    _, d = span
    f = tmp_path / f"2x_{'b' * 247}.pth"
    f.write_bytes((d / "2x_SPAN_test.pth").read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    r = CliRunner().invoke(cli, ["export", "--model", str(f), "--no-verify"])
    assert r.exit_code == 0, r.output
    [written] = list(out.iterdir())
    assert written.name.endswith("_x2_fp32.onnx") and len(written.name.encode()) < 255


def test_the_fallback_is_said_once(ditn, caplog):
    """A video run said the fallback twice: the note, then 'backend auto -> torch: <the same>: PyTorch instead'
    (commands/video_run.py prints the backend's reason): the reason now points at the note."""
    import logging

    with caplog.at_level(logging.WARNING):
        up = Upscaler(model_file=ditn, backend="auto", device="cpu")
    said = [m for m in caplog.messages if "does not run at other sizes" in m]
    assert up.backend.name == "torch" and len(said) == 1
    assert "does not run at other sizes" not in up.backend_reason


# ------------------------------------------------------------------------------ helper-83's review (fixer O)
def test_an_empty_onnx_file_is_not_an_onnx_model(tmp_path):
    """A 0-byte .onnx parses as an empty model: it "has 0 inputs ()"."""
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ForeignModelError, match=r"^empty\.onnx is not an ONNX model \(empty file\?\)$"):
        load_model_file(tmp_path / "empty.onnx")


def test_an_onnx_file_with_a_symbolic_channel_axis_runs_as_nchw(tmp_path, compact):
    """['n', 'c', 'h', 'w'] was refused: "can't tell NCHW from NHWC"; NCHW is the exporters' default, and the
    probe confirms 3 -> 3 channels."""
    f = export_onnx_file(compact, tmp_path / "2x_dynC.onnx", torch.rand(1, 3, 32, 32),
                         {"input": {0: "n", 1: "c", 2: "h", 3: "w"}, "output": {0: "n", 1: "c", 2: "H", 3: "W"}})
    up = Upscaler(model_file=f, backend="onnxruntime", device="cpu")
    assert up.descriptor.layout == "NCHW" and up.scale == 2
    with torch.no_grad():
        ref = compact(frame()).clamp(0, 1)
    assert psnr(up(frame()), ref) > 60


def _compact_sd(seed: int) -> dict:
    from spandrel.architectures.Compact.__arch.SRVGG import SRVGGNetCompact as Compact

    torch.manual_seed(seed)
    return Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2).state_dict()


def test_checkpoints_with_training_metadata(tmp_path):
    """A numpy iteration count or best PSNR next to the weights (BasicSR, many trainers) was refused as code
    ("a whole pickled model?"): numpy scalars load (no code runs); argparse options are named as metadata."""
    import argparse

    sd = _compact_sd(0)
    torch.save({"params_ema": sd, "iter": np.int64(5000), "best": np.float32(30.1)}, tmp_path / "2x_np.pth")
    net = load_model_file(tmp_path / "2x_np.pth")
    assert net.descriptor.scale == 2 and all(torch.equal(net.net.state_dict()[k], v) for k, v in sd.items())
    torch.save({"params_ema": sd, "args": argparse.Namespace(lr=1e-4)}, tmp_path / "2x_ns.pth")
    with pytest.raises(ForeignModelError) as e:
        load_model_file(tmp_path / "2x_ns.pth")
    assert str(e.value) == ("2x_ns.pth holds training metadata (argparse options) besides the weights, which "
                            "psr2video does not unpickle; re-save only the state dict (with a tool you trust)")
    torch.save({"params_ema": sd, "losses": np.zeros(3)}, tmp_path / "2x_arr.pth")  # arrays: still not unpickled
    with pytest.raises(ForeignModelError, match=r"holds training metadata \(numpy values\)"):
        load_model_file(tmp_path / "2x_arr.pth")


def test_a_checkpoint_of_nested_state_dicts_uses_the_ema_one(tmp_path):
    """{"net_g": sd, "net_g_ema": sd} was "an unknown architecture" (only flat prefixes were looked into)."""
    plain, ema = _compact_sd(0), _compact_sd(1)
    torch.save({"net_g": plain, "net_g_ema": {f"module.{k}": v for k, v in ema.items()}, "iter": 3},
               tmp_path / "2x_nested.pth")
    net = load_model_file(tmp_path / "2x_nested.pth")
    got = net.net.state_dict()
    assert all(torch.equal(got[k], v) for k, v in ema.items())


def test_engine_clear_removes_the_onnx_probe_results_and_list_shows_the_opset(tmp_path, compact):
    """'engine clear' left cache/foreign/*.json (the probe results of ONNX files); 'engine list' showed
    "opset ?" for the rewritten ONNX files."""
    from click.testing import CliRunner

    from psr2video.cli import cli
    from psr2video.paths import cache_root

    f = export_onnx_file(compact, tmp_path / "c.onnx", torch.rand(1, 3, 32, 32), {"input": {2: "h", 3: "w"}})
    Upscaler(model_file=f, backend="onnxruntime", device="cpu")
    assert [p.suffix for p in (cache_root() / "foreign").iterdir()] == [".json"]
    r = CliRunner().invoke(cli, ["engine", "list"])
    onnx_lines = [ln for ln in r.output.splitlines() if "_onnx-" in ln]
    assert r.exit_code == 0 and len(onnx_lines) == 1 and "opset 17" in onnx_lines[0], r.output
    r = CliRunner().invoke(cli, ["engine", "clear"])
    assert r.exit_code == 0 and "removed 1 ONNX probe result(s) of model files" in r.output, r.output
    assert list((cache_root() / "foreign").iterdir()) == []


def test_a_cached_export_keeps_its_batch_finding_in_its_sidecar(tmp_path, monkeypatch):
    """recall_onnx_findings loaded every cached ONNX of the weights (onnx.load of a possibly large file) at each
    Upscaler build to read one flag: the finding is now kept in the cache entry's sidecar; an entry written
    before that (no 'found') is still read from its file."""
    import json
    import shutil

    from psr2video.foreign import checkpoint
    from psr2video.paths import cache_root
    from psr2video.runtime.engine_cache import EngineCache

    f = _rgt(tmp_path)
    assert Upscaler(model_file=f, backend="onnxruntime", device="cpu").descriptor.fixed_batch == 1
    (entry,) = EngineCache().find("onnx", lambda _: True)
    assert entry.meta["found"] == {"fixed_batch": 1}
    shutil.rmtree(cache_root() / "foreign")  # the verdict is gone: only the cache entry knows
    opened = []
    real = checkpoint.onnx_fixed_batch
    monkeypatch.setattr(checkpoint, "onnx_fixed_batch", lambda p: opened.append(p) or real(p))
    assert Upscaler(model_file=f, backend="onnxruntime", device="cpu").descriptor.fixed_batch == 1
    assert opened == []
    meta_path = EngineCache.meta_path(entry.path)  # an entry written before: read from its file, as before
    meta = json.loads(meta_path.read_text())
    del meta["found"]
    meta_path.write_text(json.dumps(meta))
    assert Upscaler(model_file=f, backend="onnxruntime", device="cpu").descriptor.fixed_batch == 1
    assert opened == [entry.path]


def test_a_training_checkpoint_given_as_the_model_is_named(tmp_path):
    """`--model run/last.pt` said spandrel does not recognise the architecture: it is psr2video's own training
    checkpoint (read with the weights-only unpickler), and the line says which weights files to use instead."""
    from test_export import training_checkpoint

    last = training_checkpoint(tmp_path)
    with pytest.raises(ForeignModelError) as e:
        load_model_file(last)
    assert str(e.value).startswith(f"{last} is a psr2video training checkpoint (realtime x2, step 0), not a weights "
                                   f"file: use {last.parent / 'best.safetensors'} or ")


def test_an_onnx_file_that_returns_no_image_says_what_it_returns(tmp_path):
    """A classifier (output (1, 8)) was said to have 'not run on a 64x64 input'; it ran and returned no image."""

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).mean((2, 3))

    f = export_onnx_file(Classifier().eval(), tmp_path / "cls.onnx", torch.rand(1, 3, 64, 64),
                         {"input": {0: "n", 2: "h", 3: "w"}})
    with pytest.raises(ForeignModelError, match=r"^cls\.onnx returns a \(1, 8\) tensor on a \d+x\d+ input, not an "
                                                r"image \(N, 3, H, W\)"):
        load_model_file(f)
