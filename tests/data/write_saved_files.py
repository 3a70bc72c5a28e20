"""Write one of every file mixdq saves, with a tiny model, through the public API only, so that
any version of the engine can run it: `tests/test_saved_files.py` loads the files an older
version wrote (`tests/data/saved-<version>/`) with the current one.

    PYTHONPATH=tests python tests/data/write_saved_files.py tests/data/saved-0.3.0

Written: an allocation, a profile and an interrupted sweep's journal, a deployed UNet, an
OpenVINO folder, and `expected.safetensors`: the inputs of one UNet call and what each saved
model returned for them when it was written. (No ahead-of-time package: AOTInductor cannot
export this tiny UNet, and a package runs only under the torch that built it, naming no module
of ours: it calls no custom op.)
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

import torch
from safetensors.torch import save_file

import mixdq
from mixdq.deploy import OpenVINOUNet, deploy, export_openvino, load_deployed, save_deployed

from tiny_models import PROMPTS, tiny_sd

CALIBRATION = mixdq.CalibrationConfig(prompts=tuple(PROMPTS[:2]), height=32, width=32, batch_size=2)
SWEEP = mixdq.SweepConfig(prompts=tuple(PROMPTS[:2]), height=32, width=32, weight_bits=(4, 8), act_bits=(8,),
                          layers=r"down_blocks\.1\.attentions\.0\.transformer_blocks\.0\.attn2\.to_(k|v)$")


class Interrupted(Exception):
    pass


def unet_inputs() -> dict[str, torch.Tensor]:
    """A real prompt's text embedding (its BOS token is the one deployment stores), a random latent."""
    pipe = tiny_sd()
    ids = pipe.tokenizer(PROMPTS[0], padding="max_length", return_tensors="pt").input_ids
    with torch.no_grad():
        text = pipe.text_encoder(ids)[0]
    g = torch.Generator().manual_seed(0)
    return dict(sample=torch.randn(1, 4, 4, 4, generator=g), timestep=torch.tensor([999]), encoder_hidden_states=text)


def call(unet, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return unet(**inputs, return_dict=False)[0]


def quantized():
    pipe = tiny_sd()
    pipe.set_progress_bar_config(disable=True)
    names = [layer.name for layer in mixdq.build_inventory(pipe)]
    allocation = mixdq.Allocation({n: 8 if i % 2 else 4 for i, n in enumerate(names)}, dict.fromkeys(names, 8))
    mixdq.quantize_(pipe, allocation, calibration=CALIBRATION)
    return pipe, allocation


def main(out: Path) -> None:
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    inputs = unet_inputs()
    expected = dict(inputs)

    pipe, allocation = quantized()
    allocation.save(out / "allocation.json")
    expected["simulated"] = call(pipe.unet, inputs)
    export_openvino(pipe, out / "openvino", base_model=None, vae_decoder=False)
    expected["openvino"] = call(OpenVINOUNet(out / "openvino"), inputs)

    deploy(pipe, kernel="auto")
    save_deployed(pipe, out / "deployed", base_model=None)
    expected["deployed"] = call(load_deployed(out / "deployed"), inputs)

    sweep_pipe = tiny_sd()
    sweep_pipe.set_progress_bar_config(disable=True)
    mixdq.sweep(sweep_pipe, SWEEP, out / "profile.json", model_id="tiny-sd", progress=False)

    def stop(n: int) -> None:
        if n == 2:
            raise Interrupted

    try:
        mixdq.sweep(tiny_sd(), SWEEP, out / "interrupted.json", model_id="tiny-sd", progress=False, on_probe=stop)
    except Interrupted:
        pass
    (out / "sweep.json").write_text(SWEEP.to_json())
    save_file({k: v.contiguous() for k, v in expected.items()}, str(out / "expected.safetensors"))
    (out / "written-by.json").write_text(json.dumps({"mixdq-studio": version("mixdq-studio"), "torch": torch.__version__}) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
