"""The trainer: config -> model, data, losses (optionally a MUNet + R3GAN stage) -> EMA weights.

One loop serves the fidelity stage (L1/Charbonnier + MS-SSIM + FFT) and the GAN stage (set ``[gan]
enabled = true``). Checkpoints hold model, EMA, optimiser(s) and step; they are written with
``torch.save`` and read back with ``torch.load(weights_only=True)`` (plain tensors and numbers, no
pickled code). Batches depend only on ``(seed, step)``, so a resumed run continues the same loss curve.
"""

from __future__ import annotations

import copy
import json
import math
import shlex
import signal
import sys
import threading
import time
import tomllib
from pathlib import Path

import torch
from torch import nn

from ..errors import PsrError
from ..fileio import atomic_path
from ..models import build_model, save_weights
from .data import PatchSampler, Prefetcher, load_images
from .losses import CombinedLoss, TemporalLoss

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS: dict = {
    "model": {"variant": "realtime", "scale": 2, "alpha": None, "zero_tail": True},
    "data": {"train": ["../shared/data/train/T91", "../shared/data/train/BSD200"], "patch": 64, "batch": 32,
             "augment": True, "prefetch": 6, "synthetic": 0.0, "degrade_share": 1.0,
             "rescale": 1.0,
             "val": ["../shared/data/val/Set5", "../shared/data/val/Set14"],
             "val_video": {}, "degrade": {}},
    "loss": {"l1": 1.0},
    "optim": {"lr": 2e-3, "weight_decay": 1e-4, "betas": [0.9, 0.99], "schedule": "cosine", "warmup": 500,
              "min_lr": 1e-6, "milestones": [], "gamma": 0.5, "grad_clip": 1.0},
    "gan": {"enabled": False, "weight": 0.005, "lr": 1e-4, "betas": [0.0, 0.99], "r1": 1.0, "r2": 1.0,
            "channels": [64, 128, 256, 512], "penalty_every": 1, "start": 0},
    "train": {"steps": 20000, "seed": 0, "ema": 0.999, "threads": 2, "device": "auto", "amp": "bf16",
              "val_every": 2000, "ckpt_every": 1000, "log_every": 100, "out": None, "init": None,
              "channels_last": True},
}


class ConfigError(PsrError, ValueError):
    """A bad config file or value (reported as one line by the CLI)."""


def _merge(base: dict, over: dict, where: str = "") -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k not in base and where not in ("loss", "data.degrade", "data.val_video"):
            raise ConfigError(f"unknown config key {where + '.' if where else ''}{k}")
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            out[k] = _merge(base[k], v, f"{where + '.' if where else ''}{k}")
        else:
            out[k] = v
    return out


def load_config(path: str | Path | None = None, **overrides) -> dict:
    """DEFAULTS merged with a TOML file and ``section__key=value`` overrides; relative data paths resolve
    against the repository root (where ``../shared`` lives), then the config's folder."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            user = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: {e}") from None
        if "loss" in user:
            cfg["loss"] = {}
        cfg = _merge(cfg, user)
    for key, v in overrides.items():
        sec, _, k = key.partition("__")
        cfg[sec][k] = v
    cfg["_config"] = str(path) if path else None
    return cfg


def _resolve(p: str, cfg_path: str | None) -> Path:
    q = Path(p).expanduser()
    if q.is_absolute():
        return q
    for base in (ROOT, Path(cfg_path).parent if cfg_path else None, Path.cwd()):
        if base is not None and (base / q).exists():
            return (base / q).resolve()
    return (ROOT / q).resolve()


def lr_at(step: int, cfg: dict, total: int) -> float:
    o = cfg["optim"]
    base, warm = float(o["lr"]), int(o["warmup"])
    if step < warm:
        return base * (step + 1) / warm
    if o["schedule"] == "cosine":
        t = min(1.0, (step - warm) / max(1, total - warm))
        return float(o["min_lr"]) + 0.5 * (base - float(o["min_lr"])) * (1 + math.cos(math.pi * t))
    if o["schedule"] == "multistep":
        return base * float(o["gamma"]) ** sum(step >= m for m in o["milestones"])
    if o["schedule"] == "constant":
        return base
    raise ConfigError(f"unknown optim.schedule {o['schedule']!r} (cosine, multistep, constant)")


class EMA:
    """Exponential moving average of parameters (buffers copied), with a warm-up of the decay."""

    def __init__(self, net: nn.Module, decay: float) -> None:
        self.net = copy.deepcopy(net).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, net: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        ema_p = list(self.net.parameters())
        torch._foreach_lerp_(ema_p, [p.detach() for p in net.parameters()], 1 - d)
        for b, src in zip(self.net.buffers(), net.buffers(), strict=True):
            b.copy_(src)


def _val_video_spec(cfg: dict) -> tuple[Path, int, int | None] | None:
    """``data.val_video`` checked up front (folder, crf, clip limit), not at the first validation."""
    v = cfg["data"]["val_video"]
    if not v:
        return None
    if unknown := sorted(set(v) - {"folder", "crf", "clips"}):
        raise ConfigError(f"unknown data.val_video key(s) {', '.join(unknown)} (folder, crf, clips)")
    if "folder" not in v:
        raise ConfigError('data.val_video needs folder = "..." (HR images to pan across)')
    folder = _resolve(v["folder"], cfg.get("_config"))
    if not folder.is_dir():
        raise ConfigError(f"data.val_video folder not found: {folder}")
    return folder, int(v.get("crf", 23)), int(v.get("clips", 0)) or None


class Trainer:
    def __init__(self, cfg: dict, out: str | Path | None = None, resume: bool = False, quiet: bool = False,
                 command: str | None = None) -> None:
        self.cfg, self.quiet = cfg, quiet
        t = cfg["train"]
        torch.set_num_threads(int(t["threads"]))
        dev = t["device"]
        self.device = torch.device("cuda" if dev == "auto" and torch.cuda.is_available() else
                                   ("cpu" if dev == "auto" else dev))
        m = cfg["model"]
        name = Path(cfg["_config"]).stem if cfg.get("_config") else f"{m['variant']}_x{m['scale']}"
        self.out = Path(out or t["out"] or ROOT / "runs" / name)
        self.out.mkdir(parents=True, exist_ok=True)
        self.command = command or shlex.join(["psr2video", "train", *sys.argv[1:]])
        torch.manual_seed(int(t["seed"]))
        m = cfg["model"]
        self.variant, self.scale = m["variant"], int(m["scale"])
        self.net = build_model(self.variant, self.scale, alpha=m.get("alpha"))
        if m.get("zero_tail", True):  # start exactly at the MKS base; the detail path grows from zero
            with torch.no_grad():
                self.net.tail.weight.zero_()
                self.net.tail.bias.zero_()
        self.mem = torch.channels_last if t.get("channels_last", True) else torch.contiguous_format
        self.net = self.net.to(self.device, memory_format=self.mem)
        if t.get("init"):
            init = _resolve(t["init"], cfg.get("_config"))
            if resume and not init.is_file() and self.checkpoint_path().is_file():
                # the checkpoint holds the weights; the init only decided the net's form (fused or not), so a
                # committed checkpoint resumes on a fresh checkout without the previous stage's output
                self._match_checkpoint_form()
            else:
                self._load_init(init)
        self.ema = EMA(self.net, float(t["ema"]))
        o = cfg["optim"]
        decay, no_decay = [], []
        for n, p in self.net.named_parameters():
            (no_decay if p.ndim <= 1 or n.endswith("gamma") else decay).append(p)
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": float(o["weight_decay"])},
                                      {"params": no_decay, "weight_decay": 0.0}],
                                     lr=float(o["lr"]), betas=tuple(o["betas"]))
        self.loss = CombinedLoss(cfg["loss"]).to(self.device)
        self.temporal = float(cfg["loss"].get("temporal") or 0)
        if self.temporal:
            video = (cfg["data"]["degrade"] or {}).get("video") or {}
            if int(video.get("frames", 2)) <= 2:
                raise ConfigError("[loss] temporal needs panning clips: [data.degrade] video with frames = 3 or more")
            # the previous frame's target has up to `motion` px of replicated edge
            self.temporal_loss = TemporalLoss(border=int(video.get("motion", 3))).to(self.device)
        self.gan = None
        if cfg["gan"]["enabled"]:
            from .losses import R3GANLoss
            from .munet import MUNet

            g = cfg["gan"]
            self.disc = MUNet(channels=tuple(g["channels"])).to(self.device)
            self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=float(g["lr"]), betas=tuple(g["betas"]),
                                           weight_decay=0.0)
            self.gan = R3GANLoss(r1=float(g["r1"]), r2=float(g["r2"]))
        self.amp = None
        if self.device.type == "cuda" and t["amp"] in ("bf16", "fp16"):
            self.amp = torch.bfloat16 if t["amp"] == "bf16" else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)
        self.step = 0
        self.best = -1.0
        if resume:
            self._resume()
        self.log_path = self.out / "log.jsonl"
        self._trim_log()
        self.val_video = _val_video_spec(cfg)

    # ---- checkpoints ----
    def _load_init(self, path: Path) -> None:
        from safetensors.torch import load_file

        if not path.is_file():
            raise ConfigError(f"train.init file not found: {path}")
        if path.suffix == ".safetensors":
            from ..models import read_metadata

            if read_metadata(path).get("fused"):
                # Fine-tune the release form itself: plain convs (the re-parameterisation branches only
                # help optimisation from scratch); the run exports it as it is.
                self.net = self.net.fuse_for_release().to(self.device, memory_format=self.mem)
                for p in self.net.parameters():
                    p.requires_grad_(True)
            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)["ema"]
        self.net.load_state_dict(state)

    def _match_checkpoint_form(self) -> None:
        keys = set(torch.load(str(self.checkpoint_path()), map_location="cpu", weights_only=True)["model"])
        if keys == set(self.net.state_dict()):
            return
        fused = self.net.fuse_for_release() if hasattr(self.net, "fuse_for_release") else None
        if fused is None or keys != set(fused.state_dict()):
            raise ConfigError(f"{self.checkpoint_path()} does not hold a {self.variant} x{self.scale} net")
        self.net = fused.to(self.device, memory_format=self.mem)
        for p in self.net.parameters():
            p.requires_grad_(True)

    def checkpoint_path(self) -> Path:
        return self.out / "last.pt"

    def save_checkpoint(self) -> None:
        state = {"step": self.step, "best": self.best, "model": self.net.state_dict(),
                 "ema": self.ema.net.state_dict(), "opt": self.opt.state_dict(), "scaler": self.scaler.state_dict(),
                 "config": json.dumps(self.cfg)}
        if self.gan is not None:
            state["disc"] = self.disc.state_dict()
            state["opt_d"] = self.opt_d.state_dict()
        with atomic_path(self.checkpoint_path()) as tmp:
            torch.save(state, tmp)

    def _resume(self) -> None:
        p = self.checkpoint_path()
        if not p.is_file():
            self._print(f"no checkpoint at {p}: starting from step 0")
            return
        s = torch.load(str(p), map_location=self.device, weights_only=True)
        self.net.load_state_dict(s["model"])
        self.ema.net.load_state_dict(s["ema"])
        self.opt.load_state_dict(s["opt"])
        self.scaler.load_state_dict(s["scaler"])
        if self.gan is not None and "disc" in s:
            self.disc.load_state_dict(s["disc"])
            self.opt_d.load_state_dict(s["opt_d"])
        self.step, self.best = int(s["step"]), float(s["best"])
        self._print(f"resumed from {p} at step {self.step}")

    def _trim_log(self) -> None:
        if not self.log_path.is_file():
            return
        rows = [r for r in self.log_path.read_text().splitlines() if r.strip()]
        keep = [r for r in rows if json.loads(r).get("step", 0) <= self.step]
        if len(keep) != len(rows):
            self.log_path.write_text("".join(r + "\n" for r in keep))

    def _log(self, row: dict) -> None:
        with self.log_path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def _print(self, msg: str) -> None:
        if not self.quiet:
            print(msg, flush=True)

    # ---- data ----
    def sampler(self) -> PatchSampler:
        d = self.cfg["data"]
        folders = [_resolve(p, self.cfg.get("_config")) for p in d["train"]]
        images = load_images(folders)
        degrade = None
        if d.get("degrade"):
            from .degrade import Degrader

            degrade = Degrader(self.scale, d["degrade"], pairs=bool(self.temporal))
        sampler = PatchSampler(images, self.scale, int(d["patch"]), int(d["batch"]),
                               seed=int(self.cfg["train"]["seed"]), augment=bool(d["augment"]), degrade=degrade,
                               synthetic=float(d["synthetic"]), degrade_share=float(d["degrade_share"]),
                               rescale=float(d["rescale"]))
        if len(sampler.images) < len(images):  # said, never silent: a large patch changes what the run learns from
            self._print(f"{len(images) - len(sampler.images)} of {len(images)} training images are smaller than the "
                        f"{d['patch']}-px patch on their short side and are not used")
        return sampler

    # ---- steps ----
    def train_step(self, lr_img: torch.Tensor, hr: torch.Tensor, total: int) -> dict:
        cfg = self.cfg
        pair = lr_img.dim() == 5  # (2, N, C, H, W): consecutive panning frames, for the temporal loss
        if pair:
            lr_img, hr = lr_img.flatten(0, 1), hr.flatten(0, 1)
        lr_img = lr_img.to(self.device, non_blocking=True).contiguous(memory_format=self.mem)
        hr = hr.to(self.device, non_blocking=True)
        lr = lr_at(self.step, cfg, total)
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.net.train()
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            sr = self.net(lr_img)
        loss, parts = self.loss(sr.float(), hr)
        if pair and self.temporal:
            t_loss = self.temporal_loss(sr.float().unflatten(0, (2, -1)), hr.unflatten(0, (2, -1)))
            loss = loss + self.temporal * t_loss
            parts["temporal"] = float(t_loss.detach())
        row = {"step": self.step + 1, "lr": lr, "loss": float(loss.detach()), **parts}
        use_gan = self.gan is not None and self.step >= int(cfg["gan"]["start"])
        if use_gan:
            for p in self.disc.parameters():
                p.requires_grad_(False)
            with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
                g_loss = self.gan.generator_loss(self.disc, sr.float(), hr)
            loss = loss + float(cfg["gan"]["weight"]) * g_loss
            row["g_adv"] = float(g_loss.detach())
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        clip = float(cfg["optim"]["grad_clip"] or 0)
        if clip > 0:
            self.scaler.unscale_(self.opt)
            row["grad_norm"] = float(nn.utils.clip_grad_norm_(self.net.parameters(), clip))
        self.scaler.step(self.opt)
        self.scaler.update()
        if use_gan:
            for p in self.disc.parameters():
                p.requires_grad_(True)
            every = max(1, int(cfg["gan"]["penalty_every"]))
            d_loss, d_parts = self.gan.discriminator_loss(self.disc, sr.detach().float(), hr,
                                                          penalty=(self.step % every == 0), penalty_scale=every)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            row.update(d_parts)
        self.ema.update(self.net, self.step)
        self.step += 1
        return row

    @torch.no_grad()
    def validate(self) -> dict:
        from ..evaluate import evaluate, tensor_fn
        from ..video_eval import evaluate_clips

        net = self.ema.net.eval()
        dev = self.device

        def run(x: torch.Tensor) -> torch.Tensor:
            return net(x.to(dev)).float().clamp(0, 1).cpu()

        out = {}
        for folder in self.cfg["data"]["val"]:
            r = evaluate(tensor_fn(run), _resolve(folder, self.cfg.get("_config")), self.scale, "ema")
            out[r.dataset] = {"psnr": round(r.psnr, 4), "ssim": round(r.ssim, 5)}
        if self.val_video:
            name, clips = self._val_clips()
            v = evaluate_clips(tensor_fn(run), clips, self.scale, "ema", ssim=False)
            out[name] = {"psnr": round(v.psnr, 4), "temporal": round(v.temporal, 4)}
        return out

    def _val_clips(self) -> tuple[str, list]:
        """``data.val_video``: compressed pans (``psr2video.video_eval``) built once per run, so a video model
        is also judged, and kept as best, on the input it is made for."""
        if not hasattr(self, "_clips"):
            from ..video_eval import build_clips

            folder, crf, limit = self.val_video
            self._clips = (f"{folder.name} pans CRF {crf}", build_clips(folder, self.scale, crf, limit=limit))
        return self._clips

    @torch.no_grad()
    def stress(self) -> tuple[float, list[str]]:
        """The stress suite (``psr2video.stress``) on the EMA net in fp32 and fp16: (largest |detail|,
        failures). Benchmark PSNR can rise while a net learns to blow up on text and 1-px lines, so a net
        that fails here is never written as best."""
        from ..stress import failures, real_frames, stress_model

        if not hasattr(self, "_stress_real"):
            self._stress_real = real_frames()
        net = copy.deepcopy(self.ema.net).cpu().float().eval()
        rows = stress_model(net, real=self._stress_real)
        return max(r.detail for r in rows), failures(rows)

    def export(self, path: Path, validation: dict | None = None) -> Path:
        """Save the fused EMA weights with the recipe (data, steps, command, validation) in the header."""
        d = self.cfg["data"]
        lr_how = f"degraded: {json.dumps(d['degrade'])}" if d["degrade"] else "antialiased bicubic LR"
        info = {"data": f"{', '.join(d['train'])} ({lr_how}, {d['patch']} px HR crops, batch {d['batch']})",
                "steps": self.step, "command": self.command, "loss": json.dumps(self.cfg["loss"]),
                "validation": validation or {}, "ema": self.cfg["train"]["ema"]}
        net = copy.deepcopy(self.ema.net).cpu().to(memory_format=torch.contiguous_format)
        return save_weights(net.fuse_for_release(), path, **info)

    def plot(self) -> None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return
        rows = [json.loads(r) for r in self.log_path.read_text().splitlines() if r.strip()]
        tr = [r for r in rows if "loss" in r]
        va = [r for r in rows if "val" in r]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        if tr:
            axes[0].plot([r["step"] for r in tr], [r["loss"] for r in tr], lw=0.8)
            axes[0].set_yscale("log")
        axes[0].set_title("training loss")
        axes[0].set_xlabel("step")
        for name in (va[0]["val"] if va else {}):
            axes[1].plot([r["step"] for r in va], [r["val"][name]["psnr"] for r in va], marker="o", label=name)
        axes[1].set_title(f"validation PSNR-Y x{self.scale} (EMA)")
        axes[1].set_xlabel("step")
        axes[1].legend()
        fig.tight_layout()
        fig.savefig(self.out / "curves.png", dpi=90)
        plt.close(fig)

    def fit(self, steps: int | None = None) -> dict:
        t = self.cfg["train"]
        total = int(steps or t["steps"])
        if self.step >= total:
            self._print(f"already at step {self.step} >= {total}")
            return {}
        sampler = self.sampler()
        pre = Prefetcher(sampler, self.step, depth=int(self.cfg["data"]["prefetch"]))
        every_log, every_val, every_ckpt = int(t["log_every"]), int(t["val_every"]), int(t["ckpt_every"])
        bar = None
        if not self.quiet and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                           TextColumn("{task.fields[info]}"))
            task = bar.add_task("train", total=total, completed=self.step, info="")
            bar.start()
        acc: dict[str, list[float]] = {}
        t0, s0 = time.time(), self.step
        last_val: dict = {}
        stop: list[int] = []
        old_handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):  # finish the step, checkpoint, then stop
                old_handlers[sig] = signal.signal(sig, lambda num, frame: stop.append(num))
        try:
            for step, lr_img, hr in pre:
                assert step == self.step, (step, self.step)
                if stop:
                    self.save_checkpoint()
                    self._print(f"stopped at step {self.step}; checkpoint {self.checkpoint_path()} (use --resume)")
                    raise KeyboardInterrupt
                row = self.train_step(lr_img, hr, total)
                for k, v in row.items():
                    if k != "step":
                        acc.setdefault(k, []).append(v)
                if self.step % every_log == 0 or self.step == total:
                    mean = {k: sum(v) / len(v) for k, v in acc.items()}
                    mean["lr"] = row["lr"]
                    sps = (self.step - s0) / max(1e-9, time.time() - t0)
                    self._log({"step": self.step, **{k: round(v, 6) for k, v in mean.items()},
                               "steps_per_s": round(sps, 2)})
                    acc = {}
                    msg = f"loss {mean['loss']:.5f} lr {row['lr']:.2e} {sps:.1f} it/s"
                    if bar is not None:
                        bar.update(task, completed=self.step, info=msg)
                    else:
                        self._print(f"step {self.step}/{total} {msg}")
                if self.step % every_val == 0 or self.step == total:
                    last_val = self.validate()
                    stress, failed = self.stress()
                    self._log({"step": self.step, "val": last_val, "stress_detail_max": round(stress, 4),
                               "stress_failures": failed})
                    score = sum(v["psnr"] for v in last_val.values())
                    txt = " ".join(f"{k} {v['psnr']:.3f}/" + (f"{v['ssim']:.4f}" if "ssim" in v else
                                                                f"temporal {v['temporal']:.3f}")
                                   for k, v in last_val.items())
                    txt += f" stress max|detail| {stress:.2f}"
                    if failed:
                        more = " ..." if len(failed) > 1 else ""
                        txt += f" (fails the stress suite: {failed[0]}{more}; not kept as best)"
                    elif score > self.best:
                        self.best = score
                        self.export(self.out / "best.safetensors", last_val)
                        txt += " (best)"
                    self._print(f"val step {self.step}: {txt}")
                    self.plot()
                if self.step % every_ckpt == 0 or self.step == total:
                    self.save_checkpoint()
                if self.step >= total:
                    break
        finally:
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
            pre.close()
            if bar is not None:
                bar.stop()
        final = self.export(self.out / "final.safetensors", last_val)
        self._print(f"done: {final}")
        return last_val
