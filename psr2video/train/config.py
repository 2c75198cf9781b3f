"""Training configs: the defaults, ``load_config`` (TOML + overrides) and ``check_config``, the one validation layer.

Every key is checked before anything runs: its type, its range, its choices, with the key's path in the message
(``data.batch must be a whole number >= 1, got 0``), so a typo costs a second, not the training since the last
checkpoint. A single folder given as a string (``train = "data/mine"``) is taken as a one-folder list.
"""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path
from typing import Any

from ..errors import PsrError
from ..names import SCALES, VARIANTS, device_name_problem

ROOT = Path(__file__).resolve().parents[2]
# the HR of a hard-edged crop: its nearest enlargement, or that only where the LR is flat (no target at the edges)
ALIASED_TARGETS = ("nearest", "flat")
DEFAULTS: dict = {
    "model": {"variant": "realtime", "scale": 2, "alpha": None, "zero_tail": True},
    "data": {"train": ["../shared/data/train/T91", "../shared/data/train/BSD200"], "patch": 64, "batch": 32,
             "augment": True, "prefetch": 6, "synthetic": 0.0, "degrade_share": 1.0,
             "rescale": 1.0, "aliased": 0.0, "aliased_target": "nearest",
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
SCHEDULES = ("cosine", "multistep", "constant")
AMP = ("bf16", "fp16", "fp32")  # fp32: no autocast; autocast is used on CUDA only
DEGRADE_KEYS = {"blur": ("prob", "sigma"), "noise": ("prob", "sigma", "gray_prob"), "jpeg": ("prob", "quality"),
                "h264": ("prob", "crf", "preset"),
                "video": ("prob", "codecs", "crf", "presets", "frames", "motion")}
DEGRADE_CODECS = ("libx264", "libx265")  # what the training round trip decodes (h264 / hevc)
X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
# losses.py's PIXEL_LOSSES and PerceptualLoss.LAYERS (named here: losses.py imports this module, not the reverse)
PIXEL_LOSS_NAMES = ("l1", "l2", "charbonnier", "ms_ssim", "fft")
PERCEPTUAL_LAYERS = ("conv1_2", "conv2_2", "conv3_4", "conv4_4", "conv5_4")
LOSS_EXTRA = ("perceptual", "perceptual_weights", "perceptual_layers", "temporal", "flat_hinge")
# [loss] keys that are not terms of losses.CombinedLoss: the perceptual term's settings, and the terms the trainer
# adds itself (they need pairs of frames or the NaN of a flat target); none of them alone enables a loss
LOSS_NOT_COMBINED = ("perceptual_weights", "perceptual_layers", "temporal", "flat_hinge")
VAL_VIDEO_KEYS = ("folder", "crf", "clips")


class ConfigError(PsrError, ValueError):
    """A bad config file or value (reported as one line by the CLI)."""


def _merge(base: dict, over: dict, where: str = "") -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        key = f"{where}.{k}" if where else k
        if k not in base and where not in ("loss", "data.degrade", "data.val_video"):
            raise ConfigError(f"unknown config key {key}")
        if isinstance(base.get(k), dict):
            if not isinstance(v, dict):
                raise ConfigError(f"{key} must be a table ([{key}] or {k} = {{...}}), got {v!r}")
            out[k] = _merge(base[k], v, key)
        else:
            out[k] = v
    return out


def load_config(path: str | Path | None = None, **overrides) -> dict:
    """DEFAULTS merged with a TOML file and ``section__key=value`` overrides, checked (``check_config``);
    relative data paths resolve against the repository root (where ``../shared`` lives), then the config's
    folder."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            text = path.read_bytes().decode("utf-8")
            user = tomllib.loads(text)
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not a TOML file (not UTF-8 text)") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path} is not a valid TOML file: {e}") from None
        if "loss" in user:
            cfg["loss"] = {}
        cfg = _merge(cfg, user)
    for key, v in overrides.items():
        sec, _, k = key.partition("__")
        if k not in DEFAULTS.get(sec, {}):
            raise ConfigError(f"unknown config key {sec}.{k}")
        cfg[sec][k] = v
    cfg["_config"] = str(path) if path else None
    return check_config(cfg)


def resolve(p: str, cfg_path: str | None) -> Path:
    """A config's path: absolute, else the first of the repository root, the config's folder and the working
    folder that has it (the repository root when none does)."""
    q = Path(p).expanduser()
    if q.is_absolute():
        return q
    for base in (ROOT, Path(cfg_path).parent if cfg_path else None, Path.cwd()):
        if base is not None and (base / q).exists():
            return (base / q).resolve()
    return (ROOT / q).resolve()


# ---- the checks: each raises a ConfigError naming the key ----

def _bad(key: str, want: str, v: Any) -> ConfigError:
    return ConfigError(f"{key} must be {want}, got {v!r}")


def _span(lo: float | None, hi: float | None, lo_open: bool = False, hi_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f" {'<' if hi_open else '<='} {hi:g}"
    return ""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) and math.isfinite(v)


def _in(v: float, lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> bool:
    return ((lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or (v < hi if hi_open else v <= hi)))


def _int(t: dict, k: str, key: str, lo: int | None = None, hi: int | None = None) -> None:
    v = t[k]
    if not _is_int(v) or not _in(v, lo, hi, False, False):
        raise _bad(key, "a whole number" + _span(lo, hi), v)


def _num(t: dict, k: str, key: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
         hi_open: bool = False) -> None:
    v = t[k]
    if not _is_num(v) or not _in(v, lo, hi, lo_open, hi_open):
        raise _bad(key, "a number" + _span(lo, hi, lo_open, hi_open), v)


def _bool(t: dict, k: str, key: str) -> None:
    if not isinstance(t[k], bool):
        raise _bad(key, "true or false", t[k])


def _choice(t: dict, k: str, key: str, choices: tuple, what: str = "value") -> None:
    v = t[k]
    if isinstance(v, bool) or v not in choices or type(v) is not type(choices[0]):
        raise ConfigError(f"{key}: unknown {what} {v!r}; choose from {', '.join(map(str, choices))}")


def _str(t: dict, k: str, key: str, optional: bool = False) -> None:
    v = t[k]
    if optional and v is None:
        return
    if not isinstance(v, str) or not v.strip():
        raise _bad(key, "a path (text)" if optional else "text", v)


def _folders(t: dict, k: str, key: str, empty_ok: bool) -> None:
    """A list of folders; one folder as a string becomes a one-element list."""
    v = t[k]
    if isinstance(v, str):
        v = t[k] = [v]
    if not isinstance(v, list) or not all(isinstance(f, str) and f.strip() for f in v):
        raise _bad(key, 'a folder or a list of folders (["a", "b"])', v)
    if not v and not empty_ok:
        raise ConfigError(f"{key} is empty: give at least one folder of pictures")


def _pair(t: dict, k: str, key: str, lo: float | None = None, hi: float | None = None, whole: bool = False,
          lo_open: bool = False) -> None:
    """``[low, high]`` with low <= high, both in range."""
    v = t[k]
    ok = isinstance(v, list) and len(v) == 2 and all(_is_int(x) if whole else _is_num(x) for x in v)
    if not ok or not all(_in(x, lo, hi, lo_open, False) for x in v) or v[0] > v[1]:
        kind = "whole numbers" if whole else "numbers"
        raise _bad(key, f"[low, high], two {kind}{_span(lo, hi, lo_open)} with low <= high", v)


def _betas(t: dict, k: str, key: str) -> None:
    v = t[k]
    if not (isinstance(v, list) and len(v) == 2 and all(_is_num(x) and 0 <= x < 1 for x in v)):
        raise _bad(key, "[beta1, beta2], two numbers in [0, 1)", v)


def _keys(t: Any, key: str, allowed: tuple[str, ...]) -> None:
    if not isinstance(t, dict):
        raise ConfigError(f"{key} must be a table ({key} = {{...}}), got {t!r}")
    if unknown := sorted(set(t) - set(allowed)):
        raise ConfigError(f"unknown {key} key(s) {', '.join(unknown)} ({', '.join(allowed)})")


def _check_degrade(deg: Any) -> None:
    _keys(deg, "data.degrade", tuple(DEGRADE_KEYS))
    for stage, c in deg.items():
        key = f"data.degrade.{stage}"
        _keys(c, key, DEGRADE_KEYS[stage])
        if "prob" in c:
            _num(c, "prob", f"{key}.prob", 0, 1)
        if stage == "blur" and "sigma" in c:
            _pair(c, "sigma", f"{key}.sigma", 0, None, lo_open=True)
        if stage == "noise":
            if "sigma" in c:
                _pair(c, "sigma", f"{key}.sigma", 0)
            if "gray_prob" in c:
                _num(c, "gray_prob", f"{key}.gray_prob", 0, 1)
        if stage == "jpeg" and "quality" in c:
            _pair(c, "quality", f"{key}.quality", 1, 100, whole=True)
        if stage in ("h264", "video") and "crf" in c:
            _pair(c, "crf", f"{key}.crf", 0, 51, whole=True)
        if stage == "h264" and "preset" in c:
            _choice(c, "preset", f"{key}.preset", X26X_PRESETS, "preset")
        if stage == "video":
            for name, choices, what in (("codecs", DEGRADE_CODECS, "encoder"), ("presets", X26X_PRESETS, "preset")):
                if name not in c:
                    continue
                if isinstance(c[name], str):
                    c[name] = [c[name]]
                if not isinstance(c[name], list) or not c[name]:
                    raise _bad(f"{key}.{name}", f"a list of {what}s ({', '.join(choices[:2])} ...)", c[name])
                for item in c[name]:
                    _choice({name: item}, name, f"{key}.{name}", choices, what)
            if "frames" in c:
                _int(c, "frames", f"{key}.frames", 2)
            if "motion" in c:
                _int(c, "motion", f"{key}.motion", 0)


def _check_loss(loss: Any) -> None:
    names = (*PIXEL_LOSS_NAMES, *LOSS_EXTRA)
    _keys(loss, "loss", names)
    for k, v in loss.items():
        if k == "perceptual_weights":
            _str(loss, k, "loss.perceptual_weights", optional=True)
        elif k == "perceptual_layers":
            if not isinstance(v, dict):
                raise _bad("loss.perceptual_layers", "a table of layer = weight", v)
            _keys(v, "loss.perceptual_layers", PERCEPTUAL_LAYERS)
            for layer in v:
                _num(v, layer, f"loss.perceptual_layers.{layer}", 0)
        else:
            _num(loss, k, f"loss.{k}", 0)
    if not any(loss.get(k) for k in names if k not in LOSS_NOT_COMBINED):
        raise ConfigError("the [loss] table enables no loss: give one of "
                          f"{', '.join([*PIXEL_LOSS_NAMES, 'perceptual'])} a weight above 0")


def check_config(cfg: dict) -> dict:
    """Check every key of a config (types, ranges, choices) and return it; a string where a list of folders or
    codecs belongs is made a one-element list. Raises ``ConfigError`` naming the key. Files and folders are
    checked by the trainer (``Trainer`` reads them all before step 1)."""
    for sec in DEFAULTS:
        if not isinstance(cfg.get(sec), dict):
            raise ConfigError(f"[{sec}] must be a table, got {cfg.get(sec)!r}")
        if sec != "loss" and (missing := sorted(set(DEFAULTS[sec]) - set(cfg[sec]))):
            raise ConfigError(f"config section [{sec}] lacks {', '.join(missing)}")
        if sec != "loss" and (unknown := sorted(set(cfg[sec]) - set(DEFAULTS[sec]))):
            raise ConfigError(f"unknown config key(s) {', '.join(f'{sec}.{k}' for k in unknown)}")
    m, d, o, g, t = cfg["model"], cfg["data"], cfg["optim"], cfg["gan"], cfg["train"]
    _choice(m, "variant", "model.variant", VARIANTS, "variant")
    _choice(m, "scale", "model.scale", SCALES, "scale")
    if m["alpha"] is not None:
        _num(m, "alpha", "model.alpha", 0)
    _bool(m, "zero_tail", "model.zero_tail")

    _folders(d, "train", "data.train", empty_ok=False)
    _folders(d, "val", "data.val", empty_ok=True)
    _int(d, "patch", "data.patch", 1)
    if d["patch"] % m["scale"]:
        raise ConfigError(f"data.patch {d['patch']} must be a multiple of model.scale {m['scale']} (the HR crop "
                          "of a whole LR patch)")
    _int(d, "batch", "data.batch", 1)
    _bool(d, "augment", "data.augment")
    _int(d, "prefetch", "data.prefetch", 1)
    _num(d, "synthetic", "data.synthetic", 0, 1)
    _num(d, "degrade_share", "data.degrade_share", 0, 1)
    if not (_is_num(d["rescale"]) and 0 < d["rescale"] <= 1):
        raise ConfigError(f"data.rescale {d['rescale']!r} must be in (0, 1]: the smallest factor an HR image is "
                          "shrunk by")
    for k in ("val_video", "degrade"):  # none is an empty table (Python callers)
        if d[k] is None:
            d[k] = {}
    vv = d["val_video"]
    _keys(vv, "data.val_video", VAL_VIDEO_KEYS)
    if vv:
        if "folder" not in vv:
            raise ConfigError('data.val_video needs folder = "..." (HR images to pan across)')
        _str(vv, "folder", "data.val_video.folder")
        if "crf" in vv:
            _int(vv, "crf", "data.val_video.crf", 0, 51)
        if "clips" in vv:
            _int(vv, "clips", "data.val_video.clips", 0)
    _check_degrade(d["degrade"])
    _num(d, "aliased", "data.aliased", 0, 1)
    if d["aliased"] > 0 and not d["synthetic"] > 0:
        raise ConfigError(f"data.aliased {d['aliased']:g} is a share of the synthetic crops: set data.synthetic "
                          "above 0 too")
    if d["aliased_target"] not in ALIASED_TARGETS:
        raise ConfigError(f"data.aliased_target {d['aliased_target']!r}: choose from {', '.join(ALIASED_TARGETS)}")
    if d["aliased_target"] != "nearest" and not d["aliased"] > 0:
        raise ConfigError(f"data.aliased_target {d['aliased_target']!r} is the target of the hard-edged crops: set "
                          "data.aliased above 0 too")
    if d["aliased"] > 0 and d["degrade"] and d["degrade_share"] >= 1:
        raise ConfigError(f"data.aliased {d['aliased']:g} makes hard-edged crops in clean batches only (the "
                          "degradations start from an HR), and data.degrade_share 1 leaves none: lower it")

    _check_loss(cfg["loss"])
    if cfg["loss"].get("flat_hinge") and d["aliased_target"] != "flat":
        raise ConfigError("[loss] flat_hinge weighs the hard-edged crops' flat target: set data.aliased_target = "
                          "\"flat\" (and data.aliased above 0)")
    if cfg["loss"].get("temporal") and int((d["degrade"].get("video") or {}).get("frames", 2)) <= 2:
        raise ConfigError("[loss] temporal needs panning clips: [data.degrade] video with frames = 3 or more")

    _num(o, "lr", "optim.lr", 0, lo_open=True)
    _num(o, "weight_decay", "optim.weight_decay", 0)
    _betas(o, "betas", "optim.betas")
    _choice(o, "schedule", "optim.schedule", SCHEDULES, "schedule")
    _int(o, "warmup", "optim.warmup", 0)
    _num(o, "min_lr", "optim.min_lr", 0)
    if not (isinstance(o["milestones"], list) and all(_is_int(x) and x >= 0 for x in o["milestones"])):
        raise _bad("optim.milestones", "a list of steps (whole numbers >= 0)", o["milestones"])
    _num(o, "gamma", "optim.gamma", 0, lo_open=True)
    _num(o, "grad_clip", "optim.grad_clip", 0)

    _bool(g, "enabled", "gan.enabled")
    _num(g, "weight", "gan.weight", 0)
    _num(g, "lr", "gan.lr", 0, lo_open=True)
    _betas(g, "betas", "gan.betas")
    _num(g, "r1", "gan.r1", 0)
    _num(g, "r2", "gan.r2", 0)
    if not (isinstance(g["channels"], list) and len(g["channels"]) >= 2
            and all(_is_int(x) and x >= 1 for x in g["channels"])):
        raise _bad("gan.channels", "a list of two or more widths (whole numbers >= 1)", g["channels"])
    _int(g, "penalty_every", "gan.penalty_every", 1)
    _int(g, "start", "gan.start", 0)

    _int(t, "steps", "train.steps", 1)
    _int(t, "seed", "train.seed", 0)
    _num(t, "ema", "train.ema", 0, 1, hi_open=True)
    _int(t, "threads", "train.threads", 1)
    _str(t, "device", "train.device")
    if (problem := device_name_problem(t["device"])) is not None:
        raise ConfigError(f"train.device: {problem}")
    _choice(t, "amp", "train.amp", AMP, "precision")
    for k in ("val_every", "ckpt_every", "log_every"):
        _int(t, k, f"train.{k}", 1)
    _str(t, "out", "train.out", optional=True)
    if t["init"] == "":
        t["init"] = None
    _str(t, "init", "train.init", optional=True)
    _bool(t, "channels_last", "train.channels_last")
    return cfg
