"""Training losses, MUNet and R3GAN on known inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from psr2video.train.losses import (
    CharbonnierLoss,
    CombinedLoss,
    FFTLoss,
    L1Loss,
    L2Loss,
    MSSSIMLoss,
    PerceptualLoss,
    R3GANLoss,
    TemporalLoss,
    ms_ssim,
)
from psr2video.train.munet import MUNet


def _img(n=2, h=64, w=64, seed=0):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_l1_known_value():
    a, b = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    assert L1Loss()(a, b).item() == pytest.approx(0.5)


def test_temporal_loss_known_values():
    """|(sr_t - sr_t-1) - (hr_t - hr_t-1)|: zero when the output changes as the target does, whatever each
    frame's own error; the replicated border is left out."""
    hr = torch.rand(2, 1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert float(TemporalLoss()(hr + 0.3, hr)) == pytest.approx(0.0, abs=1e-7)  # steady error: no flicker
    sr = hr.clone()
    sr[1] += 0.25  # the output jumps by 0.25 between frames, the target does not
    assert float(TemporalLoss()(sr, hr)) == pytest.approx(0.25)
    sr = hr.clone()
    sr[1, ..., 0, :] += 1.0  # a jump on the edge row only
    assert float(TemporalLoss()(sr, hr)) == pytest.approx(1 / 8)
    assert float(TemporalLoss(border=1)(sr, hr)) == pytest.approx(0.0, abs=1e-7)
    assert "temporal" not in CombinedLoss({"l1": 1.0, "temporal": 0.5}).terms  # the trainer applies it


def test_l2_known_value_and_config_name():
    a, b = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    assert L2Loss()(a, b).item() == pytest.approx(0.25)
    total, parts = CombinedLoss({"l2": 1.0})(a, b)
    assert total.item() == pytest.approx(0.25) and parts == {"l2": pytest.approx(0.25)}


def test_charbonnier_known_values():
    a = torch.zeros(1, 3, 4, 4)
    assert CharbonnierLoss(eps=1e-3)(a, a).item() == pytest.approx(1e-3)
    b = torch.full_like(a, 0.3)
    assert CharbonnierLoss(eps=1e-3)(a, b).item() == pytest.approx(math.sqrt(0.09 + 1e-6), rel=1e-6)


def test_ms_ssim_identity_and_ordering():
    x = _img()
    assert MSSSIMLoss()(x, x).item() == pytest.approx(0.0, abs=1e-5)
    slight = (x + 0.02 * torch.randn_like(x)).clamp(0, 1)
    heavy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    assert 0 < MSSSIMLoss()(slight, x).item() < MSSSIMLoss()(heavy, x).item() <= 1.0
    # 5 scales at 176 px, fewer (renormalised) on small patches; values stay in (0, 1]
    for n in (176, 16):
        a = _img(1, n, n)
        assert 0 < ms_ssim(a, (a + 0.1 * _img(1, n, n, 1)).clamp(0, 1)).item() < 1


def test_ms_ssim_matches_ssim_at_one_scale():
    from psr2video.metrics import ssim

    a = _img(1, 20, 20)
    b = (a + 0.1 * _img(1, 20, 20, 3)).clamp(0, 1)
    assert ms_ssim(a, b).item() == pytest.approx(ssim(a, b).item(), rel=1e-4)


def test_fft_loss_known_value():
    h, w, c = 8, 8, 0.25
    a, b = torch.zeros(1, 3, h, w), torch.full((1, 3, h, w), c)
    # only the DC coefficient differs: c * sqrt(H W) (orthonormal), averaged over H x (W/2+1) x (re, im)
    expect = c * math.sqrt(h * w) / (h * (w // 2 + 1) * 2)
    assert FFTLoss()(a, b).item() == pytest.approx(expect, rel=1e-5)
    assert FFTLoss()(b, b).item() == 0.0


def test_combined_loss_weights_and_errors():
    a, b = torch.zeros(1, 3, 16, 16), torch.full((1, 3, 16, 16), 0.5)
    total, parts = CombinedLoss({"l1": 2.0, "fft": 0.0})(a, b)
    assert total.item() == pytest.approx(1.0) and set(parts) == {"l1"}
    with pytest.raises(ValueError, match="unknown loss"):
        CombinedLoss({"l3": 1.0})
    with pytest.raises(ValueError, match="enables no loss"):
        CombinedLoss({"l1": 0})


def test_perceptual_needs_local_weights(tmp_path):
    with pytest.raises(ValueError, match="local VGG19 weights"):
        PerceptualLoss(None)
    with pytest.raises(ValueError, match="not found"):
        PerceptualLoss(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="local VGG19 weights"):
        CombinedLoss({"l1": 1.0, "perceptual": 0.1})


@pytest.mark.parametrize("size", [(64, 64), (50, 37)])
def test_munet_shapes(size):
    d = MUNet()
    assert d.channels == (64, 128, 256, 512)
    out = d(torch.rand(2, 3, *size))
    assert out.shape == (2, 1, *size)
    small = MUNet(channels=(8, 16, 32))
    assert small(torch.rand(1, 3, 24, 20)).shape == (1, 1, 24, 20)


def test_munet_is_spectrally_normalised():
    d = MUNet(channels=(8, 16, 32))
    names = [n for n, _ in d.named_parameters()]
    assert any("parametrizations.weight.original" in n for n in names)


class _Linear(nn.Module):
    """D(x) = sum_c a_c x_c per pixel: the gradient of the per-image mean logit is a / (H W) everywhere."""

    def __init__(self, a):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a).view(1, 3, 1, 1))

    def forward(self, x):
        return (x * self.a).sum(1, keepdim=True)


def test_r3gan_known_values():
    gan = R3GANLoss(r1=1.0, r2=1.0)
    z = torch.zeros(4)
    assert gan.pairing(z, z).item() == pytest.approx(math.log(2))
    d = _Linear([1.0, 2.0, 2.0])
    real, fake = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    _, pen = gan.penalty(d, real)
    assert pen.item() == pytest.approx(9.0 / 16, rel=1e-5)  # |a|^2 / (H W)
    loss, parts = gan.discriminator_loss(d, fake, real)
    expect_adv = torch.nn.functional.softplus(d(fake) - d(real)).mean().item()
    assert parts["d_adv"] == pytest.approx(expect_adv, rel=1e-5)
    assert loss.item() == pytest.approx(expect_adv + 0.5 * 9 / 16 + 0.5 * 9 / 16, rel=1e-5)
    g = gan.generator_loss(d, fake, real)
    assert g.item() == pytest.approx(torch.nn.functional.softplus(d(real) - d(fake)).mean().item(), rel=1e-5)


def test_r3gan_discriminator_step_separates():
    torch.manual_seed(0)
    d = MUNet(channels=(4, 8))
    opt = torch.optim.Adam(d.parameters(), 5e-3, betas=(0.0, 0.99))
    gan = R3GANLoss(r1=0.1, r2=0.1)
    real = torch.rand(2, 3, 8, 8) * 0.2 + 0.7
    fake = torch.rand(2, 3, 8, 8) * 0.2 + 0.1
    first = None
    for _ in range(8):
        loss, parts = gan.discriminator_loss(d, fake, real)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = parts["d_adv"] if first is None else first
    assert parts["d_adv"] < first


@pytest.mark.parametrize("h, w", [(7, 9), (3, 3), (1, 1)])
def test_ssim_on_a_picture_smaller_than_its_window_says_so(h, w):
    # conv2d's own error ("Calculated padded input size ... Kernel size: (11 x 11)") named neither picture nor fix
    import numpy as np

    from psr2video.metrics import ssim, ssim_y

    with pytest.raises(ValueError, match=rf"at least 11x11 pixels .*got {w}x{h}"):
        ssim(torch.rand(1, 3, h, w), torch.rand(1, 3, h, w))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_y(np.zeros((h, w, 3), np.uint8), np.zeros((h, w, 3), np.uint8))
    assert ms_ssim(torch.rand(1, 3, 11, 11), torch.rand(1, 3, 11, 11)).shape == (1,)  # small patches still train
