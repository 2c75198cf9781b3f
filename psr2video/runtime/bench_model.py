"""``psr2video bench model``: model-only speed next to Real-ESRGAN Compact peers and plain resamplers.

Every entry runs through the same ``Upscaler`` path, backend and precision after a warm-up; speed does
not depend on the weights, so ParagonSR2 variants and peers run untrained (random) weights. The timed
runs go round-robin over the models (fair under varying background load). Peak memory is sampled while
a model loads and runs its warm-up: process RSS on the CPU, device memory in use on CUDA, both above the
level measured before the model was loaded. A throwaway model (a small conv net, on a tiny frame) goes through the
backend first, so its one-time set-up (ONNX Runtime's and the exporter's imports, its first session) is charged to no
entry: it was charged to whichever ran first, ours (realtime first 19.4 MiB, second 3.9).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path

import torch

from ..names import BASELINES
from .backends import backend_label
from .peers import PEER_LABELS, PEERS

TARGETS = {"realtime": ("superultracompact", 1.5), "stream": ("ultracompact", 1.5)}


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _mem_now(device: torch.device) -> int:
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return total - free
    return _rss_bytes()


class _PeakSampler:
    """Samples memory in use every few milliseconds on a thread; ``peak`` is the maximum seen."""

    def __init__(self, device: torch.device, period: float = 0.005) -> None:
        self.device, self.period, self.peak = device, period, _mem_now(device)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _mem_now(self.device))
            time.sleep(self.period)

    def __enter__(self) -> _PeakSampler:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _mem_now(self.device))


def is_model_file(name: str) -> bool:
    """A bench entry naming a model file (``bench model --model FILE``) rather than a variant or peer."""
    from ..foreign import MODEL_EXTS

    return Path(name).suffix.lower() in MODEL_EXTS


def build_entry(name: str, scale: int, seed: int = 0):
    """(model, label, kind) for a variant, a peer, a baseline or a model file (its own weights and scale)."""
    from ..models.registry import build_model
    from .peers import build_peer

    if is_model_file(name):
        from ..foreign import load_model_file

        net = load_model_file(name)
        d = net.descriptor
        return net, f"{Path(name).name} ({d.arch.split(' (')[0]} x{d.scale})", "file"
    if name in PEERS:
        return build_peer(name, scale, seed), PEER_LABELS[name], "peer"
    torch.manual_seed(seed)
    net = build_model(name, scale)
    kind = "baseline" if name in BASELINES else "psr2video"
    return net, (name if kind == "psr2video" else {"mks": "Magic Kernel Sharp 2021", "bicubic": "bicubic"}[name]), kind


def backend_config(backend: str, threads: int = 0):
    """``backend`` as given to the Upscaler: ONNX Runtime with ``threads`` intra-op threads where asked (torch's
    thread count does not reach its sessions), else the name as it is."""
    import dataclasses

    from .backends import ORTBackend, parse_backend

    cfg = parse_backend(backend)
    return dataclasses.replace(cfg, threads=threads) if threads and isinstance(cfg, ORTBackend) else backend


def time_entries(names: list[str], scale: int, backend: str, precision: str | None, device: torch.device,
                 size: tuple[int, int], batch: int, warmup: int, iters: int, min_seconds: float = 0.0,
                 echo=None, tile: int = 0, threads: int = 0) -> list[dict]:
    """Time every entry; returns result rows (ms/frame = median over ``iters`` timed runs / batch).

    Each model is loaded and run once on its own to measure its peak memory; the timed runs then go
    round-robin over all models, so a change in background load on a shared machine hits every model
    alike and the ratios between them stay meaningful. ``threads``: ONNX Runtime's intra-op threads (0: its own).
    """
    from .upscaler import Upscaler

    w, h = size
    backend = backend_config(backend, threads)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for name in names:  # a fixed-size graph that can't take --size whole: said before any entry loads or warms up
        if is_model_file(name):
            net, _, _ = build_entry(name, scale)
            if net.descriptor.fixed_size:
                Upscaler(name, net.descriptor.scale, model=net, backend=backend, precision=precision, device=device,
                         clamp=False, tile=tile).check_size(h, w)
    _throwaway(Upscaler, scale, backend, precision, device, tile)
    entries = []
    for name in names:
        net, label, kind = build_entry(name, scale)
        base = _mem_now(device)
        with _PeakSampler(device) as mem:
            up = Upscaler(name, net.descriptor.scale, model=net, backend=backend, precision=precision, device=device,
                          clamp=False, tile=tile)
            up.check_size(h, w)  # a fixed-size graph: said before timing
            x = torch.rand(batch, 3, h, w, device=device).to(up.dtype)
            for _ in range(max(1, warmup)):
                up(x)
            sync()
        entries.append({"name": name, "label": label, "kind": kind, "up": up, "x": x, "times": [],
                        "peak": max(0, mem.peak - base)})
        if echo:
            echo(f"  loaded {label}")
    t_start = time.perf_counter()
    while min(len(e["times"]) for e in entries) < iters or (time.perf_counter() - t_start) < min_seconds:
        for e in entries:
            t0 = time.perf_counter()
            e["up"](e["x"])
            sync()
            e["times"].append(time.perf_counter() - t0)
    rows = []
    for e in entries:
        up, times = e["up"], e["times"]
        ms = statistics.median(times) * 1000 / batch
        params = up.descriptor.params or sum(p.numel() for p in up.model.parameters())  # ONNX files: no torch params
        rows.append({"name": e["name"], "label": e["label"], "kind": e["kind"], "params": params,
                     "backend": backend_label(up.backend), "provider": getattr(up.runner, "provider", None),
                     "precision": up.precision, "scale": up.scale, "input": f"{w}x{h}",
                     "output": f"{w * up.scale}x{h * up.scale}", "batch": batch, "tile": tile, "iters": len(times),
                     "ms_per_frame": round(ms, 3), "fps": round(1000 / ms, 2),
                     "ms_min": round(min(times) * 1000 / batch, 3), "peak_mem_mib": round(e["peak"] / 2**20, 1)})
    return rows


def _throwaway(upscaler_class, scale: int, backend, precision: str | None, device: torch.device, tile: int) -> None:
    """A small conv model (SuperUltraCompact, weights of its own: not a row's cached export) through the backend
    once, on a tiny frame, measured by nobody: the backend's one-time set-up (imports, the first session, its
    kernels and thread pools) lands here, not in the first entry's peak (bicubic left 6.5 vs 3.9 MiB)."""
    from .peers import build_peer

    try:
        up = upscaler_class("superultracompact", scale, model=build_peer("superultracompact", scale, 1),
                            backend=backend, precision=precision, device=device, clamp=False, tile=tile)
        up(torch.rand(1, 3, 16, 16, device=device).to(up.dtype))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except Exception:  # noqa: BLE001 - a warm-up only: a backend that can't run it fails on the entries, said there
        return


def format_table(rows: list[dict]) -> str:
    ref = {r["name"]: r["fps"] for r in rows}
    sup = ref.get("superultracompact")
    lw = max([30] + [len(r["label"]) for r in rows])
    bw = max([12] + [len(r["backend"]) for r in rows])
    head = (f"{'model':<{lw}} {'params':>9} {'backend':<{bw}} {'prec':<5} {'input':>9} {'ms/frame':>9} {'fps':>8} "
            f"{'peak MiB':>9} {'vs SUC':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        rel = f"{r['fps'] / sup:6.2f}x" if sup else "      -"
        lines.append(f"{r['label']:<{lw}} {r['params']:>9,} {r['backend']:<{bw}} {r['precision']:<5} {r['input']:>9} "
                     f"{r['ms_per_frame']:>9.2f} {r['fps']:>8.2f} {r['peak_mem_mib']:>9.1f} {rel:>7}")
    return "\n".join(lines)


def target_lines(rows: list[dict]) -> list[str]:
    fps = {r["name"]: r["fps"] for r in rows}
    out = []
    for ours, (peer, ratio) in TARGETS.items():
        if ours in fps and peer in fps:
            got = fps[ours] / fps[peer]
            out.append(f"{ours} / {PEER_LABELS[peer]}: {got:.2f}x (target >= {ratio}x: "
                       f"{'met' if got >= ratio else 'NOT met'})")
    return out
