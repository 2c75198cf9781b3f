"""What machine a figure was measured on: one helper for every benchmark and the engine cache key."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    """The CPU model (ORT CPU optimised models are specific to the instruction set they were made on)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: Any = None) -> dict:
    """CPU, cores, load, library versions and the GPU, as a dict for JSON results: the machine as the figures
    were measured on it, so the GPU only where the run used it (``device`` None or "auto": the GPU where there is
    one; a CPU device on a CUDA host: "GPU not used (--device cpu)", where the GPU, or 'no CUDA', was said)."""
    import torch

    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu_name(),
                            "cpu_count": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
                            "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    try:
        info["load"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    for mod in ("onnxruntime", "av", "vapoursynth"):
        try:
            m = __import__(mod)
        except ImportError:
            continue
        info[mod] = str(getattr(m, "__version__", "?"))
    dev = None if device is None or str(device) == "auto" else torch.device(device)
    if torch.cuda.is_available() and (dev is None or dev.type == "cuda"):
        p = torch.cuda.get_device_properties(dev if dev is not None and dev.index is not None else 0)
        info["gpu"] = f"{p.name} (cc {p.major}.{p.minor}, {p.total_memory / 2**30:.0f} GiB)"
    elif dev is not None and dev.type == "cpu" and torch.cuda.is_available():
        info["gpu"] = "GPU not used (--device cpu)"
    return info


def describe(info: dict | None = None) -> str:
    """One line for a benchmark's ``machine:`` header."""
    i = info or machine_info()
    parts = [f"{i['cpu']} ({i['cpu_count']} cores, {i['usable_cores']} usable, torch threads {i['torch_threads']})"]
    if "load" in i:
        parts.append("load {:.2f} {:.2f} {:.2f}".format(*i["load"]))
    parts.append(i.get("gpu", "no CUDA"))
    libs = [f"Python {i['python']}", f"torch {i['torch']}"] + [f"{k} {i[k]}" for k in ("onnxruntime", "av",
                                                                                       "vapoursynth") if k in i]
    return "; ".join(parts) + "; " + ", ".join(libs)
