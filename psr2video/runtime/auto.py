"""``--backend auto``: the fastest backend that really works on a device, with the reason for the choice.

CUDA: native TensorRT when it imports and creates a runtime (a package that merely exists is not enough:
a missing ``libnvinfer`` or a driver mismatch only shows when it loads), else ONNX Runtime with a GPU
provider that a real session accepted (``onnxruntime-gpu`` lists its providers even when their CUDA
libraries are missing), else PyTorch. CPU: ONNX Runtime, measured faster than PyTorch eager on the CPU
for every model here (2-core x86: realtime x2 at 320x180 117 ms vs 546 ms, stream 1.04 s vs 2.73 s),
falling back to PyTorch when onnxruntime is missing.

No global state: ``resolve`` returns (config, reason) and the ``Upscaler`` keeps both. This module sits
above ``backends`` (configs only) and below ``upscaler``, so nothing imports in a circle.
"""

from __future__ import annotations

import functools
import logging

import torch

from ..errors import first_line
from .backends import BackendConfig, ORTBackend, TorchBackend, TRTBackend, parse_backend

log = logging.getLogger("psr2video.runtime")


def probe_tensorrt() -> tuple[bool, str]:
    """(True, "TensorRT X") when ``tensorrt`` imports and creates a runtime, else (False, why)."""
    from .trt_backend import trt_available

    return trt_available()


@functools.cache
def _ort_gpu_probe(provider: str, index: int) -> tuple[bool, str]:
    """Create a one-node session on ``provider`` and check ONNX Runtime kept it (it falls back silently)."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError as e:
        return False, f"onnxruntime does not import ({first_line(e, with_type=True)})"
    if provider not in ort.get_available_providers():
        return False, f"{provider} is not in this onnxruntime build"
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    so = ort.SessionOptions()
    so.log_severity_level = 4
    try:
        s = ort.InferenceSession(model.SerializeToString(),
                                 so, providers=[(provider, {"device_id": index}), "CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - any failure means "not usable here"
        return False, f"{provider} failed to start ({first_line(e, with_type=True)})"
    if provider not in s.get_providers():
        return False, f"{provider} could not load its libraries (ONNX Runtime fell back to the CPU)"
    return True, provider


def ort_gpu_provider(device: torch.device) -> tuple[str | None, str]:
    """The best ONNX Runtime GPU provider that really starts on ``device``: ("tensorrt"|"cuda"|None, why)."""
    index = device.index if device.index is not None else 0
    why = []
    ok, msg = _ort_gpu_probe("TensorrtExecutionProvider", index)
    if ok:
        from .ort_backend import tensorrt_ep_matches

        match, reason = tensorrt_ep_matches()
        if match:
            return "tensorrt", "onnxruntime-gpu with its TensorRT provider"
        why.append(reason)
    else:
        why.append(msg)
    ok, msg = _ort_gpu_probe("CUDAExecutionProvider", index)
    if ok:
        return "cuda", "onnxruntime-gpu with its CUDA provider" + (f" ({why[0]})" if why else "")
    why.append(msg)
    return None, "; ".join(why)


def _has_ort_cpu() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CPUExecutionProvider" in ort.get_available_providers()


def choose(device: torch.device) -> tuple[BackendConfig, str]:
    """(config, reason) for ``device``: the fastest backend that passed a real probe."""
    device = torch.device(device)
    if device.type == "cuda":
        ok, trt_why = probe_tensorrt()
        if ok:
            return TRTBackend(), f"{trt_why} works: native TensorRT engines are the fastest on NVIDIA GPUs"
        provider, ort_why = ort_gpu_provider(device)
        if provider is not None:
            return ORTBackend(provider=provider), f"{ort_why}; no native TensorRT ({trt_why})"
        return TorchBackend(), f"PyTorch on CUDA: no native TensorRT ({trt_why}), no ONNX Runtime GPU ({ort_why})"
    if _has_ort_cpu():
        return ORTBackend(provider="cpu"), "ONNX Runtime is 2-5x faster than PyTorch eager on the CPU (measured)"
    return TorchBackend(), "onnxruntime is not installed: PyTorch on the CPU"


def resolve_auto(device: torch.device) -> tuple[BackendConfig, str]:
    """Resolve ``--backend auto`` for ``device`` and log the choice with its reason."""
    config, reason = choose(device)
    log.info("backend auto -> %s on %s: %s", config.name, torch.device(device).type, reason)
    return config, reason


def resolve(backend: str | BackendConfig, device: torch.device,
            precision: str | None = None) -> tuple[BackendConfig, str]:
    """The config for a CLI/API ``backend`` on ``device`` (and an explicit ``precision``) and why."""
    cfg = parse_backend(backend)
    if cfg == "auto":
        if precision == "bf16":  # only PyTorch computes in bf16
            log.info("backend auto -> torch: bf16 was asked for and only PyTorch runs it")
            return TorchBackend(), "bf16 was asked for: only PyTorch runs it"
        return resolve_auto(device)
    return cfg, "asked for"


_HINTS = (": use --backend torch", "; use --backend torch", "; try --backend torch")


def without_torch_hint(line: str) -> tuple[str, bool]:
    """``line`` without its closing "use --backend torch" (what the Upscaler says of an export it can't use),
    and whether it had one: ``export`` and ``engine build`` have no --backend, and auto runs PyTorch itself."""
    for hint in _HINTS:
        if line.endswith(hint):
            return line.removesuffix(hint), True
    return line, False


def pytorch_only(line: str, what: str) -> str:
    """The line ``export`` / ``engine build`` say for a model whose ONNX export can't be used (``line``, with or
    without the Upscaler's hint): it runs on PyTorch only, and there is nothing to export or prebuild."""
    return f"{without_torch_hint(line)[0]}; it runs only on PyTorch (upscale --backend torch): nothing to {what}"


def short_line(line: str, limit: int = 160) -> str:
    """``line`` cut to ``limit`` characters, ending "..." where it was cut."""
    return line if len(line) <= limit else line[:limit - 3].rstrip() + "..."


def export_error_line(error: BaseException, limit: int = 160) -> str:
    """The torch exporter's error in one short line: its first line runs on with the IR node it failed at
    (``[Caused by the value '74 defined in (%74 : Float(...) = onnx::Slice(...), scope: ...``)."""
    return short_line(first_line(error).split(" [Caused by", 1)[0].strip(), limit)


def export_fallback(descriptor, reason: str, error: BaseException, precision: str | None = None,
                    device_type: str = "cpu") -> tuple[BackendConfig, str] | None:
    """``auto`` picked ONNX Runtime or TensorRT for a foreign checkpoint (a module PyTorch runs) whose ONNX export
    failed or was refused (SpandrelModel.check_onnx: it does not run at other sizes): (TorchBackend(), why), said
    in one note line (the returned reason only points at it: a video run prints it too). None when the backend
    was asked for, or the model can't run on PyTorch: the error stands. ``precision`` fp16 asked for on the CPU,
    which PyTorch does not run there (as ``--backend torch`` says): refused in one line, without the note.
    """
    if reason == "asked for" or not descriptor.source or "torch" not in descriptor.backends:
        return None
    from pathlib import Path

    from ..errors import PsrError, SettingError

    if isinstance(error, PsrError):  # our refusal (check_onnx): already one line naming the file
        why = without_torch_hint(first_line(error))[0]
    else:
        why = f"{Path(descriptor.source).name} can't be exported to ONNX ({export_error_line(error)})"
    if precision == "fp16" and device_type != "cuda":
        raise SettingError(f"{why}, and PyTorch, which would run it instead, needs a CUDA device for fp16; on the "
                           "CPU use --precision fp32 or bf16")
    log.warning("note: %s; running it on PyTorch (backend auto)", why)
    return TorchBackend(), "its ONNX export can't be used (the note above)"
