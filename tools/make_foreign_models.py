"""Write community-architecture model files with random weights, for trying and benchmarking ``--model``.

Speed does not depend on the weights, so these stand in for downloaded models in ``psr2video bench
model --model FILE``; their pictures are noise. Architectures and sizes follow released models:

- ``2x_SPAN_ch48.pth``: SPAN (spandrel), 48 channels: the size of the SPAN models in community databases;
- ``2x_OmniSR.safetensors``: OmniSR (spandrel), 64 features, 5 residual groups, window 8;
- ``2x_Compact_fp16_nhwc.onnx``: Real-ESRGAN Compact (64 features, 16 convs) exported to ONNX in fp16
  with NHWC I/O (the layout and precision several community ONNX files use).

    python tools/make_foreign_models.py OUT_DIR
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch


def make(out: Path, scale: int = 2) -> list[Path]:
    from safetensors.torch import save_file
    from spandrel.architectures.OmniSR import OmniSR
    from spandrel.architectures.SPAN import SPAN

    from psr2video.runtime.peers import SRVGGNetCompact, ToNHWC

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    paths = [out / f"{scale}x_SPAN_ch48.pth", out / f"{scale}x_OmniSR.safetensors",
             out / f"{scale}x_Compact_fp16_nhwc.onnx"]
    torch.save(SPAN(num_in_ch=3, num_out_ch=3, feature_channels=48, upscale=scale).state_dict(), paths[0])
    omni = OmniSR(num_in_ch=3, num_out_ch=3, num_feat=64, block_num=1, window_size=8, res_num=5, up_scale=scale)
    save_file({k: v.contiguous() for k, v in omni.state_dict().items()}, str(paths[1]))
    net = ToNHWC(SRVGGNetCompact(64, 16, scale)).eval().half()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.rand(1, 64, 64, 3).half(),), str(paths[2]), input_names=["image"],
                          output_names=["upscaled"], opset_version=17, dynamo=False,
                          dynamic_axes={"image": {0: "n", 1: "h", 2: "w"}, "upscaled": {0: "n", 1: "H", 2: "W"}})
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    for p in make(Path(sys.argv[1])):
        print(p)
