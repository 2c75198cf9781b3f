"""Building blocks of ParagonSR2: re-parameterisable convolutions and the four block types.

Every block is written so that ``fuse()`` turns it into an inference-only equivalent: multi-branch
convolutions collapse into one kernel and LayerScale folds into the block's last 1x1 convolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _fold_scale(conv: nn.Conv2d, gamma: torch.Tensor) -> nn.Conv2d:
    """Return ``conv`` with its output channels multiplied by ``gamma`` (LayerScale folding)."""
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, bias=True).to(conv.weight)
    with torch.no_grad():
        out.weight.copy_(conv.weight * gamma.view(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(gamma)
        out.bias.copy_(bias * gamma)
    return out


def fuse_children(module: nn.Module) -> None:
    """Replace every child that has ``fuse()`` by its fused form, depth first."""
    for name, child in module.named_children():
        if hasattr(child, "fuse"):
            setattr(module, name, child.fuse())
        else:
            fuse_children(child)


class RepConv(nn.Module):
    """KxK conv trained as KxK + 1x1 (+ identity when shapes allow) branches; fuses to one KxK conv.

    Works for dense (groups=1) and depthwise (groups=channels) convolutions. The extra branches cost
    nothing after fusion and make optimisation of small nets easier (RepVGG / ECBSR).
    """

    def __init__(self, cin: int, cout: int, k: int = 3, groups: int = 1, identity: bool = True) -> None:
        super().__init__()
        self.main = nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups)
        self.point = nn.Conv2d(cin, cout, 1, groups=groups)
        self.identity = identity and cin == cout
        self.k, self.groups = k, groups
        if self.identity:  # the identity branch as a KxK kernel, built once (not saved in state dicts)
            eye = torch.zeros_like(self.main.weight)
            idx = torch.arange(cout)
            eye[idx, idx % (cin // groups), k // 2, k // 2] = 1.0
            self.register_buffer("eye", eye, persistent=False)

    def kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The one KxK kernel and bias equal to the sum of the branches (differentiable)."""
        c = self.k // 2
        w = self.main.weight + F.pad(self.point.weight, (c, c, c, c))
        if self.identity:
            w = w + self.eye.to(w.dtype)
        return w, self.main.bias + self.point.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Online re-parameterisation: one conv with the summed kernel is exactly the branch sum (conv is
        # linear in its weights, so gradients reach each branch unchanged) and trains ~1.5x faster.
        w, b = self.kernel()
        return F.conv2d(x, w.to(x.dtype), b.to(x.dtype), padding=self.k // 2, groups=self.groups)

    def fuse(self) -> nn.Conv2d:
        conv = nn.Conv2d(self.main.in_channels, self.main.out_channels, self.k, padding=self.k // 2,
                         groups=self.groups).to(self.main.weight)
        with torch.no_grad():
            w, b = self.kernel()
            conv.weight.copy_(w)
            conv.bias.copy_(b)
        return conv


class LayerScale(nn.Module):
    """Per-channel residual scale (CaiT); folded into the preceding conv by ``fuse``."""

    def __init__(self, channels: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, -1, 1, 1).to(x.dtype)


class ScaledConv(nn.Module):
    """A 1x1 conv followed by LayerScale; fuses into a single conv."""

    def __init__(self, cin: int, cout: int, ls_init: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)
        self.scale = LayerScale(cout, ls_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale(self.conv(x))

    def fuse(self) -> nn.Conv2d:
        return _fold_scale(self.conv, self.scale.gamma.detach())


class RMSNormalize(nn.Module):
    """Parameter-free RMS normalisation over channels at every pixel (variance in fp32 for fp16 safety).

    What is left of an ``RMSNorm2d`` once its weight is folded into the following 1x1 convolution.
    """

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        return (xf * torch.rsqrt(xf.pow(2).mean(dim=1, keepdim=True) + self.eps)).to(x.dtype)


class RMSNorm2d(RMSNormalize):
    """RMS norm over channels at every pixel with a learned per-channel weight."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__(eps)
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.weight.view(1, -1, 1, 1).to(x.dtype)


class NanoBlock(nn.Module):
    """Realtime block: 1x1 expand -> depthwise 3x3 -> GELU -> 1x1 project, scaled residual."""

    def __init__(self, c: int, ls_init: float = 1e-5) -> None:
        super().__init__()
        self.expand = nn.Conv2d(c, 2 * c, 1)
        self.dw = RepConv(2 * c, 2 * c, 3, groups=2 * c)
        self.project = ScaledConv(2 * c, c, ls_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(F.gelu(self.dw(self.expand(x))))


class StreamBlock(nn.Module):
    """Stream block (revision 2): local + dilated context, then a normalised gated depthwise unit.

    ``out = x + LS * proj(u * v)`` with ``u, v = dw(pw(RMSNorm(x + ctx)))``. Revision 1 fed ``x + ctx``
    to the gate unnormalised, so the product was quadratic in the features: out-of-distribution input
    (black-on-white text, 1-px lines) drove the detail path into the thousands and fp16 past 65504.
    With the per-pixel RMS norm (NAFNet), ``u`` and ``v`` are linear in a vector of RMS 1, so each
    block's update is bounded by its weights whatever the input, and the net's detail is bounded.
    The norm's weight folds into ``gate_in`` at fusion; the product stays in the input's dtype.
    """

    def __init__(self, c: int, ls_init: float = 1e-5) -> None:
        super().__init__()
        self.local = RepConv(c, c, 3, groups=c)
        self.wide = nn.Conv2d(c, c, 3, padding=3, dilation=3, groups=c)
        self.context = nn.Conv2d(2 * c, c, 1)
        self.norm: nn.Module = RMSNorm2d(c)
        self.gate_in = nn.Conv2d(c, 4 * c, 1)
        self.gate_dw = RepConv(4 * c, 4 * c, 3, groups=4 * c)
        self.project = ScaledConv(2 * c, c, ls_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = self.context(torch.cat([self.local(x), self.wide(x)], dim=1))
        u, v = self.gate_dw(self.gate_in(self.norm(x + ctx))).chunk(2, dim=1)
        return x + self.project(u * v)

    def fuse(self) -> StreamBlock:
        fuse_children(self)
        if isinstance(self.norm, RMSNorm2d):  # fold the weight; keep the parameter-free normalisation
            with torch.no_grad():
                self.gate_in.weight.mul_(self.norm.weight.view(1, -1, 1, 1))
            self.norm = RMSNormalize(self.norm.eps)
        return self

    def for_export(self) -> StreamBlockExport:
        """The exact export form of a fused block (no Concat, no Slice)."""
        return StreamBlockExport(self)


def _split_out(conv: nn.Conv2d, parts: int = 2) -> list[nn.Conv2d]:
    """``conv`` cut into ``parts`` convs over consecutive output-channel ranges (dense or depthwise)."""
    n = conv.out_channels // parts
    depthwise = conv.groups == conv.in_channels == conv.out_channels and conv.groups > 1
    out = []
    for k in range(parts):
        c = nn.Conv2d(n if depthwise else conv.in_channels, n, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, n if depthwise else 1).to(conv.weight)
        with torch.no_grad():
            c.weight.copy_(conv.weight[k * n:(k + 1) * n])
            c.bias.copy_(conv.bias[k * n:(k + 1) * n])
        out.append(c)
    return out


class StreamBlockExport(nn.Module):
    """A fused StreamBlock without Concat and Slice: exact, ~10% faster on ONNX Runtime CPU.

    ``context(cat(a, b))`` becomes ``ctx_a(a) + ctx_b(b)`` and ``gate_dw(gate_in(y)).chunk(2)`` becomes two
    branches of half width, so the graph keeps the blocked (NCHWc) layout with no reorders or copies.
    """

    def __init__(self, blk: StreamBlock) -> None:
        super().__init__()
        if not isinstance(blk.gate_dw, nn.Conv2d) or isinstance(blk.norm, RMSNorm2d):
            raise ValueError("StreamBlock.for_export() needs a fused block (call fuse_for_release() first)")
        self.local, self.wide, self.norm, self.project = blk.local, blk.wide, blk.norm, blk.project
        c = blk.context.out_channels
        self.ctx_a = nn.Conv2d(c, c, 1).to(blk.context.weight)
        self.ctx_b = nn.Conv2d(c, c, 1, bias=False).to(blk.context.weight)
        with torch.no_grad():
            self.ctx_a.weight.copy_(blk.context.weight[:, :c])
            self.ctx_a.bias.copy_(blk.context.bias)
            self.ctx_b.weight.copy_(blk.context.weight[:, c:])
        self.gin_u, self.gin_v = _split_out(blk.gate_in)
        self.dw_u, self.dw_v = _split_out(blk.gate_dw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x + self.ctx_a(self.local(x)) + self.ctx_b(self.wide(x)))
        return x + self.project(self.dw_u(self.gin_u(y)) * self.dw_v(self.gin_v(y)))


class ConvFFN(nn.Module):
    """Pointwise expand -> depthwise 3x3 -> GELU -> pointwise project (the conv half of Photo/Pro)."""

    def __init__(self, c: int, hidden: int, ls_init: float) -> None:
        super().__init__()
        self.expand = nn.Conv2d(c, hidden, 1)
        self.dw = RepConv(hidden, hidden, 3, groups=hidden)
        self.project = ScaledConv(hidden, c, ls_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(F.gelu(self.dw(self.expand(x))))


class RelativePositionBias(nn.Module):
    """Swin-style learned relative position bias, shared by the blocks of one group."""

    def __init__(self, window: int, heads: int) -> None:
        super().__init__()
        self.window, self.heads = window, heads
        self.table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
        coords = coords.flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("index", rel[..., 0] * (2 * window - 1) + rel[..., 1], persistent=False)

    def forward(self) -> torch.Tensor:
        n = self.window * self.window
        return self.table[self.index.view(-1)].view(n, n, self.heads).permute(2, 0, 1)  # (heads, n, n)


def _window_mask(hp: torch.Tensor, wp: torch.Tensor, h: torch.Tensor, w: torch.Tensor, window: int,
                 shift: int, device: torch.device) -> torch.Tensor:
    """Additive mask (nW, n, n): -100 between shifted-window regions and on padded keys.

    Built from shape tensors with arange/compare ops so an exported graph stays valid for any H, W.
    """
    ys = torch.arange(hp, device=device)
    xs = torch.arange(wp, device=device)
    # label regions in the rolled frame (Swin), and mark padded pixels in the original frame then roll.
    ry = (ys >= hp - window).long() + (ys >= hp - shift).long() if shift else torch.zeros_like(ys)
    rx = (xs >= wp - window).long() + (xs >= wp - shift).long() if shift else torch.zeros_like(xs)
    valid_y = torch.roll((ys < h).long(), -shift, 0) if shift else (ys < h).long()
    valid_x = torch.roll((xs < w).long(), -shift, 0) if shift else (xs < w).long()
    label = (ry[:, None] * 3 + rx[None, :]) * (valid_y[:, None] * valid_x[None, :])
    label = label + (1 - valid_y[:, None] * valid_x[None, :]) * 100  # padded keys form their own region
    nh, nw = hp // window, wp // window
    lab = label.view(nh, window, nw, window).permute(0, 2, 1, 3).reshape(-1, window * window)
    same = lab[:, :, None] == lab[:, None, :]
    return torch.where(same, 0.0, -100.0)


def window_attention_bias(bias: torch.Tensor, x: torch.Tensor, window: int, shift: int) -> torch.Tensor:
    """(B*nW, heads, n, n) additive attention bias for input ``x``: relative position bias + window mask.

    It depends only on the shape and the shift, so a group builds it once per forward for all its blocks.
    """
    b, _, h, w = x.shape
    hp, wp = h + (window - h % window) % window, w + (window - w % window) % window
    mask = _window_mask(hp, wp, h, w, window, shift, x.device)  # (nW, n, n)
    return (bias.unsqueeze(0) + mask.unsqueeze(1)).repeat(b, 1, 1, 1).to(x.dtype)


class WindowAttention(nn.Module):
    """Multi-head self-attention in ``window`` x ``window`` windows, optionally shifted.

    Unlike the reference, shifted windows are masked, padded keys are masked, and a relative position
    bias is used. Padding to a window multiple is done with shape arithmetic inside the graph, so an
    exported model runs at any H and W.
    """

    def __init__(self, c: int, heads: int = 4, window: int = 16, shift: int = 0) -> None:
        super().__init__()
        self.heads, self.window, self.shift = heads, window, shift
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor) -> torch.Tensor:
        """``attn_bias``: from ``window_attention_bias`` for this input's shape and this layer's shift."""
        b, c, h, w = x.shape
        ws, sh, nh_ = self.window, self.shift, self.heads
        pad_h = (ws - h % ws) % ws  # traced as shape arithmetic on export: no frozen Python branch
        pad_w = (ws - w % ws) % ws
        qkv = F.pad(self.qkv(x), (0, pad_w, 0, pad_h))
        hp, wp = h + pad_h, w + pad_w
        if sh:
            qkv = torch.roll(qkv, (-sh, -sh), (2, 3))
        nwh, nww = hp // ws, wp // ws
        t = qkv.view(b, 3, nh_, c // nh_, nwh, ws, nww, ws)
        t = t.permute(1, 0, 4, 6, 2, 5, 7, 3).reshape(3, b * nwh * nww, nh_, ws * ws, c // nh_)
        q, k, v = t[0], t[1], t[2]
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)  # (B*nW, heads, n, d)
        o = o.view(b, nwh, nww, nh_, ws, ws, c // nh_).permute(0, 3, 6, 1, 4, 2, 5).reshape(b, c, hp, wp)
        if sh:
            o = torch.roll(o, (sh, sh), (2, 3))
        return self.proj(o[:, :, :h, :w])


class PhotoBlock(nn.Module):
    """Photo block: pre-norm window attention and a ConvFFN, each with its own LayerScale."""

    def __init__(self, c: int, heads: int, window: int, shift: int, ls_init: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = RMSNorm2d(c)
        self.attn = WindowAttention(c, heads, window, shift)
        self.ls1 = LayerScale(c, ls_init)
        self.norm2 = RMSNorm2d(c)
        self.ffn = ConvFFN(c, 2 * c, ls_init)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), bias))
        return x + self.ffn(self.norm2(x))

    def fuse(self) -> PhotoBlock:
        self.attn.proj = _fold_scale(self.attn.proj, self.ls1.gamma.detach())
        self.ls1 = nn.Identity()
        fuse_children(self.ffn)
        return self


class SqueezeExcite(nn.Module):
    """Channel attention from global average pooling (squeeze-and-excitation)."""

    def __init__(self, c: int, reduction: int = 8) -> None:
        super().__init__()
        self.down = nn.Conv2d(c, c // reduction, 1)
        self.up = nn.Conv2d(c // reduction, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.up(F.gelu(self.down(x.mean(dim=(2, 3), keepdim=True)))))


class TokenDictionaryAttention(nn.Module):
    """Cross-attention from every pixel to a small learned dictionary of global tokens."""

    def __init__(self, c: int, tokens: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.keys = nn.Parameter(torch.randn(tokens, c) * 0.02)
        self.values = nn.Parameter(torch.randn(tokens, c) * 0.02)
        self.q = nn.Conv2d(c, c, 1)
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        d = c // self.heads
        q = self.q(x).flatten(2).view(b, self.heads, d, -1).transpose(2, 3)  # (B, heads, HW, d)
        k = self.keys.to(q.dtype).view(-1, self.heads, d).transpose(0, 1).unsqueeze(0)
        v = self.values.to(q.dtype).view(-1, self.heads, d).transpose(0, 1).unsqueeze(0)
        o = F.scaled_dot_product_attention(q, k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1))
        return self.proj(o.transpose(2, 3).reshape(b, c, h, w))


class SEConvFFN(ConvFFN):
    """ConvFFN with squeeze-and-excitation on the hidden activation (before the scaled projection)."""

    def __init__(self, c: int, hidden: int, ls_init: float) -> None:
        super().__init__(c, hidden, ls_init)
        self.se = SqueezeExcite(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.se(F.gelu(self.dw(self.expand(x)))))


class ProBlock(nn.Module):
    """Pro block: window attention, token-dictionary cross-attention, ConvFFN with SE."""

    def __init__(self, c: int, heads: int, window: int, shift: int, tokens: int = 32,
                 ls_init: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = RMSNorm2d(c)
        self.attn = WindowAttention(c, heads, window, shift)
        self.ls1 = LayerScale(c, ls_init)
        self.norm2 = RMSNorm2d(c)
        self.dict = TokenDictionaryAttention(c, tokens, heads)
        self.ls2 = LayerScale(c, ls_init)
        self.norm3 = RMSNorm2d(c)
        self.ffn = SEConvFFN(c, 2 * c, ls_init)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), bias))
        x = x + self.ls2(self.dict(self.norm2(x)))
        return x + self.ffn(self.norm3(x))

    def fuse(self) -> ProBlock:
        self.attn.proj = _fold_scale(self.attn.proj, self.ls1.gamma.detach())
        self.dict.proj = _fold_scale(self.dict.proj, self.ls2.gamma.detach())
        self.ls1, self.ls2 = nn.Identity(), nn.Identity()
        fuse_children(self.ffn)
        return self
