"""ParagonSR2 variants: shapes, parameter budgets, fusion equivalence, weights files and metadata."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from psr2video.models import (
    SCALES,
    VARIANTS,
    WeightsError,
    build_model,
    load_model,
    read_metadata,
    save_weights,
)
from psr2video.models.registry import count_params, resolve_weights, shipped_files

# Reference (Phhofm/ParagonSR2 v11) parameter counts, x2 and x4 (DESIGN.md).
REFERENCE_PARAMS = {"realtime": (16_780, 44_620), "stream": (110_092, 221_068),
                    "photo": (745_292, 1_188_428), "pro": (1_993_420, 2_436_556)}


# every variant at every scale; the attention variants above x2 are slow on a CPU (CI runs them: --run-slow)
ALL_CASES = [pytest.param(v, s, marks=[pytest.mark.slow] if v in ("photo", "pro") and s > 2 else [])
             for s in SCALES for v in VARIANTS]


def _randomise(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give LayerScale and detail_gain non-trivial values so every branch matters in the comparison."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("gamma") or name == "detail_gain":
                p.copy_(0.2 + 0.6 * torch.rand(p.shape, generator=g))
    return net


# the attention variants' forward pass is covered at x2 by test_fusion_is_exact; their shape sweep is slow
@pytest.mark.parametrize("variant,scale", [pytest.param(*c.values, marks=[pytest.mark.slow])
                                           if c.values[0] in ("photo", "pro") else c for c in ALL_CASES])
def test_shapes_odd_sizes_and_batch(variant: str, scale: int) -> None:
    net = build_model(variant, scale).eval()
    for shape in [(2, 3, 7, 13), (1, 3, 1, 1), (1, 3, 17, 3)]:
        with torch.no_grad():
            y = net(torch.rand(*shape))
        assert y.shape == (shape[0], 3, shape[2] * scale, shape[3] * scale)
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("variant,scale", [c for c in ALL_CASES if c.values[1] in (2, 4)])
def test_param_counts_within_10_percent_of_reference(variant: str, scale: int) -> None:
    fused = build_model(variant, scale).fuse_for_release()
    ref = REFERENCE_PARAMS[variant][0 if scale == 2 else 1]
    assert abs(count_params(fused) / ref - 1) < 0.10
    assert fused.descriptor.params == count_params(fused)


@pytest.mark.parametrize("variant,scale", ALL_CASES)
def test_fusion_is_exact(variant: str, scale: int) -> None:
    torch.manual_seed(scale)
    net = _randomise(build_model(variant, scale).eval(), scale)
    fused = net.fuse_for_release()
    assert fused.fused and not net.fused
    assert not any(n.endswith("gamma") for n, _ in fused.named_parameters())
    assert count_params(fused) < count_params(net)
    x = torch.rand(2, 3, 19, 21)
    with torch.no_grad():
        diff = (net(x) - fused(x)).abs().max().item()
    assert diff < 1e-5


def test_attention_window_handles_non_multiples_and_is_batch_independent() -> None:
    net = _randomise(build_model("photo", 2).eval())
    x = torch.rand(2, 3, 20, 35)
    with torch.no_grad():
        both = net(x)
        one = net(x[1:])
    assert (both[1:] - one).abs().max().item() < 1e-5


def test_descriptor_travels_with_model() -> None:
    d = build_model("photo", 3).descriptor
    assert (d.variant, d.scale, d.window, d.tile_align, d.alpha) == ("photo", 3, 16, 16, 1.0)
    assert build_model("realtime", 2).descriptor.window == 0
    assert build_model("mks", 4).descriptor.scale == 4


@pytest.mark.parametrize("fused", [False, True])
def test_weights_roundtrip_fused_and_unfused(tmp_path, fused: bool) -> None:
    net = _randomise(build_model("stream", 2, alpha=0.5).eval())
    to_save = net.fuse_for_release() if fused else net
    path = save_weights(to_save, tmp_path / "w.safetensors", steps=123)
    meta = read_metadata(path)
    assert meta["variant"] == "stream" and meta["scale"] == 2 and meta["fused"] is fused
    assert meta["arch"]["alpha"] == 0.5 and meta["steps"] == 123
    loaded = load_model(weights=path)
    assert loaded.fused and loaded.base.alpha == 0.5 and loaded.descriptor.alpha == 0.5
    x = torch.rand(1, 3, 11, 9)
    with torch.no_grad():
        assert (loaded(x) - net(x)).abs().max().item() < 1e-5
    unfused = load_model(weights=path, fuse=False)
    assert unfused.fused is fused


def test_weights_mismatch_and_bad_files_are_clear_errors(tmp_path) -> None:
    path = save_weights(build_model("realtime", 2), tmp_path / "rt.safetensors")
    with pytest.raises(WeightsError, match="variant 'realtime'"):
        load_model("stream", 2, weights=path)
    with pytest.raises(WeightsError, match="x2 model"):
        load_model("realtime", 4, weights=path)
    with pytest.raises(WeightsError, match="not found"):
        load_model(weights=tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="not a readable"):
        load_model(weights=junk)
    bare = tmp_path / "bare.safetensors"
    save_file({"x": torch.zeros(1)}, str(bare))
    with pytest.raises(WeightsError, match="no psr2video metadata"):
        load_model(weights=bare)
    wrong = tmp_path / "wrong.safetensors"
    meta = read_metadata(path)
    meta["arch"]["width"] = 8
    save_file({"x": torch.zeros(1)}, str(wrong), metadata={"psr2video": json.dumps(meta)})
    with pytest.raises(WeightsError, match="does not match"):
        load_model(weights=wrong)


def test_shipped_presets_load_by_name() -> None:
    """``--weights clean`` picks ``{variant}_x{scale}_clean``: every shipped file loads by its preset name, and
    an unknown name says which presets exist."""
    for name, path in shipped_files().items():
        variant, scale, *preset = name.split("_")
        scale = int(scale.removeprefix("x"))
        assert resolve_weights(variant, scale, preset[0] if preset else str(path)) == path
        net = load_model(variant, scale, weights=preset[0]) if preset else load_model(variant, scale)
        assert net.descriptor.scale == scale and read_metadata(path)["variant"] == variant
    with pytest.raises(WeightsError, match=r"no weights file or shipped preset 'sharp' .*presets: clean"):
        load_model("realtime", 2, weights="sharp")


def test_unknown_variant_and_scale() -> None:
    with pytest.raises(ValueError, match="unknown variant"):
        build_model("huge", 2)
    with pytest.raises(ValueError, match="unsupported scale"):
        build_model("stream", 5)


def test_a_file_whose_tensors_dont_match_its_metadata_says_which(tmp_path) -> None:
    """The message ended at torch's header line ("Error(s) in loading state_dict for ParagonSR2:"): which
    tensors are missing, extra or of another shape is said now, in the one line."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    src = shipped_files()["realtime_x2"]
    with safe_open(str(src), "pt") as f:
        meta = f.metadata()
    state = load_file(str(src))
    name = sorted(state)[0]
    del state[name]
    save_file(state, str(tmp_path / "broken.safetensors"), metadata=meta)
    with pytest.raises(WeightsError, match=rf"1 tensor\(s\) missing \({name}\)"):
        load_model(weights=str(tmp_path / "broken.safetensors"))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_with_non_finite_values_are_refused_in_one_line(tmp_path, bad) -> None:
    # a diverged training run's final.safetensors drew an all-black picture with exit 0
    from psr2video import Upscaler

    net = build_model("realtime", 2).fuse_for_release()
    p = save_weights(net, tmp_path / "diverged.safetensors")
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(p), framework="pt") as f:
        meta = f.metadata()
    state = load_file(str(p))
    name = sorted(state)[-1]
    state[name] = state[name].clone().fill_(bad)
    save_file(state, str(p), metadata=meta)
    for load in (lambda: load_model(weights=p), lambda: Upscaler(variant=None, scale=None, weights=p, device="cpu")):
        with pytest.raises(WeightsError) as e:
            load()
        assert "\n" not in str(e.value) and "NaN/inf" in str(e.value) and name in str(e.value)
