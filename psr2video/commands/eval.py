"""``psr2video eval``: PSNR-Y / SSIM-Y tables for variants, weights files and plain resamplers."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import UserError

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "val"
BASELINE_METHODS = ("bicubic", "lanczos", "mks")


def _datasets(root: Path, names: tuple[str, ...]) -> list[Path]:
    out = []
    for n in names:
        p = Path(n) if Path(n).is_dir() else root / n
        if not p.is_dir():
            raise UserError(f"dataset {n!r} not found (looked for {p}); pass a folder or --data-root")
        out.append(p)
    return out


@click.command("eval")
@click.option("--variant", "variants", multiple=True,
              help="Variant(s) with shipped weights, or a baseline: bicubic, lanczos, mks.")
@click.option("--weights", "weights", multiple=True, type=click.Path(dir_okay=False),
              help="psr2video .safetensors weights file(s) to evaluate.")
@click.option("--baselines", is_flag=True, help="Also evaluate bicubic, lanczos and mks.")
@click.option("--scale", type=click.IntRange(2, 4), default=2, show_default=True)
@click.option("--dataset", "datasets", multiple=True, default=("Set5", "Set14", "B100"), show_default=True,
              help="Dataset names under --data-root, or image folders.")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DATA,
              show_default=True)
@click.option("--degraded", is_flag=True, help="JPEG-compress the LR at quality 75 (robustness check).")
@click.option("--alpha", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="Sharpening blend for the mks baseline.")
@click.option("--no-ssim", is_flag=True, help="Skip SSIM (faster).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Write results here.")
@click.option("--record", is_flag=True,
              help="Store the results in each --weights file's metadata (validation), e.g. before shipping it.")
def eval_cmd(variants, weights, baselines, scale, datasets, data_root, degraded, alpha, no_ssim, device,
             json_out, record) -> None:
    """Measure PSNR-Y / SSIM-Y with the standard SR protocol (bicubic LR, Y channel, shaved border)."""
    from rich.console import Console
    from rich.table import Table

    from ..evaluate import evaluate, pil_resize, tensor_fn
    from ..models import WeightsError
    from ..models.magic import MagicKernelSharp2021
    from ..runtime.upscaler import Upscaler

    methods: list[tuple[str, object]] = []
    names = list(variants) + (list(BASELINE_METHODS) if baselines else [])
    if not names and not weights:
        names = list(BASELINE_METHODS)
    try:
        for n in dict.fromkeys(names):
            if n in ("bicubic", "lanczos"):
                methods.append((n, pil_resize(n)))
            elif n == "mks":
                methods.append((f"mks a={alpha:g}", tensor_fn(MagicKernelSharp2021(scale, alpha))))
            else:
                up = Upscaler(variant=n, scale=scale, device=device, backend="torch", precision="fp32")
                methods.append((n, tensor_fn(up)))
        for w in weights:
            up = Upscaler(variant=None, scale=None, weights=w, device=device, backend="torch", precision="fp32")
            if up.scale != scale:
                raise UserError(f"{w} is a x{up.scale} model; run eval with --scale {up.scale}")
            methods.append((Path(w).stem, tensor_fn(up)))
    except (WeightsError, ValueError) as e:
        raise UserError(str(e)) from None
    folders = _datasets(data_root, datasets)
    results = []
    for name, fn in methods:
        for folder in folders:
            results.append(evaluate(fn, folder, scale, name, ssim=not no_ssim,
                                    jpeg_quality=75 if degraded else None))
    table = Table(title=f"x{scale} PSNR-Y / SSIM-Y" + (" (LR JPEG q75)" if degraded else ""))
    table.add_column("method")
    for f in folders:
        table.add_column(f.name, justify="right")
    for name, _ in methods:
        cells = [f"{r.psnr:.2f}" + ("" if no_ssim else f" / {r.ssim:.4f}")
                 for r in results if r.method == name]
        table.add_row(name, *cells)
    Console().print(table)
    if json_out:
        json_out.write_text(json.dumps([r.__dict__ for r in results], indent=2))
        click.echo(f"wrote {json_out}")
    if record:
        if degraded:
            raise UserError("--record stores clean-protocol results only; drop --degraded")
        for w in weights:
            rows = {r.dataset: {"psnr": round(r.psnr, 4), **({} if no_ssim else {"ssim": round(r.ssim, 5)})}
                    for r in results if r.method == Path(w).stem}
            record_validation(Path(w), rows)
            click.echo(f"recorded {', '.join(rows)} in {w}")


def record_validation(path: Path, rows: dict) -> None:
    """Merge ``rows`` ({dataset: {psnr, ssim}}) into the ``validation`` entry of a weights file's metadata."""
    from safetensors.torch import load_file, save_file

    from ..models.registry import META_KEY, read_metadata

    meta = read_metadata(path)
    meta["validation"] = {**meta.get("validation", {}), **rows}
    tensors = load_file(str(path))
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})
    tmp.replace(path)
