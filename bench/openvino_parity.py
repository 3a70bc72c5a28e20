"""The OpenVINO export against the simulated model it comes from, on the embedded model.

    .venv/bin/python bench/openvino_parity.py [--captions 32] [--threads 2]

For W8A8 and the planner's 4-average-bit weights with A8, each as MixDQ quantizes (Linear and
Conv2d inputs) and with `QuantConfig(self_attention_bits=8)`: PSNR of the exported model's images
against the simulated model's (held-out caption i with seed i, the default 4 steps, f32 hint,
exact), and the SQNR of the exported UNet's output at each step of one caption (the simulated
model's inputs fed to both). Calibration: the embedded model's default captions, batch 32, as
bench/openvino_runtime.py. Figures: bench/results/openvino_parity-DATE.json.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from deploy import embedded_mixed
from machine import save, start

import mixdq
from mixdq.core.metrics import psnr_db, sqnr_db
from mixdq.deploy.openvino import OpenVINOUNet, export_openvino, record_unet_inputs
from mixdq.embedded import dataset

SETTINGS = {"W8A8": None, "planner 4 bits, A8": None, "W8A8, self-attention 8": 8,
            "planner 4 bits, A8, self-attention 8": 8}


def _unet_output(unet, call: dict[str, torch.Tensor]) -> torch.Tensor:
    return unet(call["sample"], call["timestep"], call["encoder_hidden_states"], return_dict=False)[0]


def parity(setting: str, captions: list[str], folder: str) -> dict:
    pipe = mixdq.load_pipeline()
    pipe.set_progress_bar_config(disable=True)
    defaults = mixdq.generation_defaults()
    names = mixdq.build_inventory(pipe.unet).names
    allocation = mixdq.Allocation.uniform(names, 8, 8) if setting.startswith("W8A8") else embedded_mixed()
    config = mixdq.QuantConfig(self_attention_bits=SETTINGS[setting])
    mixdq.quantize_(pipe, allocation, config=config, calibration=defaults.calibration(batch_size=32))
    simulated = mixdq.generate_images(pipe, captions, **defaults.as_kwargs())
    calls = record_unet_inputs(pipe, lambda: pipe(captions[0], generator=torch.Generator().manual_seed(0),
                                                  **defaults.as_kwargs()))
    simulated_out = [_unet_output(pipe.unet, call) for call in calls]
    export_openvino(pipe, folder, vae_decoder=False)
    exported = OpenVINOUNet(folder, precision="f32", threads=torch.get_num_threads())
    steps = [sqnr_db(s, _unet_output(exported, call)) for s, call in zip(simulated_out, calls, strict=True)]
    mixdq.restore(pipe)
    pipe.unet = exported
    images = mixdq.generate_images(pipe, captions, **defaults.as_kwargs())
    return dict(unet_sqnr_db=steps, image_psnr_db=psnr_db((simulated + 1) / 2, (images + 1) / 2))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--captions", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    start(args.threads)
    captions = dataset.evaluation_captions(args.captions)
    print(f"\nembedded model, {args.captions} held-out captions, f32 hint: exported vs simulated")
    print(f"{'allocation':<38} {'UNet output SQNR per step, dB':>32} {'image PSNR dB':>14}")
    rows = []
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        for i, setting in enumerate(SETTINGS):
            r = parity(setting, captions, f"{tmp}/{i}")
            rows.append(dict(setting=setting, **r))
            steps = " / ".join(f"{db:.1f}" for db in r["unet_sqnr_db"])
            print(f"{setting:<38} {steps:>32} {r['image_psnr_db']:14.1f}", flush=True)
    save("openvino_parity", dict(captions=args.captions, settings=rows))


if __name__ == "__main__":
    main()
