"""Magic Kernel Sharp 2021: taps, constancy, ONNX-friendliness and quality against bicubic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from psr2video.evaluate import evaluate, pil_resize, tensor_fn
from psr2video.models.magic import SHARP_2021, MagicKernelSharp2021, magic_phase_taps, mks_phase_kernels


def test_magic_taps_match_costella_x2() -> None:
    taps = magic_phase_taps(2)
    np.testing.assert_allclose(taps[0], [0.28125, 0.6875, 0.03125])
    np.testing.assert_allclose(taps[1], [0.03125, 0.6875, 0.28125])


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_phase_kernels_sum_to_one(scale: int) -> None:
    assert SHARP_2021.sum() == pytest.approx(1.0)
    for alpha in (0.0, 0.5, 1.0):
        k = mks_phase_kernels(scale, alpha)
        np.testing.assert_allclose(k.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_constant_image_stays_constant(scale: int, alpha: float) -> None:
    for value in (0.0, 0.37, 1.0):
        x = torch.full((2, 3, 7, 5), value)
        y = MagicKernelSharp2021(scale, alpha)(x)
        assert y.shape == (2, 3, 7 * scale, 5 * scale)
        assert (y - value).abs().max().item() < 1e-6  # borders included


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_tiny_and_odd_inputs(scale: int) -> None:
    m = MagicKernelSharp2021(scale)
    for hw in [(1, 1), (1, 6), (3, 2), (17, 9)]:
        y = m(torch.rand(1, 3, *hw))
        assert y.shape == (1, 3, hw[0] * scale, hw[1] * scale) and torch.isfinite(y).all()


def test_alpha_zero_is_plain_magic_kernel_and_linear_ramp_is_preserved() -> None:
    # the quadratic B-spline reproduces linear functions away from the border; so does the
    # (symmetric, unit-sum) Sharp 2021 kernel, so a ramp stays a ramp at the output sample positions
    w = 32
    x = torch.arange(w, dtype=torch.float64).view(1, 1, 1, w).expand(1, 3, 4, w).contiguous() / w
    for alpha in (0.0, 1.0):
        y = MagicKernelSharp2021(2, alpha).double()(x)
        pos = (torch.arange(2 * w, dtype=torch.float64) + 0.5) / 2 - 0.5
        np.testing.assert_allclose(y[0, 0, 0, 8:-8].numpy(), (pos[8:-8] / w).numpy(), atol=1e-12)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        MagicKernelSharp2021(2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        MagicKernelSharp2021(2, alpha=1.5)


def test_onnx_ops_are_plain() -> None:
    import io
    import warnings

    import onnx

    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter (what psr2video exports with) is "legacy"
        warnings.simplefilter("ignore")
        torch.onnx.export(MagicKernelSharp2021(2), torch.rand(1, 3, 8, 8), buf, opset_version=17, dynamo=False,
                          input_names=["input"], dynamic_axes={"input": {2: "h", 3: "w"}})
    ops = {n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node}
    assert {"Conv", "DepthToSpace", "Pad"} <= ops
    assert ops <= {"Conv", "DepthToSpace", "Pad", "Constant", "Cast", "Shape", "Gather", "Concat", "Unsqueeze",
                   "Slice", "Reshape", "ConstantOfShape", "Transpose"}


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("dataset", ["Set5", "Set14", pytest.param("B100", marks=pytest.mark.slow)])
def test_mks_beats_bicubic(val_root, scale: int, dataset: str) -> None:
    folder = val_root / dataset
    mks = evaluate(tensor_fn(MagicKernelSharp2021(scale, 1.0)), folder, scale, "mks", ssim=False)
    bic = evaluate(pil_resize("bicubic"), folder, scale, "bicubic", ssim=False)
    assert mks.psnr > bic.psnr + 0.05, (mks.psnr, bic.psnr)
