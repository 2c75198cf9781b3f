"""Any single-image ONNX upscaler as a psr2video model.

The graph itself says what it is: its one input's layout (NCHW or NHWC), channel count, element type
(fp32 / fp16 / bf16) and whether height and width are fixed or free. What the graph can't say (the scale
of a dynamic graph, a size multiple it needs) is measured with a few small probe runs in ONNX Runtime on
the CPU and remembered per file hash. The runners never see the file as it is: ``write_onnx`` rewrites it
into our graph contract (one NCHW input ``input``, one NCHW output ``output``, element type of the
requested precision), so ONNX Runtime, TensorRT, tiling, the video pipeline and VapourSynth need no
special case for it. The rewritten file lives in the engine cache, keyed by the source file's SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import first_line
from ..fileio import sha256_file as file_sha256
from ..fileio import write_atomic
from ..models.registry import ModelDescriptor
from .errors import ForeignModelError

log = logging.getLogger("psr2video.foreign")

REWRITE_VERSION = "onnxfile-2"  # bump when write_onnx changes the bytes it writes (part of the cache key)
PROBE_VERSION = "probe-2"  # bump when probe() measures differently (part of the probe cache's key)
PROBE_BASE = 64  # probe input size: a multiple of every power of two up to 64
# then sizes that are multiples of 3 too (a pixel-unshuffle by 3 or 6), then larger ones (a minimum size)
PROBE_BASES = (PROBE_BASE, 96, 128, 192, 256)
PROBE_MULTIPLES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96)
# a model whose output is 0..255 (not 0..1) gives white frames: refused when its mean on a [0, 1] input is above
OUTPUT_MEAN_LIMIT = 2.0
DEFAULT_OVERLAP = 16  # tile context for a graph whose receptive field we can't know


def _onnx():
    import onnx

    return onnx


def _elem_name(onnx, t: int) -> str:
    return {onnx.TensorProto.FLOAT: "fp32", onnx.TensorProto.FLOAT16: "fp16",
            onnx.TensorProto.BFLOAT16: "bf16"}.get(t, onnx.TensorProto.DataType.Name(t).lower())


def _dims(vi) -> list[int | str]:
    """Dimension values (int) or symbolic names (str; '' when unnamed) of a value_info."""
    out: list[int | str] = []
    for d in vi.type.tensor_type.shape.dim:
        out.append(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else d.dim_param or "")
    return out


@dataclass
class OnnxGraphInfo:
    """What the graph's signature says, before any probe run."""

    input_name: str
    output_name: str
    layout: str  # NCHW | NHWC
    channels: int
    out_channels: int | None
    io_dtype: str  # fp32 | fp16 | bf16
    fixed_hw: tuple[int, int] | None
    batch: int | None  # None: dynamic
    opset: int
    params: int
    notes: list[str] = field(default_factory=list)


def read_graph(path: Path, model=None) -> OnnxGraphInfo:
    """Inspect ``path``'s signature; raises ForeignModelError for graphs psr2video can't run."""
    onnx = _onnx()
    if model is None:
        model = load_proto(path)
    g = model.graph
    if not g.node:  # a 0-byte file parses as an empty model: it "had 0 inputs ()"
        raise ForeignModelError(f"{path.name} is not an ONNX model (empty file?)")
    inits = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise ForeignModelError(f"{path.name} has {len(inputs)} inputs ({names}); psr2video runs single-image "
                                "models with one image input")
    if len(g.output) != 1:
        raise ForeignModelError(f"{path.name} has {len(g.output)} outputs; psr2video runs models with one "
                                "image output")
    vin, vout = inputs[0], g.output[0]
    tin, tout = vin.type.tensor_type.elem_type, vout.type.tensor_type.elem_type
    io = _elem_name(onnx, tin)
    if io not in ("fp32", "fp16", "bf16"):
        raise ForeignModelError(f"{path.name} takes {io} input; psr2video feeds float images (fp32, fp16 or bf16)")
    if _elem_name(onnx, tout) != io:
        raise ForeignModelError(f"{path.name} takes {io} but returns {_elem_name(onnx, tout)}; expected the same "
                                "float type in and out")
    din, dout = _dims(vin), _dims(vout)
    if len(din) != 4:
        raise ForeignModelError(f"{path.name} takes a rank-{len(din)} input {din}; expected an image batch "
                                "(NCHW or NHWC)")
    layout = _layout(din, dout)
    if layout is None:
        raise ForeignModelError(f"{path.name}: can't tell NCHW from NHWC in its input shape {din}")
    c_axis, h_axis, w_axis = (1, 2, 3) if layout == "NCHW" else (3, 1, 2)
    ch = din[c_axis]
    if not isinstance(ch, int):  # a symbolic channel count: fed 3, and the probe runs it 3 -> 3 or refuses it
        ch = 3
    if ch != 3:
        raise ForeignModelError(f"{path.name} takes {ch}-channel images; psr2video feeds RGB (3 channels)")
    och = dout[c_axis] if len(dout) == 4 and isinstance(dout[c_axis], int) else None
    if och is not None and och != 3:
        raise ForeignModelError(f"{path.name} returns {och}-channel images; psr2video needs RGB (3 channels)")
    h, w = din[h_axis], din[w_axis]
    fixed = (h, w) if isinstance(h, int) and isinstance(w, int) else None
    if (fixed is None) != (not isinstance(h, int) and not isinstance(w, int)):
        raise ForeignModelError(f"{path.name} fixes one of height/width but not the other {din}; not supported")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    params = int(sum(int(np.prod(i.dims)) for i in g.initializer))
    batch = din[0] if isinstance(din[0], int) else None
    return OnnxGraphInfo(vin.name, vout.name, layout, ch, och, io, fixed, batch, opset, params)


def _layout(din: list, dout: list) -> str | None:
    """NCHW when the channel axis is 1, NHWC when it is 3 (decided by which axis holds a small constant). A
    symbolic channel axis (``['n', 'c', 'h', 'w']``) is NCHW, the exporters' default, unless the other two
    axes fix the height and width around it (``[n, 64, 64, c]``); the probe then has to run it 3 -> 3."""
    small = (1, 2, 3, 4)
    c1 = isinstance(din[1], int) and din[1] in small
    c3 = isinstance(din[3], int) and din[3] in small
    if c1 and not c3:
        return "NCHW"
    if c3 and not c1:
        return "NHWC"
    if not c1 and not c3:
        if isinstance(din[1], int) and isinstance(din[2], int) and not isinstance(din[3], int):
            return "NHWC"
        return "NCHW"
    if c1 and c3:  # e.g. 1x3x...x3: ask the output (the channel axis keeps its size, the others grow)
        if len(dout) == 4 and dout[1] == din[1] and dout[3] != din[3]:
            return "NCHW"
        if len(dout) == 4 and dout[3] == din[3] and dout[1] != din[1]:
            return "NHWC"
        return "NCHW"
    return None


def _graph_tensors(graph) -> Iterator:
    """Every TensorProto a graph holds (initializers, constant attributes, subgraphs of If/Loop/Scan): any of them
    may live in an external-data file. onnx has this walk only as private API, which may change under us."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _graph_tensors(attr.g)
            for sub in attr.graphs:
                yield from _graph_tensors(sub)


def source_sha256(path: Path) -> str:
    """The file's hash, folded with those of its external-data files (``model.onnx.data``, as torch's dynamo
    exporter writes them): replacing either must rebuild every cached probe, rewrite and engine."""
    digest = file_sha256(path)
    onnx = _onnx()
    try:
        bare = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - unreadable files are reported by load_proto
        return digest
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    locations = sorted({ExternalDataInfo(t).location for t in _graph_tensors(bare.graph) if uses_external_data(t)})
    if not locations:
        return digest
    h = hashlib.sha256(digest.encode())
    for loc in locations:
        f = path.parent / loc
        h.update(f"{loc}:{file_sha256(f) if f.is_file() else 'missing'}".encode())
    return h.hexdigest()


def load_proto(path: Path):
    onnx = _onnx()
    try:
        return onnx.load(str(path))
    except Exception as e:  # protobuf raises DecodeError, onnx raises its own types
        raise ForeignModelError(f"{path.name} is not a readable ONNX file ({first_line(e)})") from None


# ------------------------------------------------------------------------------------------ rewriting
# operators of a quantised graph (QDQ and QOperator formats, ONNX Runtime's contrib forms included)
QUANT_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
                       "QLinearMatMul", "ConvInteger", "MatMulInteger", "QLinearAdd", "QLinearMul",
                       "QLinearSigmoid", "QLinearLeakyRelu", "QLinearConcat", "QLinearAveragePool",
                       "QLinearGlobalAveragePool"})


def is_quantized(model) -> bool:
    """True for a graph with quantisation operators anywhere (subgraphs included)."""
    def walk(g) -> bool:
        for n in g.node:
            if n.op_type in QUANT_OPS:
                return True
            for a in n.attribute:
                if (a.HasField("g") and walk(a.g)) or any(walk(sg) for sg in a.graphs):
                    return True
        return False

    return walk(model.graph)


def _upcast(model) -> None:
    """fp16/bf16 graph -> fp32 in place: initializers, constants, casts and declared types.

    On the CPU ONNX Runtime computes fp16 far slower than fp32 (and some kernels exist only in fp32); a
    caller asking for fp32 gets fp32 compute, not fp32 I/O around a half graph.
    """
    onnx = _onnx()
    from onnx import numpy_helper

    low = (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)

    def fix_tensor(t) -> None:
        if t.data_type in low:
            a = numpy_helper.to_array(t).astype(np.float32)
            t.CopyFrom(numpy_helper.from_array(a, t.name))

    def fix_graph(g) -> None:
        for t in g.initializer:
            fix_tensor(t)
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            if vi.type.tensor_type.elem_type in low:
                vi.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
        for n in g.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.TENSOR:
                    fix_tensor(a.t)
                elif a.type == onnx.AttributeProto.GRAPH:
                    fix_graph(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sg in a.graphs:
                        fix_graph(sg)
                elif a.name in ("to", "dtype") and a.type == onnx.AttributeProto.INT and a.i in low:
                    a.i = onnx.TensorProto.FLOAT

    fix_graph(model.graph)


def _to_fp16(model):
    """fp32 graph -> fp16 (weights, compute and I/O) with ONNX Runtime's converter."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    # with shape inference the converter knows which inputs must stay float (e.g. Resize scales)
    m = convert_float_to_float16(model, keep_io_types=False, disable_shape_infer=False)
    _toposort(m.graph)  # the converter appends the casts it inserts at the end of the node list
    return m


def _toposort(g) -> None:
    """Reorder ``g``'s nodes so each comes after the producers of its inputs (the checker requires it)."""
    ready = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    pending, order = list(g.node), []
    while pending:  # one pass for an ordered graph: a node's outputs are ready for the nodes after it
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                ready.update(n.output)
                order.append(n)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ForeignModelError("the fp16 conversion left a graph with a cycle or a missing input")
        pending = rest
    nodes = [type(n)() for n in order]
    for dst, src in zip(nodes, order, strict=True):
        dst.CopyFrom(src)
    del g.node[:]
    g.node.extend(nodes)


def _rename(g, old: str, new: str) -> None:
    for n in g.node:
        for i, v in enumerate(n.input):
            if v == old:
                n.input[i] = new
        for i, v in enumerate(n.output):
            if v == old:
                n.output[i] = new


def rewrite(model, info: OnnxGraphInfo, precision: str, fixed_hw: tuple[int, int] | None):
    """A copy of ``model`` in our graph contract: NCHW ``input`` -> NCHW ``output`` in ``precision``."""
    onnx = _onnx()
    from onnx import helper

    from ..runtime.export import INPUT_NAME, OUTPUT_NAME

    m = onnx.ModelProto()
    m.CopyFrom(model)
    if precision == "fp32" and info.io_dtype != "fp32":
        _upcast(m)
    elif precision == "fp16" and info.io_dtype == "fp32":
        m = _to_fp16(m)
    elif precision == "fp16" and info.io_dtype == "bf16":
        _upcast(m)
        m = _to_fp16(m)
    g = m.graph
    elem = onnx.TensorProto.FLOAT16 if precision == "fp16" else onnx.TensorProto.FLOAT
    src_in, src_out = "__psr2_src_in", "__psr2_src_out"
    _rename(g, info.input_name, src_in)
    _rename(g, info.output_name, src_out)
    nhwc = info.layout == "NHWC"
    g.node.insert(0, helper.make_node("Transpose", [INPUT_NAME], [src_in], perm=[0, 2, 3, 1]) if nhwc
                  else helper.make_node("Identity", [INPUT_NAME], [src_in]))
    g.node.append(helper.make_node("Transpose", [src_out], [OUTPUT_NAME], perm=[0, 3, 1, 2]) if nhwc
                  else helper.make_node("Identity", [src_out], [OUTPUT_NAME]))
    h, w = fixed_hw if fixed_hw else ("height", "width")
    ho, wo = ("height_out", "width_out") if not fixed_hw else (None, None)
    batch = info.batch or "batch"
    inits = {i.name for i in g.initializer}
    keep = [i for i in g.input if i.name in inits]
    del g.input[:]
    g.input.extend([helper.make_tensor_value_info(INPUT_NAME, elem, [batch, 3, h, w])] + keep)
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info(OUTPUT_NAME, elem, [batch, 3, ho, wo])])
    # stale declared types of the renamed edges would contradict the new precision
    for vi in list(g.value_info):
        if vi.name in (src_in, src_out, info.input_name, info.output_name):
            g.value_info.remove(vi)
    return m


def save_single_file(model, path: Path, name: str = "", precision: str = "fp32") -> None:
    """Write ``model`` to ``path`` and load it back in ONNX Runtime (CPU): a rewrite that does not load (a type
    the converter got wrong) is refused here, before the engine cache renames it into place and marks it ok."""
    onnx = _onnx()
    onnx.save_model(model, str(path), save_as_external_data=False)
    try:
        onnx.checker.check_model(str(path))
        _session(Path(path))
    except Exception as e:  # noqa: BLE001 - the checker and ONNX Runtime raise their own types
        what = name or path.name
        raise ForeignModelError(f"{what}: its {precision} rewrite is not a valid ONNX graph ({first_line(e)})"
                                + ("; use --precision fp32" if precision != "fp32" else "")) from None


# ---------------------------------------------------------------------------------------------- probe
@dataclass
class ProbeResult:
    scale: int
    size_multiple: int
    min_size: int
    out_channels: int


def _session(model: Any):
    """A quiet CPU session on an ONNX model (a proto) or file (a path: loading it, without graph optimisations,
    is the check of a rewrite: types, shapes, kernels)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 4
    if isinstance(model, Path):
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _run(sess, h: int, w: int, batch: int = 1) -> np.ndarray | None:
    x = np.random.default_rng(0).random((batch, 3, h, w), dtype=np.float32)
    try:
        return sess.run(None, {"input": x})[0]
    except Exception:  # ORT raises its own exception types for shape errors inside the graph
        return None


def _try(sess, h: int, w: int, batch: int = 1) -> tuple[int, ...] | None:
    y = _run(sess, h, w, batch)
    return None if y is None else tuple(y.shape)


def probe(name: str, fp32_model, fixed: tuple[int, int] | None, batch: int = 1) -> ProbeResult:
    """Scale, size multiple and minimum size measured by running the fp32 NCHW rewrite on the CPU (with
    ``batch`` images: the graph's fixed batch, 1 for a dynamic one)."""
    sess = _session(fp32_model)
    n = max(1, batch)
    if fixed:
        base = fixed
    else:
        base = next(((s, s) for s in PROBE_BASES if _try(sess, s, s, n) is not None), None)
        if base is None:
            sizes = ", ".join(f"{s}x{s}" for s in PROBE_BASES)
            raise ForeignModelError(f"{name} did not run on {sizes} test inputs in ONNX Runtime; is it an "
                                    "image-to-image model?")
    y = _run(sess, *base, n)
    if y is None:
        raise ForeignModelError(f"{name} did not run on a {base[1]}x{base[0]} input in ONNX Runtime")
    out = tuple(int(v) for v in y.shape)
    if len(out) != 4:  # it ran: a classifier's (1, 8), a feature vector... not a picture
        raise ForeignModelError(f"{name} returns a {out} tensor on a {base[1]}x{base[0]} input, not an image "
                                "(N, 3, H, W); psr2video runs image-to-image models")
    oc, oh, ow = out[1], out[2], out[3]
    if oc != 3:
        raise ForeignModelError(f"{name} returns {oc}-channel images; psr2video needs RGB (3 channels)")
    if oh % base[0] or ow % base[1] or oh // base[0] != ow // base[1]:
        raise ForeignModelError(f"{name} turns {base[1]}x{base[0]} into {ow}x{oh}: not an integer upscale")
    scale = oh // base[0]
    if scale == 1:
        raise ForeignModelError(f"{name} is a 1x model (same-size restoration: denoise, deblock, colour...), not "
                                "an upscaler; psr2video runs 2x, 3x and 4x models")
    if scale < 1:
        raise ForeignModelError(f"{name} shrinks images ({base[1]}x{base[0]} -> {ow}x{oh}); not an upscaler")
    mean = float(np.nanmean(np.asarray(y, dtype=np.float64)))
    if mean > OUTPUT_MEAN_LIMIT:
        raise ForeignModelError(f"{name} seems to output 0..255, not 0..1 (mean {mean:.0f} on a [0, 1] test input); "
                                "psr2video runs models whose input and output are in [0, 1]")
    if fixed:
        return ProbeResult(scale, 1, 1, oc)
    b = base[0]
    for m in (m for m in PROBE_MULTIPLES if b % m == 0):
        h, w = b + m, b + 2 * m
        if _try(sess, h, w, n) == (n, 3, h * scale, w * scale):
            return ProbeResult(scale, m, _min_size(sess, b, m, n) if b > PROBE_BASE else 1, oc)
    return ProbeResult(scale, 128, b, oc)  # runs at 64 and multiples of 64 only: pad to 128 to be safe


def _min_size(sess, base: int, m: int, n: int) -> int:
    """The smallest of a few sizes on ``m``'s grid below ``base`` that the graph runs at (``base`` when none): a
    graph that did not run at 64 because it needs a multiple of 3, not a minimum size, gets no minimum of 96."""
    for s in sorted({-(-x // m) * m for x in (8, 16, 32, 48, 64)}):
        if s < base and _try(sess, s, s, n) is not None:
            return s
    return base


def _probe_cache_path(sha: str) -> Path:
    from .kept import kept_path

    return kept_path(sha, ".json")


def clear_probes() -> int:
    """Remove the kept probe results of ONNX files (``engine clear``); how many were removed."""
    from .kept import clear_kept

    return clear_kept((".json",))


def cached_probe(name: str, sha: str, fp32_model: Callable[[], Any], fixed: tuple[int, int] | None,
                 batch: int = 1) -> ProbeResult:
    """``probe`` once per file (and ONNX Runtime version); later loads read the answer from the cache and
    never build the fp32 rewrite (``fp32_model`` is called only on a miss)."""
    import onnxruntime as ort

    key = hashlib.sha256(f"{sha}:{ort.__version__}:{REWRITE_VERSION}:{PROBE_VERSION}".encode()).hexdigest()
    p = _probe_cache_path(key)
    try:
        return ProbeResult(**json.loads(p.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    r = probe(name, fp32_model(), fixed, batch)
    try:
        write_atomic(p, json.dumps(r.__dict__))
    except OSError as e:  # a read-only cache only costs the probe next time
        log.debug("could not cache the probe of %s: %s", name, e)
    return r


# ---------------------------------------------------------------------------------------------- model
class OnnxFileModel(nn.Module):
    """An ONNX file carried through the Upscaler like any model; only ONNX Runtime and TensorRT run it.

    It holds no torch parameters. ``write_onnx`` and ``onnx_cache_fields`` are what the exporter's cache
    (runtime/export.py:cached_onnx) calls instead of exporting a torch module.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.proto = load_proto(self.path)
        self.sha256 = source_sha256(self.path)
        self.info = read_graph(self.path, self.proto)
        pr = cached_probe(self.path.name, self.sha256,
                          lambda: rewrite(self.proto, self.info, "fp32", self.info.fixed_hw), self.info.fixed_hw,
                          self.info.batch or 1)
        self.scale = pr.scale
        fixed = self.info.fixed_hw
        # a quantised (QDQ / QOperator) graph already says its precision: its scales must stay float32 (ONNX
        # before opset 19 has no fp16 scales), and halving the float parts around its int8 ops buys nothing
        self.quantized = is_quantized(self.proto)
        precisions = ("fp32",) if self.quantized else ("fp32", "fp16")
        kind = f"{self.info.io_dtype}{', int8 QDQ' if self.quantized else ''}"
        self.descriptor = ModelDescriptor(
            variant=self.path.stem, scale=pr.scale, in_channels=3, out_channels=3, alpha=0.0,
            size_multiple=pr.size_multiple, min_size=pr.min_size, tile_overlap=DEFAULT_OVERLAP,
            # tiles start on the graph's size grid (a pixel-unshuffle by 4 sees other pixel groups off it)
            tile_align=max(1, pr.size_multiple),
            fused=True, params=self.info.params, fixed_size=fixed, fixed_batch=self.info.batch or 0,
            precisions=precisions, backends=("onnxruntime", "tensorrt"), arch=f"ONNX ({kind}, "
            f"{self.info.layout}{', ' + 'x'.join(map(str, fixed)) if fixed else ''})", source=str(self.path),
            source_sha256=self.sha256, layout=self.info.layout, io_dtype=self.info.io_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(f"{self.path.name} is an ONNX graph: it runs on the onnxruntime or tensorrt backend")

    def onnx_cache_fields(self, precision: str, **_) -> dict:
        """The engine cache key of the rewritten file: source hash, precision, rewrite version, tools."""
        import onnx

        return {"variant": self.descriptor.variant, "scale": self.scale, "precision": precision,
                "source_sha256": self.sha256, "rewrite": REWRITE_VERSION, "onnx": onnx.__version__}

    def onnx_findings(self) -> dict:
        """What the engine cache keeps beside the rewrite (``engine list`` shows its opset)."""
        return {"opset": self.info.opset}

    def write_onnx(self, path: Path, precision: str) -> None:
        """Our graph contract in ``precision`` (fp32 or fp16) written to ``path`` as a single file."""
        if precision not in self.descriptor.precisions:
            raise ForeignModelError(f"{self.path.name} ({self.descriptor.arch}) runs in "
                                    f"{' or '.join(self.descriptor.precisions)}, not {precision}")
        save_single_file(rewrite(self.proto, self.info, precision, self.info.fixed_hw), path, self.path.name,
                         precision)
