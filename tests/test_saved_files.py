"""Files an older engine wrote load in this one, and compute what they computed then.

`tests/data/saved-0.3.0/` was written by mixdq-studio 0.3.0 (before the engine's modules moved
into subpackages) with `tests/data/write_saved_files.py`; see that script for what is in it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import mixdq
from mixdq.deploy import load_deployed
from mixdq.sensitivity.journal import Journal, journal_path
from mixdq.sensitivity.probes import weights_sha256

from tiny_models import tiny_sd

SAVED = Path(__file__).parent / "data" / "saved-0.3.0"
EXPECTED = load_file(str(SAVED / "expected.safetensors"))
INPUTS = {k: EXPECTED[k] for k in ("sample", "timestep", "encoder_hidden_states")}


def call(unet) -> torch.Tensor:
    with torch.no_grad():
        return unet(**INPUTS, return_dict=False)[0]


def test_the_files_were_written_by_the_version_they_stand_for():
    assert json.loads((SAVED / "written-by.json").read_text())["mixdq-studio"] == "0.3.0"


def test_an_allocation_and_a_profile_load_and_mean_the_same():
    allocation = mixdq.Allocation.load(SAVED / "allocation.json")
    pipe = tiny_sd()
    assert set(allocation.weights) == {layer.name for layer in mixdq.build_inventory(pipe)}
    assert set(allocation.weights.values()) == {4, 8} and set(allocation.acts.values()) == {8}
    profile = mixdq.Profile.load(SAVED / "profile.json")
    probed = [layer for layer in profile if layer.weight]
    assert [layer.name.rsplit(".", 1)[-1] for layer in probed] == ["to_k", "to_v"]
    assert all(set(layer.weight["ssim"]) == {4, 8} and layer.group == "content" for layer in probed)
    assert profile.meta["weights_sha256"] == weights_sha256(pipe)


def test_an_interrupted_sweeps_journal_resumes_here():
    config = mixdq.SweepConfig.from_json((SAVED / "sweep.json").read_text())
    pipe = tiny_sd()
    mixdq.prepare(pipe, config.quant)
    layers = len(mixdq.build_inventory(pipe))
    header = {"sweep": json.loads(config.to_json()), "weights_sha256": weights_sha256(pipe), "layers": layers}
    done = Journal(journal_path(SAVED / "interrupted.json"), header).read()  # a different header is refused
    assert len(done) == 2 and all(r["kind"] == "weight" for r in done.values())


def test_a_deployed_unet_loads_and_computes_what_it_did():
    unet = load_deployed(SAVED / "deployed")
    assert {layer.weight_bits for layer in mixdq.deploy.deployed_layers(unet).values()} == {4, 8}
    torch.testing.assert_close(call(unet), EXPECTED["deployed"], rtol=0, atol=1e-5)
    torch.testing.assert_close(call(unet), EXPECTED["simulated"], rtol=0, atol=1e-3)


@pytest.mark.openvino
def test_an_openvino_folder_loads_and_computes_what_the_simulation_did():
    openvino = pytest.importorskip("mixdq.deploy.openvino")
    unet = openvino.OpenVINOUNet(SAVED / "openvino")
    torch.testing.assert_close(call(unet), EXPECTED["openvino"], rtol=0, atol=1e-5)
    torch.testing.assert_close(call(unet), EXPECTED["simulated"], rtol=0, atol=1e-3)
