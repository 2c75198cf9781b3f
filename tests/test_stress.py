"""The stress suite: shipped models must never damage text, lines, UI or flat colour (fp32 and fp16)."""

from __future__ import annotations

import pytest
import torch

from psr2video import cards
from psr2video.models import build_model, load_model
from psr2video.models.registry import shipped_files
from psr2video.stress import DETAIL_LIMIT, failures, run_suite, stress_model


def test_cards_are_deterministic_and_valid():
    for name in cards.CARDS:
        a, b = cards.card(name, 96, 64), cards.card(name, 96, 64)
        assert a.shape == (3, 64, 96) and torch.equal(a, b)
        assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    assert float(cards.card("text_bw_aa", 96, 64).std()) > 0.1  # text was drawn
    g = torch.Generator().manual_seed(3)
    p = cards.random_patch(48, g)
    assert p.shape == (3, 48, 48)


def test_suite_fails_an_exploding_model():
    base = build_model("mks", 2)

    def bad(x: torch.Tensor) -> torch.Tensor:  # MKS plus a quadratic "detail" that blows up on edges
        y = base(x)
        return y + 50 * (y - 0.5) ** 2

    rows = run_suite(bad, 2, real=[])
    assert failures(rows) and all(r.detail > DETAIL_LIMIT for r in rows if r.card == "lines")


def test_suite_passes_mks_itself():
    base = build_model("mks", 2)
    rows = run_suite(lambda x: base(x), 2, real=[])
    assert not failures(rows) and max(r.detail for r in rows) == 0.0


@pytest.mark.parametrize("name", list(shipped_files()))
def test_shipped_weights_pass_the_stress_suite(name):
    net = load_model(weights=shipped_files()[name])
    rows = stress_model(net)
    assert not failures(rows), failures(rows)
    assert {r.precision for r in rows} == {"fp32", "fp16"} and any(r.kind == "real" for r in rows)


# Shipped files that fail the stress suite's aliased section (issue 9), each with the most speckled pixels it may
# have (the worse precision per card, summed, as the trainer logs it). A ratchet: a file not listed must pass the
# section, a listed one may not get worse, and one that passes must leave the list. Empty since every shipped file
# passes, so stress.ALIASED_IS_A_BAR is True and the section counts like the main bar; listing a file again (a
# retrained file that can't pass yet) means turning the bar off, and the test below keeps the two in step.
ALIASED_KNOWN: dict[str, int] = {}


@pytest.mark.parametrize("name", list(shipped_files()))
def test_shipped_weights_hold_the_aliased_ratchet(name):
    from psr2video.stress import ALIASED_IS_A_BAR, aliased_model, aliased_pixels

    worst = aliased_pixels(aliased_model(load_model(weights=shipped_files()[name])))
    px = sum(worst.values())
    if name not in ALIASED_KNOWN:
        assert px == 0, f"{name} speckles {px} pixels on the aliased cards: {worst}"
    else:
        assert 0 < px <= ALIASED_KNOWN[name], (
            f"{name}: {px} speckled pixels against the {ALIASED_KNOWN[name]} listed ({worst}); "
            + ("it passes now: take it off ALIASED_KNOWN" if px == 0 else "it got worse"))
    assert ALIASED_IS_A_BAR == (not ALIASED_KNOWN)


def test_eval_cli_prints_video_and_stress_tables(tmp_path, pan_folder):
    import json

    from click.testing import CliRunner

    from psr2video.cli import cli

    folder = pan_folder
    out = tmp_path / "r.json"
    r = CliRunner().invoke(cli, ["eval", "--variant", "realtime", "--variant", "lanczos", "--dataset", str(folder),
                                 "--no-ssim", "--video", "--video-dataset", str(folder), "--stress",
                                 "--json", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    assert {x["method"] for x in rep["video"]} == {"realtime", "lanczos"}
    assert all(x["frames"] == 8 and x["temporal"] > 0 for x in rep["video"])
    assert {x["precision"] for x in rep["stress"]} == {"fp32", "fp16"} and all(x["passed"] for x in rep["stress"])
    assert "compressed video" in r.output and "stress: realtime" in r.output
    # the aliased section comes after, a bar the shipped realtime file passes: exit 0
    assert "stress, aliased: realtime" in r.output and "neighbourhood; a bar)" in " ".join(r.output.split())
    assert {x["card"] for x in rep["stress_aliased"]} == set(cards.ALIASED_CARDS)
    assert all({"speckle", "speckle_mks", "worst"} <= set(x) for x in rep["stress_aliased"])
    assert all(x["passed"] for x in rep["stress_aliased"])


def test_revision_1_stream_files_are_refused_and_old_realtime_files_load(tmp_path):
    import json

    from safetensors.torch import load_file, save_file

    from psr2video.models import WeightsError, save_weights
    from psr2video.models.registry import META_KEY, read_metadata

    def as_revision_1(path):
        meta = read_metadata(path)
        meta["arch"].pop("revision")  # what files written before the field existed look like
        save_file(load_file(str(path)), str(path), metadata={META_KEY: json.dumps(meta)})

    s = save_weights(build_model("stream", 2), tmp_path / "old_stream.safetensors")
    as_revision_1(s)
    with pytest.raises(WeightsError, match="revision 1 .*refuses"):
        load_model(weights=s)
    r = save_weights(build_model("realtime", 2), tmp_path / "old_realtime.safetensors")
    as_revision_1(r)
    assert load_model(weights=r).spec.revision == 1  # the Nano block did not change


def test_stream_block_is_bounded_whatever_the_input():
    """Revision 2's gate sees a normalised vector: scaling the block's input 1000x cannot blow the update up
    quadratically (revision 1's u*v grew 1e6x)."""
    from psr2video.models.blocks import StreamBlock

    torch.manual_seed(0)
    blk = StreamBlock(8, ls_init=1.0).eval()
    x = torch.randn(1, 8, 16, 16)
    with torch.no_grad():
        small = (blk(x) - x).abs().max()
        big = (blk(1000 * x) - 1000 * x).abs().max()
    assert float(big) < 2 * float(small) + 1e-3


@pytest.mark.parametrize("model_psnr, passed", [(14.03285, True), (14.0329 - 0.009, True), (14.0329 - 0.02, False)])
def test_a_model_that_ties_mks2021_on_text_passes(monkeypatch, model_psnr, passed):
    # "PSNR 14.0329 < MKS2021 14.0329" failed a model that ties MKS2021 to 4 places: the bar has 0.01 dB of slack
    from psr2video import stress

    seq = iter([model_psnr, 14.0329])  # judge measures the model, then MKS2021
    monkeypatch.setattr(stress, "psnr_y", lambda *a, **k: next(seq))
    base = build_model("mks", 2)
    r = stress.judge("text_bw_aa", "text", "fp32", cards.card("text_bw_aa", 64, 48), base, 2, base)
    assert r.passed is passed and (passed or "< MKS2021" in r.why)


def test_aliased_cards_are_hard_edged_and_deterministic():
    for name in cards.ALIASED_CARDS:
        a, b = cards.aliased_card(name, 64, 48), cards.aliased_card(name, 64, 48)
        assert a.shape == (3, 48, 64) and torch.equal(a, b)
        assert torch.equal((a * 255).round() / 255, a)  # already 8-bit: nothing is resampled on the way in
        if name != "subtitle_outlined_photo":  # a few flat colours, no antialiasing grey
            assert len(torch.unique(a.reshape(3, -1), dim=1).T) <= 16, name
    sub = cards.aliased_card("subtitle_outlined_flat", 128, 96)
    colours = {tuple(c) for c in (sub * 255).round().int().reshape(3, -1).T.tolist()}
    assert colours == {(0, 0, 0), (255, 255, 255), (90, 90, 90)}  # white text, black outline, grey: nothing else
    with pytest.raises(ValueError, match="unknown aliased card"):
        cards.aliased_card("nope")


def test_aliased_measure_passes_mks_and_catches_speckle():
    """The aliased section's measure: MKS2021 leaves every flat 3x3 LR neighbourhood within 24 codes (0 pixels);
    a fn that speckles inside flat areas is caught, reported and, only when the section is a bar, failed."""
    from psr2video import stress

    base = build_model("mks", 2)
    rows = stress.run_aliased(lambda x: base(x), 2)
    assert {r.card for r in rows} == set(cards.ALIASED_CARDS)
    assert all(r.passed and r.speckle == 0 and r.speckle_mks == 0 for r in rows)

    def speckler(x: torch.Tensor) -> torch.Tensor:  # MKS2021 with every 7th output pixel pushed 40 codes
        y = base(x).clone()
        y[..., ::7, ::7] = (y[..., ::7, ::7] + torch.where(y[..., ::7, ::7] > 0.5, -40, 40) / 255)
        return y

    bad = stress.run_aliased(speckler, 2)
    assert all(r.speckle > 0 and r.worst >= 39 and not r.passed and "codes off" in r.why for r in bad
               if r.card != "subtitle_outlined_photo")  # (few flat neighbourhoods on a photo)
    assert stress.aliased_failures(bad) == (stress.failures(bad) if stress.ALIASED_IS_A_BAR else [])
    assert len(stress.aliased_failures(bad, bar=True)) == sum(not r.passed for r in bad) >= 5
    n, worst = stress.speckle(torch.full((1, 3, 8, 8), 0.5), torch.full((1, 3, 4, 4), 0.5), 2)
    assert (n, worst) == (0, 0)
    lr = torch.zeros(1, 3, 6, 6)
    lr[..., 0, 0] = 1.0  # one bright pixel: its neighbours' neighbourhoods are not flat, the far corner's are
    mask = stress.flat_mask(lr, 2)[0, 0]
    assert not mask[:4, :4].any() and mask[-4:, -4:].all()
    assert "aliased" in stress.aliased_table(rows).title
