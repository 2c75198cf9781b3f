"""PyTorch checkpoints from other projects (.pth / .pt / .ckpt / .safetensors) through spandrel.

Loading is safe by construction: ``.safetensors`` holds tensors only, and pickled checkpoints go through
``torch.load(weights_only=True)``, whose unpickler builds tensors and plain containers and refuses every
other global, so a checkpoint that would run code when unpickled is refused before anything runs.
TorchScript archives (code, not weights) are refused too. spandrel then recognises the architecture
from the state dict (Real-ESRGAN, Compact, SPAN, SwinIR, HAT, OmniSR, RealCUGAN, ... see
``spandrel.MAIN_REGISTRY``) and its ``ImageModelDescriptor`` becomes our ``ModelDescriptor``.

``spandrel`` itself is MIT and holds only permissively licensed architectures. ``spandrel-extra-arches``
adds architectures under non-commercial licences, so psr2video (MIT) does not depend on it; when a user
has installed it, its architectures are registered too.
"""

from __future__ import annotations

import logging
import math
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..errors import first_line
from ..models.registry import ModelDescriptor
from .errors import ForeignModelError

log = logging.getLogger("psr2video.foreign")
# spandrel's SwinIR/HAT call torch.meshgrid without indexing=: torch's deprecation notice, printed into a user's
# run once per process, is about their code, not the user's
warnings.filterwarnings("ignore", message=r"torch\.meshgrid: in an upcoming release", category=UserWarning)

CHECKPOINT_EXTS = (".pth", ".pt", ".ckpt", ".safetensors")
# tile context in input pixels: enough for the convolutional families; attention families get more
OVERLAP = {"supported": 16, "discouraged": 32, "internal": 32}
_extra_installed = False


def _spandrel():
    try:
        import spandrel
    except ImportError as e:
        raise ForeignModelError(f"loading .pth/.safetensors models from other projects needs spandrel ({e}); "
                                "pip install spandrel") from None
    global _extra_installed
    if not _extra_installed:
        _extra_installed = True
        try:
            import spandrel_extra_arches
        except ImportError:
            pass
        else:  # the user chose to install the non-commercial architectures: use them
            spandrel_extra_arches.install(ignore_duplicates=True)
    return spandrel


def _refusal(path: Path, e: Exception) -> str:
    found = re.search(r"GLOBAL ([\w.]+)", str(e)) or re.search(r"global '?([\w.]+)", str(e), re.IGNORECASE)
    what = f"calls {found.group(1)}" if found else "needs more than tensors and containers"
    # a class of the user's own (not os.system and the like): most likely torch.save(model), not of the weights
    whole = found and not re.match(r"(posix|nt|os|builtins|subprocess|sys|shutil|socket)\b", found.group(1))
    hint = " (a whole pickled model? save model.state_dict() instead)" if whole else ""
    return (f"refusing {path.name}: its pickle {what}, i.e. it would run code when loaded; psr2video only loads "
            f"plain weights{hint}. Convert it to .safetensors with a tool you trust")


def safe_state_dict(path: Path) -> dict:
    """Tensors of a checkpoint without running any code from it (ForeignModelError otherwise)."""
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises SafetensorError and OSError variants
            raise ForeignModelError(f"{path.name} is not a readable .safetensors file ({e})") from None
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if any("/code/" in n or n.endswith("/constants.pkl") for n in z.namelist()):
                raise ForeignModelError(f"refusing {path.name}: it is a TorchScript archive (code, not weights); "
                                        "give the .pth/.safetensors state dict instead")
    with path.open("rb") as f:
        is_pickle = f.read(1) == b"\x80"  # PROTO, the first opcode of every pickle torch can write
    if not is_pickle and not zipfile.is_zipfile(path):  # an HTML error page, a renamed .onnx, noise: not code
        raise ForeignModelError(f"{path.name} is not a PyTorch checkpoint (neither a zip archive nor a pickle; "
                                "a failed download or another format?)")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ForeignModelError(_refusal(path, e)) from None
    except Exception as e:  # noqa: BLE001 - torch's unpickler raises KeyError, EOFError... on damaged files
        raise ForeignModelError(f"{path.name} is not a readable PyTorch checkpoint "
                                f"({first_line(e, with_type=True)})") from None
    if not isinstance(state, dict):
        raise ForeignModelError(f"{path.name} holds a {type(state).__name__}, not a state dict")
    return state


class SpandrelModel(nn.Module):
    """A spandrel model behind our calling convention: NCHW RGB [0, 1] in, ``scale`` x the size out."""

    def __init__(self, desc) -> None:
        super().__init__()
        self.net = desc.model
        self.scale = int(desc.scale)
        # spandrel's per-architecture call (a few models return tuples); plain call for the others
        self._call = getattr(desc, "_call_fn", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._call(self.net, x) if self._call is not None else self.net(x)


def window_multiple(model: nn.Module) -> int:
    """The attention window a model pads its input to internally (1 when it has none).

    Window models (SwinIR, HAT, OmniSR, DRCT, ATD, Swin2SR...) pad to their window with Python
    arithmetic, which an ONNX trace freezes at the example size: the exported graph then breaks on any
    other size. Padding to the window before the model (the Upscaler does it for every backend) keeps
    that internal padding at zero, so one exported graph runs at every size and all backends agree.
    """
    ws = getattr(model, "window_size", None)
    if isinstance(ws, int) and ws > 1:
        return ws
    if isinstance(ws, (tuple, list)) and ws and all(isinstance(v, int) and v > 0 for v in ws):
        return math.lcm(*ws)
    return 1


# the sub-networks a training checkpoint keeps next to each other, the averaged generator first
_NET_PREFIXES = ("net_g_ema", "model_ema", "ema_model", "ema", "generator", "net_g", "netG", "model", "net")


def _prefixed_nets(state: dict) -> list[dict]:
    """The networks inside a training framework's state dict (Lightning's ``model.``, BasicSR's ``net_g.``, a
    GAN's ``generator.`` next to its ``discriminator.``), each with its prefix stripped, best guess first;
    spandrel strips only ``module.`` and ``netG.``."""
    groups: dict[str, dict] = {}
    for k, v in state.items():
        head, dot, rest = k.partition(".")
        if dot and isinstance(v, torch.Tensor):
            groups.setdefault(head, {})[rest] = v
    known = [p for p in _NET_PREFIXES if p in groups]
    others = sorted((p for p in groups if p not in known and len(groups[p]) > 1), key=lambda p: -len(groups[p]))
    return [groups[p] for p in known + others]


def load_checkpoint(path: str | Path) -> SpandrelModel:
    """A foreign checkpoint as a model with a ``descriptor`` (ForeignModelError for what can't run)."""
    path = Path(path)
    spandrel = _spandrel()
    state = spandrel.canonicalize_state_dict(safe_state_dict(path))
    desc = None
    for cand in [state, *_prefixed_nets(state)]:
        try:
            desc = spandrel.ModelLoader().load_from_state_dict(cand)
            break
        except spandrel.UnsupportedModelError:
            continue
        except (KeyError, RuntimeError, ValueError, AssertionError) as e:
            raise ForeignModelError(f"{path.name}: spandrel could not build the model ({first_line(e)})") from None
    if desc is None:
        raise ForeignModelError(f"{path.name}: spandrel does not recognise this architecture (it knows "
                                f"{len(spandrel.MAIN_REGISTRY)} families; see 'spandrel' on PyPI)")
    arch = desc.architecture.name
    if not isinstance(desc, spandrel.ImageModelDescriptor):
        raise ForeignModelError(f"{path.name} is a {arch} {desc.purpose} model; psr2video runs image upscalers")
    if desc.scale == 1:
        raise ForeignModelError(f"{path.name} is a 1x {arch} model ({desc.purpose}: same-size restoration), not an "
                                "upscaler; psr2video runs 2x, 3x and 4x models")
    if desc.input_channels != 3 or desc.output_channels != 3:
        raise ForeignModelError(f"{path.name} ({arch}) maps {desc.input_channels} to {desc.output_channels} "
                                "channels; psr2video runs RGB (3 -> 3) models")
    net = SpandrelModel(desc).eval()
    req = desc.size_requirements
    multiple = math.lcm(max(1, req.multiple_of), window_multiple(desc.model))
    tiling = desc.tiling.name.lower()
    precisions = ("fp32",) + (("fp16",) if desc.supports_half else ()) + (("bf16",) if desc.supports_bfloat16
                                                                          else ())
    net.descriptor = ModelDescriptor(
        variant=path.stem, scale=int(desc.scale), in_channels=3, out_channels=3, alpha=0.0,
        size_multiple=multiple, min_size=max(1, req.minimum), square=req.square,
        # tiles start on the model's grid: a pixel-unshuffle (Real-ESRGAN x2/x1) or attention window groups
        # other pixels off it, and a tiled frame would differ from the whole one whatever the overlap
        tile_align=multiple,
        tile_overlap=OVERLAP.get(tiling, 16), fused=True, params=sum(p.numel() for p in net.parameters()),
        tiling=tiling, precisions=precisions, arch=arch, source=str(path),
        # window attention (SwinIR, HAT, DAT...) works out the batch with Python arithmetic that an ONNX trace
        # freezes at the example's 1: an exported graph mixed the frames of a batch (up to 0.28 off, silently)
        fixed_batch=1 if window_multiple(desc.model) > 1 else 0)
    return net
