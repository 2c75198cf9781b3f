"""PyTorch runner: eager on CPU or CUDA, fp32/fp16/bf16, channels_last, torch.compile, CUDA graphs."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import SettingError
from ..models.registry import ModelDescriptor
from .backends import TorchBackend

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchRunner:
    name = "torch"

    def __init__(self, config: TorchBackend, model: nn.Module, descriptor: ModelDescriptor, precision: str,
                 device: torch.device) -> None:
        if precision not in DTYPES:
            raise SettingError(f"the torch backend runs fp32, fp16 or bf16, not {precision} "
                             "(int8 needs --backend onnxruntime or tensorrt)")
        if precision == "fp16" and device.type == "cpu":
            raise SettingError("fp16 needs a CUDA device; on the CPU use fp32 or bf16")
        self.config, self.device, self.compute_dtype = config, device, DTYPES[precision]
        # what to feed: float32 for models that keep their base path float32 (they cast the rest inside)
        self.dtype = torch.float32 if descriptor.float_base else self.compute_dtype
        self.descriptor = descriptor
        self.memory_format = (torch.channels_last if config.channels_last and device.type == "cuda"
                              else torch.contiguous_format)
        # Module.to converts in place: a model that must change device or dtype is copied first, so the caller's
        # model (and another Upscaler sharing it in another precision) is never changed under them
        first = next(model.parameters(), None)
        if first is not None and (first.device != device or first.dtype != self.compute_dtype):
            model = copy.deepcopy(model)
            for p in model.parameters():
                p.requires_grad_(False)
        model = model.eval().to(device=device, dtype=self.compute_dtype, memory_format=self.memory_format)
        self.model = model
        self.fn = torch.compile(model, dynamic=True) if config.compile else model
        self._graphs: dict[tuple, tuple] = {}
        if config.cuda_graphs and device.type != "cuda":
            raise SettingError("CUDA graphs need a CUDA device")

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(device=self.device, dtype=self.dtype, memory_format=self.memory_format, non_blocking=True)
        if self.config.cuda_graphs:
            return self._replay(x)
        return self.fn(x)

    def _replay(self, x: torch.Tensor) -> torch.Tensor:
        """Capture one graph per input shape on first sight, then copy in, replay, hand out a clone.

        Capture and replay run under ``torch.cuda.device(self.device)``: ``torch.cuda.graph`` captures on a
        stream of the *current* device and ``replay`` launches on the current stream, so on ``cuda:1`` with
        GPU 0 current the graph would never see the copied-in frame.
        """
        with torch.cuda.device(self.device):
            return self._replay_here(x)

    def _replay_here(self, x: torch.Tensor) -> torch.Tensor:
        key = tuple(x.shape)
        if key not in self._graphs:
            static_in = x.clone()
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(2):  # warm up allocations outside the capture
                    self.fn(static_in)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=stream):  # the class default stream lives on one device
                static_out = self.fn(static_in)
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out.clone()
