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

import contextlib
import logging
import math
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import first_line
from ..models.registry import ModelDescriptor, training_checkpoint_line
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


# what training scripts save next to the weights (an iteration count as a numpy scalar, argparse's options, an
# OmegaConf config, a loss history array): data, not a model, but torch's weights-only unpickler refuses it
_METADATA = {"argparse": "argparse options", "omegaconf": "an OmegaConf config", "numpy": "numpy values",
             "pathlib": "file paths"}


def _numpy_safe_globals() -> list:
    """The numpy globals a numpy scalar or dtype pickles as (``np.int64(5000)``: ``numpy._core.multiarray.scalar``
    and ``numpy.dtype``, plus the dtype classes): they rebuild a number from its dtype and bytes and call nothing
    else, so they are let through the weights-only unpickler. Arrays (``_reconstruct``) and everything else are
    still refused."""
    out: list = [np.dtype]
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            with warnings.catch_warnings():  # numpy 2 warns that numpy.core is numpy._core
                warnings.simplefilter("ignore")
                out.append(__import__(mod, fromlist=["scalar"]).scalar)
            break
        except (ImportError, AttributeError):
            continue
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        out += [c for n in dir(dtypes) if n.endswith("DType") and isinstance(c := getattr(dtypes, n), type)]
    return out


def _refusal(path: Path, e: Exception) -> str:
    found = re.search(r"GLOBAL ([\w.]+)", str(e)) or re.search(r"global '?([\w.]+)", str(e), re.IGNORECASE)
    if found and (what := _METADATA.get(found.group(1).split(".")[0])):
        return (f"{path.name} holds training metadata ({what}) besides the weights, which psr2video does not "
                "unpickle; re-save only the state dict (with a tool you trust)")
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
        allow = getattr(torch.serialization, "safe_globals", None)  # torch 2.5+
        with allow(_numpy_safe_globals()) if allow else contextlib.nullcontext():  # an iteration count: np.int64
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
        self._structure_key = ""  # load_checkpoint sets it: the key of the verdicts check_onnx may keep
        self.onnx_refusal: str | None = None  # why its ONNX export was refused (an earlier run's check_onnx)
        self.mixes_batch = False  # its ONNX export mixes the frames of a batch (check_onnx found it, now or before)

    def recall_onnx_findings(self, weights_hash: str, cache=None) -> None:
        """What a cached ONNX export of these weights carries (``mark_fixed_batch``): a cache hit runs no check,
        and the verdict files may be gone (another torch/spandrel, a copied engines/ folder, a read-only cache).
        Read from the cache entry's sidecar (``onnx_findings``, kept when the export was); only an entry written
        before that is opened (every Upscaler build loaded each cached export of the weights, however large)."""
        if self.mixes_batch or self.descriptor.fixed_batch or not weights_hash:
            return
        from ..runtime.engine_cache import EngineCache

        cache = cache or EngineCache()
        for e in cache.find("onnx", lambda f: f.get("weights") == weights_hash):
            found = (e.meta or {}).get("found")
            kept = found.get("fixed_batch") if isinstance(found, dict) else None
            if (kept if isinstance(kept, int) else onnx_fixed_batch(e.path)) == 1:
                self.mixes_batch = True
                self.descriptor = self.descriptor.with_(fixed_batch=1)
                return

    def onnx_findings(self) -> dict:
        """What the engine cache keeps beside an export of this module that passed ``check_onnx`` (read back by
        ``recall_onnx_findings`` without opening the file): whether its graph must run one frame per call."""
        return {"fixed_batch": 1 if self.mixes_batch else 0}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._call(self.net, x) if self._call is not None else self.net(x)

    def _refuse(self, name: str, line: str) -> None:
        """Raise the refusal of a graph that does not run at other sizes (the trace froze this architecture's
        shapes: the same for every weight and precision), kept for later loads (``onnx_refusal``). Only such
        structural findings are kept per architecture: a difference in values depends on the weights (and the
        precision) and refuses this export only."""
        from ..runtime.export import ExportError

        save_verdict(self._structure_key, "refused", line.removeprefix(name))  # said with each file's name
        self.onnx_refusal = line
        raise ExportError(line) from None

    def known_difference(self, verdict: str) -> str | None:
        """The refusal of this very export (these weights, precision and versions: ``verdict``, cached_onnx's key)
        that an earlier run's ``check_onnx`` found to differ from PyTorch; None when none was kept. Each ``auto``
        run exported it again (minutes for a large model) only to refuse it and run PyTorch."""
        text = read_verdict(verdict, "differs") if verdict else None
        return f"{Path(self.descriptor.source or self.descriptor.variant).name}{text}" if text else None

    def check_onnx(self, path: Path, precision: str | None = None, verdict: str = "") -> None:
        """Refuse (ExportError, one line) an ONNX export of this module that does not run, or differs from
        PyTorch, at a size other than the one it was traced at; and make the module run one frame per call when
        the export mixes the frames of a batch (Python arithmetic on the batch, frozen at the trace's 1).

        The exporter traces once, at the size the Upscaler pads a 48x48 tile to, batch 1: an architecture that
        works out shapes in Python (DITN's reshapes, RealCUGAN's crop branch, FDAT's windows) gets a graph that
        fails, or silently crops, at every other size. Called by runtime/export.py:cached_onnx after the export,
        before the cache keeps the file (a refused export is never cached). The verdicts are kept beside the
        ONNX probe cache, per architecture and tensor shapes: later loads get ``fixed_batch=1`` from the start,
        and a structural refusal (the graph does not run at another size, or gives another shape) as
        ``onnx_refusal``, which the Upscaler says (or, for ``auto``, runs PyTorch) without exporting again. A
        difference in values (PSNR, NaN) depends on the weights and the precision: it refuses this export only.
        The batch finding is also written into the ONNX file (``mark_fixed_batch``), so a cached graph keeps it
        whatever happens to the verdict files. ``precision``: what the export was asked for (default: read from
        the graph: an fp16 graph with fp32 I/O is fp16). ``verdict``: the key a difference in values is kept
        under for this export alone (``known_difference``).
        """
        try:
            import onnxruntime as ort
        except ImportError as e:  # native TensorRT without onnxruntime: nothing to run the graph with here
            log.warning("%s: the ONNX export is not checked at other sizes (onnxruntime does not import: %s)",
                        self.descriptor.variant, e)
            return

        from ..runtime.export import PSNR_FLOOR, ExportError, prepare

        d = self.descriptor
        name = Path(d.source).name if d.source else d.variant
        eh, ew = d.input_size(48, 48)  # what runtime/export.py:cached_onnx traces at
        h, w = next((s for s in (d.input_size(*c) for c in ((37, 53), (75, 93), (101, 67)))
                     if s[0] != eh and s[1] != ew), d.input_size(75, 93))
        where = f"traced at {ew}x{eh}"
        refuse = f"{name}'s ONNX export does not run at other sizes ({where}"
        onnx = _onnx_module()
        graph = onnx.load(str(path), load_external_data=False)
        int8 = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.graph.node)
        so = ort.SessionOptions()
        so.log_severity_level = 4  # the failures below are ours to say, in one line
        try:
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own types
            raise ExportError(f"{name}'s ONNX export does not load in ONNX Runtime ({first_line(e)}): use "
                              "--backend torch") from None
        inp = sess.get_inputs()[0]
        half = inp.type == "tensor(float16)"
        if precision is None:
            fp16_inside = half or any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.graph.initializer)
            precision = "int8" if int8 else "fp16" if fp16_inside else "fp32"
        n = d.fixed_batch or 2
        x = torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ref = prepare(self)(x).float()
        if not bool(torch.isfinite(ref).all()):  # the weights, not the export: a diverged training snapshot
            raise ExportError(f"{name} outputs NaN/inf in PyTorch too: the checkpoint looks broken")
        ref = ref.clamp(0, 1)

        def run(t: torch.Tensor) -> torch.Tensor:
            y = sess.run(None, {inp.name: t.numpy().astype(np.float16 if half else np.float32)})[0]
            return torch.from_numpy(np.asarray(y, dtype=np.float32))

        try:
            ones = [run(x[i:i + 1]) for i in range(n)] if not d.fixed_batch else [run(x)]
            y = torch.cat(ones)
        except Exception:  # noqa: BLE001 - ONNX Runtime's shape failures (Reshape, Add, Concat...)
            self._refuse(name, f"{refuse}): use --backend torch")
        if y.shape != ref.shape:  # e.g. a branch that crops at some sizes, traced away
            self._refuse(name, f"{refuse}: {w}x{h} gives {y.shape[-1]}x{y.shape[-2]}, not {ref.shape[-1]}x"
                         f"{ref.shape[-2]}): use --backend torch")
        err = float(torch.mean((y.clamp(0, 1).double() - ref.double()) ** 2))
        db = 10 * math.log10(1 / err) if err > 0 else math.inf
        if db < PSNR_FLOOR[precision] or not math.isfinite(float(y.sum())):
            # these weights (and this precision) only: kept for this export, not for the architecture
            line = (f"{name}'s ONNX export differs from PyTorch (PSNR {db:.1f} dB at {w}x{h}, {where}): use "
                    "--backend torch")
            if verdict:
                save_verdict(verdict, "differs", line.removeprefix(name))
            raise ExportError(line)
        if d.fixed_batch:
            if self.mixes_batch:  # found before (a verdict): the graph it describes carries it too
                mark_fixed_batch(path, graph)
            return
        try:
            both = run(x)
        except Exception:  # noqa: BLE001 - a batch the trace froze at 1
            both = None
        tol = 1e-4 if precision == "fp32" else 4e-3
        if both is not None and both.shape == y.shape and float((both - y).abs().max()) <= tol:
            return
        # the graph mixes (or refuses) a batch: every backend runs this model one frame per call from now on
        save_verdict(self._structure_key, "batch1", "its ONNX export mixes the frames of a batch")
        mark_fixed_batch(path, graph)  # with the graph: a cached ONNX keeps it even when the verdict is lost
        self.mixes_batch = True
        self.descriptor = d.with_(fixed_batch=1)
        log.info("%s: its ONNX export mixes the frames of a batch; it runs one frame per call", name)


FIXED_BATCH_KEY = "psr2video.fixed_batch"  # ONNX metadata: the batch the graph must run at (its frames mix)


def mark_fixed_batch(path: Path, graph=None) -> None:
    """Write into the ONNX file at ``path`` that its graph must run one frame per call."""
    onnx = _onnx_module()
    graph = graph if graph is not None else onnx.load(str(path), load_external_data=False)
    if any(p.key == FIXED_BATCH_KEY for p in graph.metadata_props):
        return
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.graph.initializer):
        return  # its weights live beside it: rewriting would drop them; the verdict file still says it
    graph.metadata_props.add(key=FIXED_BATCH_KEY, value="1")
    onnx.save(graph, str(path))


def onnx_fixed_batch(path: Path) -> int:
    """The batch ``mark_fixed_batch`` wrote into an ONNX file (0: none)."""
    try:
        graph = _onnx_module().load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - a damaged file: the cache says so elsewhere
        return 0
    return next((int(p.value) for p in graph.metadata_props if p.key == FIXED_BATCH_KEY and p.value.isdigit()), 0)


def clear_verdicts() -> int:
    """Remove the kept export verdicts (``engine clear``); how many were removed."""
    from .kept import clear_kept

    return clear_kept((".refused", ".batch1", ".differs"))


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


def _onnx_module():
    import onnx

    return onnx


def structure_key(arch: str, state: dict) -> str:
    """What decides how an export of a spandrel model treats a batch: its architecture and tensor shapes (not
    the weights), and the torch and spandrel versions that traced it."""
    import hashlib

    spandrel = _spandrel()
    shapes = ";".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(state.items()) if isinstance(v, torch.Tensor))
    return hashlib.sha256(f"{arch}|{shapes}|{torch.__version__}|{spandrel.__version__}".encode()).hexdigest()


def _verdict_path(key: str, kind: str) -> Path:
    from .kept import kept_path

    return kept_path(key, f".{kind}")


def read_verdict(key: str, kind: str) -> str | None:
    """What an earlier export of this architecture (and tensor shapes) found: ``batch1`` (it mixed the frames of a
    batch) or ``refused`` (it did not run at other sizes: the refusal's line); None when nothing was kept."""
    if not key:
        return None
    try:
        return _verdict_path(key, kind).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def save_verdict(key: str, kind: str, text: str) -> None:
    from ..fileio import write_atomic

    if not key:
        return
    try:
        write_atomic(_verdict_path(key, kind), text + "\n")
    except OSError as e:  # a read-only cache: found again (and said again) at the next export
        log.debug("could not keep the %s verdict: %s", kind, e)


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
    # {"net_g": sd, "net_g_ema": sd}: state dicts as top-level values (spandrel unwraps only a few known keys)
    for k, v in state.items():
        if isinstance(k, str) and k not in groups and isinstance(v, dict) and len(v) > 1 and all(
                isinstance(t, torch.Tensor) for t in v.values()):
            groups[k] = _spandrel().canonicalize_state_dict(v)
    known = [p for p in _NET_PREFIXES if p in groups]
    others = sorted((p for p in groups if p not in known and len(groups[p]) > 1), key=lambda p: -len(groups[p]))
    return [groups[p] for p in known + others]


def load_checkpoint(path: str | Path) -> SpandrelModel:
    """A foreign checkpoint as a model with a ``descriptor`` (ForeignModelError for what can't run)."""
    path = Path(path)
    spandrel = _spandrel()
    raw = safe_state_dict(path)
    state = spandrel.canonicalize_state_dict(raw)
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
        if (ours := training_checkpoint_line(path, raw)) is not None:  # a run's last.pt, given as --model
            raise ForeignModelError(ours)
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
    net._structure_key = key = structure_key(arch, desc.model.state_dict())
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
        # and an architecture whose export mixed a batch before (SpandrelModel.check_onnx found it) too
        fixed_batch=1 if window_multiple(desc.model) > 1 or read_verdict(key, "batch1") else 0)
    # an export of this architecture refused before: the Upscaler says so (auto: runs PyTorch) without exporting
    refused = read_verdict(key, "refused")
    net.onnx_refusal = f"{path.name}{refused}" if refused else None
    net.mixes_batch = bool(read_verdict(key, "batch1"))
    return net
