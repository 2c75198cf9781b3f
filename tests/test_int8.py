"""int8 (ONNX Runtime CPU: the QDQ file TensorRT int8 builds from too) on flat, dark and near-black pictures.

The symmetric MinMax recipe turned flat grey into a +-3-code grid (127-131 inside the frame, 90 % of the pixels
changed), a dark frame fell from 54.3 dB (fp32) to 46.4 dB, and the base path must never be quantised. The bars
below are what the shipped recipe (export.INT8_RECIPE) passes and that recipe failed; README, "Precisions and
ONNX export", has the numbers.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from psr2video import Upscaler
from psr2video.metrics import psnr_y
from psr2video.runtime import export as E
from psr2video.runtime import upscaler as U

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def pair(val_root, tmp_path_factory):
    """realtime x2: PyTorch fp32 and ONNX Runtime int8 calibrated on the default pictures (val/Set5), built in
    a cache of its own (no int8 file of another recipe or calibration is picked up)."""
    cache = tmp_path_factory.mktemp("int8cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PSR2VIDEO_CACHE", str(cache))
        mp.setenv("PSR2VIDEO_DATA", str(val_root.parent))
        q = Upscaler("realtime", 2, backend="onnxruntime", device="cpu", precision="int8")
    return Upscaler("realtime", 2, backend="torch", device="cpu"), q, cache


def _codes(up, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return (up(x).clamp(0, 1) * 255).round()


@pytest.mark.parametrize("level", [128, 16, 235])
def test_flat_colour_stays_flat(pair, level):
    """Inside the frame within 2 codes of the input (was 127-131 at 128, 14-19 at 16); at its edges no more than 3
    codes beyond where fp32 itself goes (99.99th-percentile ranges put flat 235's edge at 214)."""
    fp32, q, _ = pair
    x = torch.full((1, 3, 64, 64), level / 255)
    a, b = _codes(fp32, x), _codes(q, x)
    inner = b[..., 8:-8, 8:-8]
    assert (inner - level).abs().max().item() <= 2, (inner.min().item(), inner.max().item())
    assert b.min().item() >= a.min().item() - 3 and b.max().item() <= a.max().item() + 3


def test_a_dark_frame_keeps_its_detail(pair, val_root):
    """A dark frame (lenna x 0.06, bicubic down): fp32 54.3 dB, MinMax int8 46.4 dB, the recipe 48.4 dB."""
    _, q, _ = pair
    hr = np.asarray(Image.open(val_root / "Set14" / "lenna.png").convert("RGB").crop((150, 150, 342, 342)),
                    np.float32) / 255
    hi = Image.fromarray(np.round(hr * 0.06 * 255).astype(np.uint8))
    lr = hi.resize((96, 96), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(lr, np.float32) / 255).permute(2, 0, 1)[None].contiguous()
    out = _codes(q, x)[0].permute(1, 2, 0).numpy().astype(np.uint8)
    assert psnr_y(out, np.asarray(hi), 2) >= 47.5


def test_a_near_black_ramp_stays_near_fp32(pair):
    """0 to 10/255 over 96 px: the mean distance from fp32 inside the frame (MinMax: 0.86 codes; the recipe 0.53).
    Level reversals along the ramp remain (~60 a row for realtime x2, MKS2021 none): the README says so."""
    fp32, q, _ = pair
    x = torch.linspace(0, 10 / 255, 96).repeat(1, 3, 96, 1)
    d = (_codes(q, x) - _codes(fp32, x))[..., 8:-8, 8:-8].abs()
    assert d.mean().item() <= 0.7 and d.max().item() <= 3


def test_the_base_path_the_final_add_and_the_first_conv_stay_float(pair):
    _, q, _ = pair
    graph = onnx.load(str(q.runner.onnx_path)).graph
    dq = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    assert dq  # it is an int8 file
    reads_dq = {n.name for n in graph.node if any(i in dq for i in n.input)}
    assert not [n for n in reads_dq if n.startswith(("/base/", "/tail_lr/", "/head/"))]
    made_by = {o: n for n in graph.node for o in n.output}
    last = made_by[graph.output[0].name]  # the shuffle of base + detail
    adds = [made_by[i] for i in last.input if i in made_by and made_by[i].op_type == "Add"]
    assert adds and not any(i in dq for a in adds for i in a.input)
    assert E.INT8_RECIPE in str(q.runner.cache.check(q.runner.onnx_path).meta["fields"]["quantizer"])


def test_a_quantised_base_path_is_refused(tmp_path):
    """The check that runs after every quantisation: a file in which what must stay float reads a quantised
    tensor is refused (the base path is never quantised: a file made with it left out of keep_float shows that
    the check sees it)."""
    from psr2video.models import build_model

    torch.manual_seed(0)
    fp32 = E.export_onnx(build_model("realtime", 2), tmp_path / "f.onnx", "fp32")
    calib = E.random_crops([E.synthetic_image(64, 64, s) for s in range(2)], 2, 32)
    E.quantize_int8(fp32, tmp_path / "ok.onnx", calib, ("base", "tail_lr"))  # the model's own list: passes
    E._check_float_kept(tmp_path / "ok.onnx", ("/base/", "/tail_lr/"))
    E.quantize_int8(fp32, tmp_path / "bad.onnx", calib, ("tail_lr",))
    with pytest.raises(E.ExportError, match="must stay float.*/base/"):
        E._check_float_kept(tmp_path / "bad.onnx", ("/base/", "/tail_lr/"))


def test_an_int8_run_says_what_it_costs_once(pair, val_root, monkeypatch, caplog):
    monkeypatch.setattr(U, "_SAID", set())
    monkeypatch.setenv("PSR2VIDEO_CACHE", str(pair[2]))
    monkeypatch.setenv("PSR2VIDEO_DATA", str(val_root.parent))
    with caplog.at_level(logging.WARNING, logger="psr2video.runtime"):
        q = pair[1]
        Upscaler("realtime", 2, backend="onnxruntime", device="cpu", precision="int8")
        Upscaler("realtime", 2, backend="onnxruntime", device="cpu", precision="int8")
        Upscaler(variant="mks", device="cpu", backend="onnxruntime", precision="int8")  # nothing quantised
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("int8 costs")]
    assert lines == [U.INT8_COST] and "fp16" in lines[0] and q.precision == "int8"
