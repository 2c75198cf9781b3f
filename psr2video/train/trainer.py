"""The trainer: config -> model, data, losses (optionally a MUNet + R3GAN stage) -> EMA weights.

One loop serves the fidelity stage (L1/Charbonnier + MS-SSIM + FFT) and the GAN stage (set ``[gan]
enabled = true``). Checkpoints hold model, EMA, optimiser(s) and step; they are written with
``torch.save`` and read back with ``torch.load(weights_only=True)`` (plain tensors and numbers, no
pickled code). Batches depend only on ``(seed, step)``, so a resumed run continues the same loss curve.
"""

from __future__ import annotations

import copy
import errno
import io
import json
import math
import os
import re
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

import torch
from torch import nn

from ..errors import PsrError, first_line
from ..fileio import atomic_path
from ..models import build_model, save_weights
from ..models.registry import non_finite
from ..runtime.upscaler import resolve_device
from .config import DEFAULTS, ROOT, ConfigError, check_config, load_config
from .config import resolve as _resolve
from .data import PatchSampler, Prefetcher, load_images
from .losses import CombinedLoss, TemporalLoss, flat_hinge

__all__ = ["DEFAULTS", "ROOT", "ConfigError", "EMA", "RunError", "Trainer", "check_config", "load_config", "lr_at"]

# [loss] flat_hinge's margin: half the stress section's speckle bar (stress.SPECKLE_CODES = 24 codes; a test keeps
# them in step), so a pixel is pushed back well before it counts as speckle
FLAT_HINGE_MARGIN = 12 / 255
RUN_FILES = ("last.pt", "log.jsonl", "best.safetensors", "final.safetensors", "curves.png")
# keys that make the net (or the discriminator) what it is: a checkpoint resumes only with the same ones
MODEL_KEYS = ("model.variant", "model.scale", "model.alpha")
# keys that never change what a resumed run does (where it runs; init: the checkpoint holds the weights)
RESUME_FREE_KEYS = ("train.device", "train.threads", "train.out", "train.init")


try:
    from safetensors import SafetensorError

    _SAFETENSORS_ERRORS: tuple[type[BaseException], ...] = (SafetensorError,)
except ImportError:  # an older safetensors: its errors are OSError / RuntimeError
    _SAFETENSORS_ERRORS = ()


class RunError(PsrError):
    """A run that can't go on (a checkpoint or weights file that can't be written or read): one line."""


class DivergedError(RunError):
    """Training diverged (a NaN/inf loss or weights): stopped at once, so no non-finite weights are ever
    written as a checkpoint, best or final; the message says which step and how to go on."""


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


MISSING = object()


def _flat(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1} (empty tables give nothing)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _show(v: object) -> str:
    return "(unset)" if v is MISSING else json.dumps(v)


def _why(e: BaseException) -> str:
    """Why a write failed, in a few words ("disk full", "Permission denied", ...)."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk full"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e)
    if m := re.search(r"\(os error (\d+)\)", text):  # safetensors (Rust): "I/O error: ... (os error 28)"
        code = int(m.group(1))
        return "disk full" if code in (errno.ENOSPC, errno.EDQUOT) else os.strerror(code)
    return first_line(e)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _weights_steps(path: Path) -> int | None:
    """The ``steps`` a weights file written by a run says it holds (None: no such file, or unreadable)."""
    from ..models import read_metadata

    try:
        return read_metadata(path).get("steps")
    except Exception:  # noqa: BLE001 - missing or damaged: the caller writes it again
        return None


class Trainer:
    """A training run in the folder ``out``.

    Everything the run needs (the config's keys, the device, every training and validation picture, the init
    weights, the checkpoint) is read and checked here, before anything in ``out`` changes. A fresh run refuses a
    folder that holds a run unless ``overwrite`` (then the old run's files are removed); ``resume`` continues from
    ``out/last.pt`` and refuses a checkpoint of another model (variant, scale, alpha), saying which training
    settings differ when only those do.
    """

    def __init__(self, cfg: dict, out: str | Path | None = None, resume: bool = False, quiet: bool = False,
                 command: str | None = None, overwrite: bool = False) -> None:
        check_config(cfg)
        if resume and overwrite:
            raise ConfigError("--resume continues the run in the folder and --overwrite deletes it: give one of them")
        self.cfg, self.quiet = cfg, quiet
        t, m = cfg["train"], cfg["model"]
        self.device = resolve_device(t["device"])  # the Upscaler's: a CUDA device this machine lacks, one line
        name = Path(cfg["_config"]).stem if cfg.get("_config") else f"{m['variant']}_x{m['scale']}"
        # the working folder's runs/<config name>, as --help and the README say (not the checkout's)
        self.out = Path(out or t["out"] or Path("runs") / name)
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"the run folder {self.out} is a file, not a folder")
        self.command = command or shlex.join(["psr2video", "train", *sys.argv[1:]])
        self.variant, self.scale = m["variant"], int(m["scale"])
        self.log_path = self.out / "log.jsonl"
        # what the run reads, read now: a bad folder or picture is said before step 1, not at a validation
        self._images = self._training_images()
        patch = cfg["data"]["patch"]
        if not any(min(im.shape[-2:]) >= patch for im in self._images):
            raise ConfigError(f"data.patch {patch}: no training picture is at least {patch} px on its short side")
        self._check_val_folders()
        self.val_video = self._val_video_spec()
        if self.val_video:
            self._val_clips()
        ckpt = self._read_checkpoint(self.checkpoint_path()) if resume and self.checkpoint_path().is_file() else None
        if ckpt is None:
            self._check_fresh(resume, overwrite)
        torch.set_num_threads(int(t["threads"]))
        torch.manual_seed(int(t["seed"]))
        self.net = build_model(self.variant, self.scale, alpha=m.get("alpha"))
        if m.get("zero_tail", True):  # start exactly at the MKS base; the detail path grows from zero
            with torch.no_grad():
                self.net.tail.weight.zero_()
                self.net.tail.bias.zero_()
        self.mem = torch.channels_last if t.get("channels_last", True) else torch.contiguous_format
        self.net = self.net.to(self.device, memory_format=self.mem)
        if ckpt is not None:
            # the checkpoint holds the weights and says the net's form (fused or not): train.init is not read, so a
            # committed checkpoint resumes on a fresh checkout without the previous stage's output
            self._check_resume_config(ckpt)
            self._match_checkpoint_form(ckpt)
        elif t.get("init"):
            self._load_init(_resolve(t["init"], cfg.get("_config")))
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
        self.free_target = cfg["data"]["aliased_target"] == "flat"
        self.flat_hinge = float(cfg["loss"].get("flat_hinge") or 0)  # check_config: only with the flat target
        if self.temporal:  # check_config made sure of panning clips
            video = cfg["data"]["degrade"]["video"]
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
        # {val set: PSNR} of the validation kept as best: a resumed run whose data.val changed compares on the
        # sets both have (None: a checkpoint from before it was kept, compared by self.best, a sum, as then)
        self.best_val: dict[str, float] | None = {}
        self._ckpt_step: int | None = None  # the step the checkpoint on disk holds (None: none written)
        if ckpt is not None:
            self._resume(ckpt)
            self._check_best_sets(ckpt)
        elif resume:
            self._print(f"no checkpoint at {self.checkpoint_path()}: starting from step 0")
        # all checked: now the run folder changes
        self._prepare_out(remove_old=ckpt is None and overwrite)
        self._trim_log()

    # ---- what the run reads, checked up front ----
    def _training_images(self) -> list[torch.Tensor]:
        from ..pictures import PictureFolderError, PictureReadError

        folders = [_resolve(p, self.cfg.get("_config")) for p in self.cfg["data"]["train"]]
        try:
            return load_images(folders)
        except (PictureFolderError, PictureReadError) as e:
            raise ConfigError(f"data.train: {e}") from None
        except OSError as e:  # the file system's own error (permission, I/O) on a picture
            raise ConfigError(f"data.train: can't read {e.filename or folders}: {e.strerror or e}") from None

    def _check_val_folders(self) -> None:
        """Every ``data.val`` folder exists and every picture in it decodes and is large enough for PSNR and SSIM
        at this scale (a validation runs only every ``val_every`` steps: a bad folder found there cost the
        training since the last checkpoint)."""
        from ..evaluate import PictureSizeError, check_size
        from ..pictures import PictureFolderError, PictureReadError, list_images, load_rgb

        for f in self.cfg["data"]["val"]:
            folder = _resolve(f, self.cfg.get("_config"))
            try:
                for p in list_images([folder], what="validation"):
                    check_size(p, load_rgb(p).size, self.scale, hint=False)  # validation measures SSIM too
            except (PictureFolderError, PictureReadError, PictureSizeError) as e:
                raise ConfigError(f"data.val: {e}") from None
            except OSError as e:
                raise ConfigError(f"data.val: can't read {e.filename or folder}: {e.strerror or e}") from None

    def _val_video_spec(self) -> tuple[Path, int, int | None] | None:
        """``data.val_video`` (folder, crf, clip limit); its keys were checked with the config."""
        v = self.cfg["data"]["val_video"]
        if not v:
            return None
        folder = _resolve(v["folder"], self.cfg.get("_config"))
        if not folder.is_dir():
            raise ConfigError(f"data.val_video folder not found: {folder}")
        return folder, int(v.get("crf", 23)), int(v.get("clips", 0)) or None

    def _check_fresh(self, resume: bool, overwrite: bool) -> None:
        """A fresh run never writes over another run's files without being told to (``overwrite``)."""
        held = [f for f in RUN_FILES if f != "curves.png" and (self.out / f).exists()]
        if not held or overwrite:
            return
        what = f"{self.out} holds a training run ({', '.join(held)})"
        if resume:
            raise ConfigError(f"{what} but no last.pt to resume from; start over with --overwrite (deletes them) "
                              "or choose another --out")
        raise ConfigError(f"{what}; continue it with --resume, or start over with --overwrite (deletes them), or "
                          "choose another --out")

    def _prepare_out(self, remove_old: bool) -> None:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            probe = self.out / f".psr2video-write-test.{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as e:
            raise ConfigError(f"can't write to the run folder {self.out}: {e.strerror or e}") from None
        if remove_old:
            removed = [f for f in RUN_FILES if (self.out / f).is_file()]
            for f in removed:
                (self.out / f).unlink()
            if removed:
                self._note(f"--overwrite: removed the previous run's {', '.join(removed)} from {self.out}")

    # ---- checkpoints ----
    def _read_checkpoint(self, path: Path, what: str = "checkpoint") -> dict:
        """A training checkpoint (``last.pt``), or a ConfigError saying why it can't be one."""
        hint = ("; start over with --overwrite" if what == "checkpoint" else
                " (give a psr2video .safetensors file or a training run's last.pt)")
        try:
            s = torch.load(str(path), map_location=self.device if what == "checkpoint" else "cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises several types for a damaged or foreign file
            why = first_line(e).split(". ")[0]  # torch's first sentence ("Weights only load failed", "... zip ...")
            raise ConfigError(f"{what} {path} is not a readable training checkpoint: damaged, cut short or another "
                              f"kind of file ({why}){hint}") from None
        if not isinstance(s, dict) or not {"step", "model", "ema", "opt"} <= set(s):
            raise ConfigError(f"{what} {path} is not a psr2video training checkpoint (it has no model, ema, opt and "
                              f"step){hint}")
        return s

    def _fit_state(self, net: nn.Module, state: object, what: str) -> None:
        """Load ``state`` into ``net``; a state of another net is one line, not torch's list of every tensor."""
        mine = net.state_dict()
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ConfigError(f"{what} holds no {self.variant} x{self.scale} weights")
        missing, extra = sorted(set(mine) - set(state)), sorted(set(state) - set(mine))
        shape = [k for k in mine if k in state and state[k].shape != mine[k].shape]
        if missing or extra or shape:
            eg = (shape or missing or extra)[0]
            raise ConfigError(f"{what} does not fit a {self.variant} x{self.scale} net ({len(shape)} tensor(s) of "
                              f"another shape, {len(missing)} missing, {len(extra)} unexpected; e.g. {eg})")
        bad = non_finite(state)
        if bad:  # a diverged run's weights: training on from them gives NaN at once
            raise ConfigError(f"{what} holds NaN/inf values ({len(bad)} tensor(s), e.g. {bad[0]}): the weights of a "
                              "run that diverged")
        net.load_state_dict(state)

    def _load_init(self, path: Path) -> None:
        from safetensors.torch import load_file

        if not path.is_file():
            raise ConfigError(f"train.init file not found: {path}")
        what = f"train.init {path}"
        if path.suffix == ".safetensors":
            from ..models import read_metadata

            try:
                meta = read_metadata(path)
            except PsrError as e:
                raise ConfigError(f"train.init: {e}") from None
            if (meta.get("variant"), meta.get("scale")) != (self.variant, self.scale):
                raise ConfigError(f"{what} is a {meta.get('variant')} x{meta.get('scale')} model; this config trains "
                                  f"{self.variant} x{self.scale} (model.variant, model.scale)")
            if meta.get("fused"):
                # Fine-tune the release form itself: plain convs (the re-parameterisation branches only
                # help optimisation from scratch); the run exports it as it is.
                self.net = self.net.fuse_for_release().to(self.device, memory_format=self.mem)
                for p in self.net.parameters():
                    p.requires_grad_(True)
            try:
                state = load_file(str(path))
            except Exception as e:  # noqa: BLE001 - safetensors raises its own type for a damaged file
                raise ConfigError(f"{what} is not a readable .safetensors file ({first_line(e)})") from None
        else:
            s = self._read_checkpoint(path, what="train.init")
            old = self._checkpoint_config(s)
            if old and (old["model"].get("variant"), old["model"].get("scale")) != (self.variant, self.scale):
                raise ConfigError(f"{what} is a {old['model'].get('variant')} x{old['model'].get('scale')} run; this "
                                  f"config trains {self.variant} x{self.scale} (model.variant, model.scale)")
            state = s["ema"]
        self._fit_state(self.net, state, what)

    @staticmethod
    def _checkpoint_config(ckpt: dict) -> dict | None:
        try:
            old = json.loads(ckpt.get("config") or "null")
        except (TypeError, ValueError):
            return None
        return old if isinstance(old, dict) and isinstance(old.get("model"), dict) else None

    def _check_resume_config(self, ckpt: dict) -> None:
        """A checkpoint resumes only the model it holds: a changed variant, scale or alpha is refused; changed
        training settings (lr, patch, data ...) are said, and the run goes on with them."""
        old = self._checkpoint_config(ckpt)
        if old is None:
            return
        before, now, defaults = _flat(old), _flat(self.cfg), _flat(DEFAULTS)
        open_tables = ("loss.", "data.degrade.", "data.val_video.")  # tables a config replaces whole
        diffs = []
        for k in sorted(set(before) | set(now)):
            if k.startswith("_") or k in RESUME_FREE_KEYS:
                continue
            a = before.get(k, MISSING if k.startswith(open_tables) else defaults.get(k, MISSING))
            b = now.get(k, MISSING)
            if a != b:
                diffs.append((k, a, b))
        hard = [d for d in diffs if d[0] in MODEL_KEYS
                or (d[0] == "gan.channels" and "disc" in ckpt and self.cfg["gan"]["enabled"])]
        p = self.checkpoint_path()
        if hard:
            raise ConfigError(f"{p} is a run of {', '.join(f'{k} = {_show(a)}' for k, a, _ in hard)}, this config "
                              f"says {', '.join(f'{k} = {_show(b)}' for k, _, b in hard)}: --resume continues the "
                              "same model; put them back, or start a new run (another --out, or --overwrite)")
        if diffs:
            self._note(f"note: resuming with settings that differ from {p}'s: "
                       f"{', '.join(f'{k} {_show(a)} -> {_show(b)}' for k, a, b in diffs)}; the run goes on with the "
                       "new ones")

    def _match_checkpoint_form(self, ckpt: dict) -> None:
        keys = set(ckpt["model"]) if isinstance(ckpt["model"], dict) else set()
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

    def _diverged(self, what: str) -> DivergedError:
        """The one line that stops a diverging run: the step, the checkpoint that is kept, how to go on."""
        lr = self.cfg["optim"]["lr"]
        if self._ckpt_step is None:
            how = (f"no checkpoint was written yet; lower optim.lr (now {lr:g}) or set optim.grad_clip and start "
                   "again with --overwrite")
        else:
            how = (f"{self.checkpoint_path()} keeps step {self._ckpt_step}, the last good one; lower optim.lr (now "
                   f"{lr:g}) or set optim.grad_clip, and continue it with --resume")
        return DivergedError(f"training diverged: {what}; stopped, {how}")

    def _check_finite(self, when: str) -> None:
        """Refuse to go on (and to write anything) once the net or its EMA holds NaN/inf."""
        for net, which in ((self.net, "weights"), (self.ema.net, "EMA weights")):
            if bad := non_finite(net.state_dict()):
                raise self._diverged(f"the {which} hold NaN/inf ({bad[0]}) {when}")

    def save_checkpoint(self) -> None:
        self._check_finite(f"at step {self.step}")  # the checkpoint on disk stays the last good one
        state = {"step": self.step, "best": self.best, "best_val": json.dumps(self.best_val),
                 "model": self.net.state_dict(),
                 "ema": self.ema.net.state_dict(), "opt": self.opt.state_dict(), "scaler": self.scaler.state_dict(),
                 "config": json.dumps(self.cfg)}
        if self.gan is not None:
            state["disc"] = self.disc.state_dict()
            state["opt_d"] = self.opt_d.state_dict()
        p = self.checkpoint_path()
        had = p.is_file()
        buf = io.BytesIO()
        torch.save(state, buf)  # in memory first: torch's writer turns a full disk into "unexpected pos 704 vs 598"
        try:
            with atomic_path(p) as tmp:
                tmp.write_bytes(buf.getbuffer())
        except OSError as e:
            kept = "the previous checkpoint is kept" if had else "no checkpoint was written"
            raise RunError(f"can't write the checkpoint {p} at step {self.step}: {_why(e)} ({kept})") from None
        self._ckpt_step = self.step

    def _resume(self, s: dict) -> None:
        p = self.checkpoint_path()
        self._fit_state(self.net, s["model"], str(p))
        self._fit_state(self.ema.net, s["ema"], f"{p} (EMA)")
        try:
            self.opt.load_state_dict(s["opt"])
            if "scaler" in s:
                self.scaler.load_state_dict(s["scaler"])
            if self.gan is not None and "disc" in s:
                self._fit_state(self.disc, s["disc"], f"{p} (discriminator)")
                self.opt_d.load_state_dict(s["opt_d"])
            self.step, self.best = int(s["step"]), float(s["best"])
            self.best_val = json.loads(s["best_val"]) if "best_val" in s else None
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise ConfigError(f"{p} does not fit this run's optimiser or discriminator ({first_line(e)}); start over "
                              "with --overwrite") from None
        self._ckpt_step = self.step
        self._print(f"resumed from {p} at step {self.step}")

    def _val_names(self) -> list[str]:
        """The names validation gives its sets (a folder's name; the pans' own)."""
        names = [_resolve(f, self.cfg.get("_config")).name for f in self.cfg["data"]["val"]]
        return names + ([self._val_clips()[0]] if self.val_video else [])

    def _check_best_sets(self, ckpt: dict) -> None:
        """A resumed run whose validation sets changed: "best" is judged on the sets both the best and this
        run have (a sum over other sets would freeze it, or fake it), said once; none in common, or a
        checkpoint that kept only the sum, and best starts over."""
        now = self._val_names()
        if self.best_val is None:  # a checkpoint from before best_val: its config says what the sum was over
            old = self._checkpoint_config(ckpt)
            same = old is None or all(old.get("data", {}).get(k, DEFAULTS["data"][k]) == self.cfg["data"][k]
                                      for k in ("val", "val_video"))
            if not same and self.best > -1.0:
                self._note(f"note: data.val changed since {self.checkpoint_path()} was written and it kept only "
                           "the sum of the best PSNRs: best starts over at the next validation")
                self.best, self.best_val = -1.0, {}
            return
        if not self.best_val or set(self.best_val) == set(now):
            return
        shared = [k for k in now if k in self.best_val]
        change = f"{', '.join(self.best_val)} -> {', '.join(now)}"
        if shared:
            self._note(f"note: the validation sets changed since the best was kept ({change}): a new best must "
                       f"beat it on the sets both have ({', '.join(shared)})")
        else:
            self._note(f"note: the validation sets changed since the best was kept ({change}), none in common: "
                       "best starts over at the next validation")
            self.best, self.best_val = -1.0, {}

    def _beats_best(self, val: dict, slack: float = 0.0) -> bool:
        """Whether ``val`` beats the best so far: summed PSNR over the sets both have (all of them unless a
        resumed run changed data.val)."""
        now = {k: float(v["psnr"]) for k, v in val.items()}
        if self.best_val is None:
            return sum(now.values()) > self.best - slack
        shared = [k for k in now if k in self.best_val]
        if not shared:
            return True
        return sum(now[k] for k in shared) > sum(float(self.best_val[k]) for k in shared) - slack

    def _keep_best(self, val: dict) -> None:
        self.best = sum(v["psnr"] for v in val.values())
        self.best_val = {k: v["psnr"] for k, v in val.items()}

    def _trim_log(self) -> None:
        if not self.log_path.is_file():
            return
        rows = [r for r in self.log_path.read_text().splitlines() if r.strip()]
        keep = []
        for r in rows:
            try:
                if json.loads(r).get("step", 0) <= self.step:
                    keep.append(r)
            except (ValueError, AttributeError):  # a row cut short by a crash: dropped
                pass
        if len(keep) != len(rows):
            with atomic_path(self.log_path) as tmp:
                tmp.write_text("".join(r + "\n" for r in keep))

    def _log(self, row: dict) -> None:
        try:
            with self.log_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
        except OSError as e:
            raise RunError(f"can't write {self.log_path} at step {self.step}: {_why(e)}") from None

    def _print(self, msg: str) -> None:
        if not self.quiet:
            print(msg, flush=True)

    @staticmethod
    def _note(msg: str) -> None:
        """Something the user must hear even with ``quiet`` (files removed, settings changed): on stderr."""
        print(msg, file=sys.stderr, flush=True)

    # ---- data ----
    def sampler(self) -> PatchSampler:
        d = self.cfg["data"]
        images = self._images
        degrade = None
        if d.get("degrade"):
            from .degrade import Degrader

            degrade = Degrader(self.scale, d["degrade"], pairs=bool(self.temporal))
        sampler = PatchSampler(images, self.scale, int(d["patch"]), int(d["batch"]),
                               seed=int(self.cfg["train"]["seed"]), augment=bool(d["augment"]), degrade=degrade,
                               synthetic=float(d["synthetic"]), degrade_share=float(d["degrade_share"]),
                               rescale=float(d["rescale"]), aliased=float(d["aliased"]),
                               aliased_target=str(d["aliased_target"]))
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
        hinge = flat_hinge(sr, hr, FLAT_HINGE_MARGIN) if self.flat_hinge else None
        if self.free_target:  # NaN in the HR is "no target" ([data] aliased_target = "flat"): the net's own
            hr = torch.where(torch.isnan(hr), sr.detach().float(), hr)  # output there, so no term sees an error
        loss, parts = self.loss(sr.float(), hr)
        if hinge is not None:
            loss = loss + self.flat_hinge * hinge
            parts["flat_hinge"] = float(hinge.detach())
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
            from ..pictures import PictureFolderError, PictureReadError
            from ..video_eval import build_clips

            folder, crf, limit = self.val_video
            try:
                clips = build_clips(folder, self.scale, crf, limit=limit)
            except (PictureFolderError, PictureReadError, ValueError) as e:
                raise ConfigError(f"data.val_video: {e}") from None
            except OSError as e:
                raise ConfigError(f"data.val_video: can't read {e.filename or folder}: {e.strerror or e}") from None
            self._clips = (f"{folder.name} pans CRF {crf}", clips)
        return self._clips

    @torch.no_grad()
    def stress(self) -> tuple[float, list[str], dict[str, int]]:
        """The stress suite (``psr2video.stress``) on the EMA net in fp32 and fp16: (largest |detail|,
        failures, speckled pixels per aliased card). Benchmark PSNR can rise while a net learns to blow up on
        text and 1-px lines, so a net that fails here is never written as best. The aliased section is measured
        at every validation (a run training ``[data] aliased`` shows its effect in the log) and counts as a
        failure (``stress.ALIASED_IS_A_BAR``) in runs taught hard-edged content: a photo-only run can't pass it
        (the clean files had 2,000-odd speckled pixels before their aliased stage), and must still keep a best;
        ``pytest`` and ``eval --stress`` hold a shipped file to it."""
        from ..stress import aliased_failures, aliased_model, aliased_pixels, failures, real_frames, stress_model

        if not hasattr(self, "_stress_real"):
            self._stress_real = real_frames()
        net = copy.deepcopy(self.ema.net).cpu().float().eval()
        rows = stress_model(net, real=self._stress_real)
        aliased = aliased_model(net)
        bar = aliased_failures(aliased) if float(self.cfg["data"]["aliased"]) > 0 else []
        return max(r.detail for r in rows), failures(rows) + bar, aliased_pixels(aliased)

    def export(self, path: Path, validation: dict | None = None) -> Path:
        """Save the fused EMA weights with the recipe (data, steps, command, validation) in the header, readable
        by all as any file the user writes (the umask decides); a failed write is a one-line ``RunError``."""
        d = self.cfg["data"]
        lr_how = f"degraded: {json.dumps(d['degrade'])}" if d["degrade"] else "antialiased bicubic LR"
        info = {"data": f"{', '.join(d['train'])} ({lr_how}, {d['patch']} px HR crops, batch {d['batch']})",
                "steps": self.step, "command": self.command, "loss": json.dumps(self.cfg["loss"]),
                "validation": validation or {}, "ema": self.cfg["train"]["ema"]}
        if bad := non_finite(self.ema.net.state_dict()):  # never a NaN model as best or final: a black picture
            raise self._diverged(f"the EMA weights hold NaN/inf ({bad[0]}) at step {self.step}, not written to {path}")
        net = copy.deepcopy(self.ema.net).cpu().to(memory_format=torch.contiguous_format)
        try:
            save_weights(net.fuse_for_release(), path, **info)
            os.chmod(path, 0o666 & ~_umask())  # (safetensors writes 0600)
        except (OSError, RuntimeError, *_SAFETENSORS_ERRORS) as e:
            raise RunError(f"can't write {path} at step {self.step}: {_why(e)}") from None
        return path

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
        # every set any row has, each where it was measured (a resumed run may have changed data.val)
        for name in dict.fromkeys(k for r in va for k in r["val"]):
            have = [r for r in va if name in r["val"]]
            axes[1].plot([r["step"] for r in have], [r["val"][name]["psnr"] for r in have], marker="o", label=name)
        axes[1].set_title(f"validation PSNR-Y x{self.scale} (EMA)")
        axes[1].set_xlabel("step")
        axes[1].legend()
        fig.tight_layout()
        try:
            fig.savefig(self.out / "curves.png", dpi=90)
        except OSError as e:
            raise RunError(f"can't write {self.out / 'curves.png'} at step {self.step}: {_why(e)}") from None
        finally:
            plt.close(fig)

    def fit(self, steps: int | None = None) -> dict:
        t = self.cfg["train"]
        total = int(steps or t["steps"])
        if self.step >= total:
            return self._finish_done_run(total)
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
                if not math.isfinite(row["loss"]):
                    raise self._diverged(f"the loss is {row['loss']} at step {self.step}")
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
                    stress, failed, speckle = self.stress()
                    self._log({"step": self.step, "val": last_val, "stress_detail_max": round(stress, 4),
                               "stress_failures": failed, "stress_aliased_px": speckle})
                    txt = " ".join(f"{k} {v['psnr']:.3f}/" + (f"{v['ssim']:.4f}" if "ssim" in v else
                                                                f"temporal {v['temporal']:.3f}")
                                   for k, v in last_val.items())
                    txt += f" stress max|detail| {stress:.2f} aliased px {sum(speckle.values())}"
                    if failed:
                        more = " ..." if len(failed) > 1 else ""
                        txt += f" (fails the stress suite: {failed[0]}{more}; not kept as best)"
                    elif self._beats_best(last_val):
                        self._keep_best(last_val)
                        self.export(self.out / "best.safetensors", last_val)
                        txt += " (best)"
                    self._print(f"val step {self.step}: {txt}")
                    self.plot()
                if self.step % every_ckpt == 0 or self.step == total:
                    self.save_checkpoint()
                if self.step >= total:
                    break
        except DivergedError:
            raise
        except RunError as e:
            raise RunError(f"{e}; fix that and continue from the last checkpoint with --resume") from None
        finally:
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
            pre.close()
            if bar is not None:
                bar.stop()
        final = self._export_final(last_val)
        self._print(f"done: {final}")
        return last_val

    def _export_final(self, validation: dict) -> Path:
        try:
            return self.export(self.out / "final.safetensors", validation)
        except RunError as e:
            raise RunError(f"{e}; {self.checkpoint_path()} holds step {self.step}: run again with --resume to write "
                           "it") from None

    def _finish_done_run(self, total: int) -> dict:
        """Resumed at or past the last step: nothing to train, but a final (and best) that a failed write left
        missing is written now from the checkpoint's EMA."""
        final = self.out / "final.safetensors"
        if _weights_steps(final) == self.step:
            self._print(f"already at step {self.step} >= {total}")
            return {}
        self._print(f"at step {self.step} >= {total}, but {final} does not hold step {self.step}: writing it")
        val = self.validate()
        _, failed, _ = self.stress()
        best = self.out / "best.safetensors"
        # the last validation made this EMA the best, and best.safetensors did not get it: write it too
        if not failed and self._beats_best(val, slack=1e-6) and _weights_steps(best) != self.step:
            self._keep_best(val)
            self.export(best, val)
            self._print(f"wrote {best}")
        final = self._export_final(val)
        self._print(f"done: {final}")
        return val
