"""ONNX Runtime runner: CPU, CUDA or TensorRT execution provider, torch tensors in and out.

The model is exported once into the engine cache (``export.cached_onnx``). On the CPU the session's
fully optimised graph is cached too (keyed by the ONNX Runtime version and the CPU model, since the
saved layout-optimised graph is specific to both) and later sessions load it without re-optimising.
On CUDA, inputs and outputs stay on the GPU through IO binding on the torch tensors' memory.

One ONNX Runtime package per environment: ``onnxruntime`` (CPU) or ``onnxruntime-gpu``, never both (the
CPU package's files shadow the GPU one's and its CUDA provider disappears). ONNX Runtime drops a provider
whose libraries fail to load and carries on with the CPU; the session's providers are checked after
creation, so that case is one clear line instead of a failure later in IO binding. Its TensorRT provider
is used only when the installed TensorRT has the major version it was linked against (onnxruntime-gpu
1.31 links ``libnvinfer.so.10``; the ``tensorrt`` package on PyPI is 11.x).
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import SettingError
from ..machine import cpu_name
from ..models.registry import ModelDescriptor
from .backends import ORTBackend
from .engine_cache import EngineCache
from .export import cached_onnx

log = logging.getLogger("psr2video.ort")

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider"}
NP_DTYPES = {torch.float32: np.float32, torch.float16: np.float16}
ORT_DTYPES = {"tensor(float)": torch.float32, "tensor(float16)": torch.float16}


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


@functools.cache
def tensorrt_ep_major() -> int | None:
    """The TensorRT major version ONNX Runtime's TensorRT provider library links (``libnvinfer.so.N``)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    lib = Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_tensorrt.so"
    if not lib.is_file():
        return None
    m = re.search(rb"libnvinfer\.so\.(\d+)", lib.read_bytes())
    return int(m.group(1)) if m else None


def installed_tensorrt_major() -> int | None:
    """Major version of the installed TensorRT libraries (pip ``tensorrt``/``tensorrt-cuNN-libs``), if any."""
    for dist in ("tensorrt", "tensorrt-cu12-libs", "tensorrt-cu13-libs", "tensorrt-libs"):
        try:
            return int(importlib.metadata.version(dist).split(".")[0])
        except (importlib.metadata.PackageNotFoundError, ValueError):
            continue
    return None


def tensorrt_ep_matches() -> tuple[bool, str]:
    """(True, "") when ONNX Runtime's TensorRT provider can load the installed TensorRT, else (False, why)."""
    want, have = tensorrt_ep_major(), installed_tensorrt_major()
    if want is None:
        return False, "this onnxruntime has no TensorRT provider library"
    if have is None:
        return False, f"its TensorRT provider needs TensorRT {want}.x, which is not installed"
    if have != want:
        return False, f"its TensorRT provider needs TensorRT {want}.x but {have}.x is installed"
    return True, ""


def choose_providers(provider: str, device: torch.device) -> list[str]:
    """Provider list for ``device``: ``auto`` = the best installed (TensorRT > CUDA > CPU on a GPU)."""
    have = available_providers()
    provider = provider.lower()
    if device.type == "cpu":
        if provider not in ("auto", "cpu"):
            raise SettingError(f"ONNX Runtime provider {provider!r} needs --device cuda")
        return ["CPUExecutionProvider"]
    if provider == "auto":
        chosen = [p for p in (PROVIDERS["tensorrt"], PROVIDERS["cuda"]) if p in have]
        if PROVIDERS["tensorrt"] in chosen and not tensorrt_ep_matches()[0]:
            chosen.remove(PROVIDERS["tensorrt"])
        if not chosen:
            raise SettingError("onnxruntime has no GPU provider here (install onnxruntime-gpu) ; "
                             "use --backend torch or --device cpu")
        return chosen + ["CPUExecutionProvider"]
    if provider not in PROVIDERS:
        raise SettingError(f"unknown ONNX Runtime provider {provider!r}; choose auto, cpu, cuda or tensorrt")
    if PROVIDERS[provider] not in have:
        raise SettingError(f"ONNX Runtime provider {PROVIDERS[provider]} is not installed "
                         f"(available: {', '.join(have)})")
    if provider == "tensorrt":
        ok, why = tensorrt_ep_matches()
        if not ok:
            raise SettingError(f"ONNX Runtime's TensorRT provider can't run here: {why}; use --backend tensorrt "
                             "(native) or the cuda provider")
    return [PROVIDERS[provider]] + (["CUDAExecutionProvider"] if provider == "tensorrt" else []) + [
        "CPUExecutionProvider"]


class ORTRunner:
    name = "onnxruntime"

    def __init__(self, config: ORTBackend, model: nn.Module, descriptor: ModelDescriptor, precision: str,
                 device: torch.device, cache: EngineCache | None = None, calibration: str | Path | None = None,
                 echo=None) -> None:
        import onnxruntime as ort

        if precision not in ("fp32", "fp16", "int8"):
            raise SettingError(f"the onnxruntime backend runs fp32, fp16 or int8, not {precision}")
        self.config, self.device, self.descriptor, self.precision = config, device, descriptor, precision
        self.cache = cache or EngineCache()
        self.providers = choose_providers(config.provider, device)
        self.provider = self.providers[0]
        self.onnx_path = cached_onnx(model, descriptor, precision, self.cache, fp16_io=True,
                                     calibration=calibration, echo=echo)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if config.threads:
            so.intra_op_num_threads = config.threads
        if not config.spin:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if self.provider == "CPUExecutionProvider":
            self.model_path = self._cpu_optimised(ort, echo)
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            self.session = ort.InferenceSession(str(self.model_path), so, providers=self.providers)
        else:
            self.model_path = self.onnx_path
            self.session = ort.InferenceSession(str(self.onnx_path), so,
                                                providers=self._provider_options(self.providers))
        self._check_providers()
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        # the file decides: fp16 files of float_base models take and give float32
        self.dtype = ORT_DTYPES[self.session.get_inputs()[0].type]
        self.out_dtype = ORT_DTYPES[self.session.get_outputs()[0].type]
        self._ready = torch.cuda.Event(blocking=True) if device.type == "cuda" else None
        self.scale = descriptor.scale

    def __repr__(self) -> str:
        return f"ORTRunner({self.descriptor.variant} x{self.scale} {self.precision}, {self.provider})"

    def _check_providers(self) -> None:
        """ONNX Runtime drops a provider that fails to load and runs on the CPU: say so now, in one line."""
        active = list(self.session.get_providers())
        if self.device.type != "cuda" or self.provider in active:
            return
        gpu = [p for p in self.providers if p != "CPUExecutionProvider" and p in active]
        if gpu and self.config.provider != "auto":  # a pinned provider (onnxruntime-tensorrt) never falls back
            raise SettingError(f"ONNX Runtime: {self.provider} did not start (its libraries did not load); "
                             f"use --backend onnxruntime to let it fall back to {gpu[0]}")
        if not gpu:
            import onnxruntime as ort

            raise SettingError(f"ONNX Runtime fell back to the CPU: {self.provider} did not start (onnxruntime "
                             f"{ort.__version__} could not load its CUDA/cuDNN/TensorRT libraries); install the "
                             "CUDA libraries it was built for, or use --backend torch")
        log.warning("ONNX Runtime: %s did not start; running on %s", self.provider, gpu[0])
        self.provider = gpu[0]

    # artifacts ---------------------------------------------------------------------------------------
    def _cpu_optimised(self, ort, echo) -> Path:
        """The fully optimised CPU graph, saved once per ONNX file, ORT version and CPU model."""
        meta = self.cache.check(self.onnx_path, full_hash=False).meta or {}
        fields = {**meta.get("fields", {}), "ort": ort.__version__, "provider": "cpu", "cpu": cpu_name()}

        def build(tmp: Path) -> None:
            so = ort.SessionOptions()
            so.log_severity_level = 3
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.optimized_model_filepath = str(tmp)
            ort.InferenceSession(str(self.onnx_path), so, providers=["CPUExecutionProvider"])

        return self.cache.get_or_build(fields, "ort-cpu", ".onnx", build, describe="ONNX Runtime CPU graph",
                                       echo=echo)

    def _provider_options(self, providers: list[str]) -> list:
        idx = self.device.index if self.device.index is not None else torch.cuda.current_device()
        out: list = []
        for p in providers:
            if p == "TensorrtExecutionProvider":
                trt_dir = self.cache.dir / "ort-tensorrt"
                trt_dir.mkdir(parents=True, exist_ok=True)
                out.append((p, {"device_id": idx, "trt_engine_cache_enable": True,
                                "trt_engine_cache_path": str(trt_dir), "trt_timing_cache_enable": True,
                                "trt_timing_cache_path": str(trt_dir),
                                "trt_fp16_enable": self.precision == "fp16",
                                "trt_int8_enable": self.precision == "int8"}))
            elif p == "CUDAExecutionProvider":
                out.append((p, {"device_id": idx}))
            else:
                out.append(p)
        return out

    # running -----------------------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().to(device=self.device, dtype=self.dtype).contiguous()  # ONNX Runtime takes no autograd
        if self.device.type == "cuda":
            return self._run_bound(x)
        y = self.session.run([self.output_name], {self.input_name: x.numpy()})[0]
        return torch.from_numpy(y)

    def _run_bound(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = torch.empty((n, self.descriptor.out_channels, h * self.scale, w * self.scale), dtype=self.out_dtype,
                        device=self.device)
        idx = self.device.index if self.device.index is not None else torch.cuda.current_device()
        b = self.session.io_binding()
        b.bind_input(self.input_name, "cuda", idx, NP_DTYPES[self.dtype], tuple(x.shape), x.data_ptr())
        b.bind_output(self.output_name, "cuda", idx, NP_DTYPES[self.out_dtype], tuple(y.shape), y.data_ptr())
        # x is ready before ORT's stream reads it; the wait sleeps (one event, reused: it is waited on here)
        self._ready.record(torch.cuda.current_stream(self.device))
        self._ready.synchronize()
        self.session.run_with_iobinding(b)  # returns once the output is written
        return y
