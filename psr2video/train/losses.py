"""Training losses: L1 / L2 / Charbonnier, MS-SSIM, FFT (frequency), perceptual (local weights only), temporal
(frame pairs; the trainer applies it), R3GAN.

Every loss takes NCHW tensors in [0, 1] and returns a scalar tensor.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics import gaussian_window, ssim_parts
from .config import LOSS_NOT_COMBINED, ConfigError

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


class L1Loss(nn.Module):
    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return (sr.float() - hr.float()).abs().mean()


class L2Loss(nn.Module):
    """Mean squared error: the loss PSNR measures. A short low-lr L2 stage after L1 training is the usual last
    step for a fidelity model (L1 converges better, L2 then trades outliers for mean error)."""

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        d = sr.float() - hr.float()
        return (d * d).mean()


class CharbonnierLoss(nn.Module):
    """sqrt((x - y)^2 + eps^2), a smooth L1."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        d = sr.float() - hr.float()
        return torch.sqrt(d * d + self.eps * self.eps).mean()


def ms_ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5,
            weights: tuple[float, ...] = MS_SSIM_WEIGHTS) -> torch.Tensor:
    """Per-image multi-scale SSIM (Wang et al. 2003). Scales whose side drops below the window are dropped,
    and the remaining weights renormalised, so small training patches work."""
    a, b = a.float(), b.float()
    levels = 1
    while levels < len(weights) and min(a.shape[-2:]) // (2**levels) >= window:
        levels += 1
    w = torch.tensor(weights[:levels], device=a.device)
    w = w / w.sum()
    win = min(window, *a.shape[-2:])
    k = gaussian_window(win, sigma).to(a).expand(a.shape[1], 1, win, win)  # once, not once per scale
    vals = []
    for i in range(levels):
        ssim, cs = ssim_parts(a, b, win, sigma, data_range, k)
        vals.append((ssim if i == levels - 1 else cs).clamp_min(1e-6))
        if i < levels - 1:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return torch.prod(torch.stack(vals, 0) ** w.view(-1, 1), dim=0)


class MSSSIMLoss(nn.Module):
    """1 - MS-SSIM."""

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return 1.0 - ms_ssim(sr, hr).mean()


class FFTLoss(nn.Module):
    """L1 between the 2-D real FFTs (orthonormal) of SR and HR: penalises missing high frequencies."""

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        fs = torch.fft.rfft2(sr.float(), norm="ortho")
        fh = torch.fft.rfft2(hr.float(), norm="ortho")
        return (torch.view_as_real(fs) - torch.view_as_real(fh)).abs().mean()


class PerceptualLoss(nn.Module):
    """VGG19 feature L1 (conv1_2 ... conv5_4 before ReLU). Needs a local torchvision ``vgg19`` state dict:
    nothing is downloaded."""

    LAYERS = {"conv1_2": 2, "conv2_2": 7, "conv3_4": 16, "conv4_4": 25, "conv5_4": 34}

    def __init__(self, weights: str | Path | None, layers: dict[str, float] | None = None) -> None:
        super().__init__()
        if not weights:
            raise ConfigError("the perceptual loss needs a local VGG19 weights file: set loss.perceptual_weights "
                              "to a torchvision vgg19 state dict (.pth or .safetensors)")
        path = Path(weights)
        if not path.is_file():
            raise ConfigError(f"perceptual loss weights not found: {path}")
        try:
            from torchvision.models import vgg19
        except ImportError:
            raise ConfigError("the perceptual loss needs torchvision (pip install torchvision)") from None
        net = vgg19()
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                state = torch.load(str(path), map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except Exception as e:  # noqa: BLE001 - a damaged file or another net's state: torch raises several types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"loss.perceptual_weights {path} is not a torchvision vgg19 state dict "
                              f"({first})") from None
        self.layers = layers or {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
        last = max(self.LAYERS[k] for k in self.layers)
        self.features = net.features[: last + 1].eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def _feats(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        want = {self.LAYERS[k] for k in self.layers}
        out, h = {}, (x - self.mean) / self.std
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in want:
                out[i] = h
        return out

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        fs, fh = self._feats(sr.float()), self._feats(hr.float())
        return sum(w * F.l1_loss(fs[self.LAYERS[k]], fh[self.LAYERS[k]].detach()) for k, w in self.layers.items())


class TemporalLoss(nn.Module):
    """L1 between the output's and the target's change from one frame to the next, |(sr_t - sr_t-1) -
    (hr_t - hr_t-1)|: the temporal error ``psr2video eval --video`` reports, as a loss. Inputs are pairs
    stacked ``(2, N, C, H, W)``, previous frame first. ``border`` HR px are left out: there the panning
    window's content is replicated edge, not picture."""

    def __init__(self, border: int = 0) -> None:
        super().__init__()
        self.border = int(border)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        d = (sr[1].float() - sr[0].float()) - (hr[1].float() - hr[0].float())
        b = self.border
        if b:
            d = d[..., b:-b, b:-b]
        return d.abs().mean()


def flat_hinge(sr: torch.Tensor, hr: torch.Tensor, margin: float) -> torch.Tensor:
    """``[loss] flat_hinge``: how far the output strays past ``margin`` from a flat target, per pixel the worst
    channel, averaged over the known pixels of the batch's hard-edged crops (those with NaN, "no target", at their
    edges: ``[data] aliased_target = "flat"``); 0 for a batch without any.

    Why a term of its own: the stress suite counts a flat neighbourhood's pixel that strays more than 24 codes as
    speckle, and in the L1 mean the few such pixels round thin strokes weigh nothing next to a batch of photos, so
    more hard-edged crops bought fewer of them only slowly (15 -> 6 pixels over 4,000 steps of stream_x2_clean)."""
    free = torch.isnan(hr).all(1, keepdim=True)
    crops = free.flatten(1).any(1)
    if not bool(crops.any()):
        return sr.sum() * 0.0
    known = ~free[crops]
    err = (sr[crops].float() - torch.nan_to_num(hr[crops].float())).abs().amax(1, keepdim=True)
    return ((err - margin).clamp_min(0) * known).sum() / known.sum().clamp_min(1)


PIXEL_LOSSES = {"l1": L1Loss, "l2": L2Loss, "charbonnier": CharbonnierLoss, "ms_ssim": MSSSIMLoss, "fft": FFTLoss}


class CombinedLoss(nn.Module):
    """Weighted sum of pixel losses, from a config table such as ``{l1 = 1.0, ms_ssim = 0.08}``."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.terms = nn.ModuleDict()
        self.weights: dict[str, float] = {}
        for name, w in cfg.items():
            if name in LOSS_NOT_COMBINED or not w:
                continue
            if name == "perceptual":
                mod: nn.Module = PerceptualLoss(cfg.get("perceptual_weights"), cfg.get("perceptual_layers"))
            elif name in PIXEL_LOSSES:
                mod = PIXEL_LOSSES[name]()
            else:
                raise ConfigError(f"unknown loss {name!r}; choose from {', '.join([*PIXEL_LOSSES, 'perceptual'])}")
            self.terms[name] = mod
            self.weights[name] = float(w)
        if not self.terms:
            raise ConfigError("the [loss] table enables no loss")

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        total, parts = 0.0, {}
        for name, mod in self.terms.items():
            v = mod(sr, hr)
            parts[name] = float(v.detach())
            total = total + self.weights[name] * v
        return total, parts


class R3GANLoss:
    """R3GAN (Huang et al., 2024): relativistic pairing loss with R1 (real) and R2 (fake) gradient penalties.

    With a per-pixel discriminator the pairing is per pixel: D loss = softplus(D(fake) - D(real)), G loss =
    softplus(D(real) - D(fake)), averaged. The penalties are gamma/2 * E ||grad_x mean_pixels D(x)||^2.
    """

    def __init__(self, r1: float = 1.0, r2: float = 1.0) -> None:
        self.r1, self.r2 = r1, r2

    @staticmethod
    def pairing(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(fake_logits - real_logits).mean()

    def generator_loss(self, disc: nn.Module, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return self.pairing(disc(fake), disc(real.detach()))

    @staticmethod
    def penalty(disc: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.detach().requires_grad_(True)
        logits = disc(x)
        (grad,) = torch.autograd.grad(logits.flatten(1).mean(1).sum(), x, create_graph=True)
        return logits, grad.pow(2).flatten(1).sum(1).mean()

    def discriminator_loss(self, disc: nn.Module, fake: torch.Tensor, real: torch.Tensor, penalty: bool = True,
                           penalty_scale: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
        if penalty and (self.r1 > 0 or self.r2 > 0):
            real_logits, r1 = self.penalty(disc, real)
            fake_logits, r2 = self.penalty(disc, fake)
        else:
            real_logits, fake_logits = disc(real.detach()), disc(fake.detach())
            r1 = r2 = torch.zeros((), device=real.device)
        adv = self.pairing(real_logits, fake_logits)
        loss = adv + penalty_scale * (0.5 * self.r1 * r1 + 0.5 * self.r2 * r2)
        return loss, {"d_adv": float(adv.detach()), "r1": float(r1.detach()), "r2": float(r2.detach())}
