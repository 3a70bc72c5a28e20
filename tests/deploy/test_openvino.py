"""OpenVINO export: each layer's bits in the IR, parity with the simulated model, the pipeline
around the compiled UNet, and refusal of bad input (tampered folders, missing calibration)."""

import json
from collections import Counter

import numpy as np
import pytest
import torch

import mixdq
from mixdq.core.errors import MixDQError, NotCalibratedError
from mixdq.deploy.openvino import (
    OpenVINOUNet,
    OpenVINOVAE,
    export_openvino,
    load_openvino_pipeline,
    read_openvino_manifest,
    record_unet_inputs,
)
from mixdq.embedded import dataset

ov = pytest.importorskip("openvino", reason="./run.sh test installs the [openvino] extra")

from support import CALIBRATION as TINY_CALIBRATION  # noqa: E402
from tiny_models import tiny_sd, tiny_sdxl  # noqa: E402

pytestmark = pytest.mark.openvino

CAPTIONS = dataset.evaluation_captions(4)
EMBEDDED_CALIBRATION = mixdq.CalibrationConfig(prompts=dataset.calibration_captions(8), num_inference_steps=4,
                                               batch_size=8)
EVERY_BITS = [8, 4, 3, 2, 6, 5, None]
STORED = {8: "i8", 6: "u6", 5: "u6", 4: "u4", 3: "u3", 2: "u2", None: "f32"}


def every_bits(names, acts=(8, 8, 8, 6)):
    """Every weight bit-width and floating point, in turn; activations mostly 8 bits, some 6."""
    return mixdq.Allocation({n: EVERY_BITS[i % len(EVERY_BITS)] for i, n in enumerate(names)},
                            {n: acts[i % len(acts)] for i, n in enumerate(names)})


def unet_call(unet, inputs):
    kw = dict(inputs)
    added = {k: kw.pop(k) for k in ("text_embeds", "time_ids") if k in kw}
    with torch.no_grad():
        return unet(**kw, added_cond_kwargs=added or None, return_dict=False)[0]


def int8_layers(unet: OpenVINOUNet) -> int:
    """Convolutions and matmuls the CPU plugin runs on integer inputs."""
    count = 0
    for op in unet.compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if (info["layerType"].astype(str) in ("Convolution", "FullyConnected")
                and info["runtimePrecision"].astype(str) in ("u8", "i8")):
            count += 1
    return count


def quantized_attention_inputs(folder) -> int:
    """Query and key inputs of ScaledDotProductAttention ops that come from a FakeQuantize."""
    count = 0
    for op in ov.Core().read_model(str(folder / "unet.xml")).get_ordered_ops():
        if op.get_type_name() != "ScaledDotProductAttention":
            continue
        for port in (0, 1):
            source = op.input(port).get_source_output().get_node()
            while source.get_type_name() in ("Reshape", "Transpose"):
                source = source.input(0).get_source_output().get_node()
            count += source.get_type_name() == "FakeQuantize"
    return count


@pytest.fixture(scope="module")
def embedded_every_bits(tmp_path_factory):
    """The embedded model with every bit-width, simulated images, and its export."""
    pipe = mixdq.load_pipeline()
    pipe.set_progress_bar_config(disable=True)
    allocation = every_bits(mixdq.load_inventory(None).names)
    mixdq.quantize_(pipe, allocation, calibration=EMBEDDED_CALIBRATION)
    simulated = mixdq.generate_images(pipe, CAPTIONS, **mixdq.generation_defaults().as_kwargs())
    folder = export_openvino(pipe, tmp_path_factory.mktemp("ov") / "every-bits")
    return pipe, allocation, simulated, folder


def test_every_bit_width_is_stored_at_its_own_bits(embedded_every_bits):
    _, allocation, _, folder = embedded_every_bits
    manifest = read_openvino_manifest(folder)
    assert mixdq.Allocation.from_dict(manifest["allocation"]) == allocation
    for name, entry in manifest["layers"].items():
        assert entry["stored"] == STORED[allocation.weight_bits(name)], name
        assert entry["stored_bits"] == {"i8": 8, "u6": 6, "u4": 4, "u3": 3, "u2": 2, "f32": 32}[entry["stored"]]
    assert {"openvino", "torch", "diffusers"} <= set(manifest["versions"])
    assert set(manifest["files"]) == {"unet.xml", "unet.bin", "vae_decoder.xml", "vae_decoder.bin"}
    # the IR really holds those element types: one integer constant per quantized layer, two for
    # GEGLU's projection (its value and gate halves, so the graph splits no output)
    model = ov.Core().read_model(str(folder / "unet.xml"))
    ops = model.get_ordered_ops()
    codes = [op for op in ops if op.get_type_name() == "Constant" and op.get_friendly_name().endswith("mixdq_centred")]
    expected = Counter()
    for name, bits in allocation.weights.items():
        if bits is not None:
            expected[STORED[bits]] += 2 if name.endswith("ff.net.0.proj") else 1
    assert Counter(op.get_element_type().get_type_name() for op in codes) == expected
    assert not [op for op in ops if op.get_type_name() in ("VariadicSplit", "Split")]
    # packed at those bits: a 3-bit weight takes 3/8 of a byte in the weight file
    bits = {"i8": 8, "u6": 6, "u4": 4, "u3": 3, "u2": 2}
    for op in codes:
        numel = int(np.prod(list(op.get_output_shape(0))))
        assert op.get_byte_size() == -(-numel * bits[op.get_element_type().get_type_name()] // 8)


def test_exported_images_match_the_simulated_model(embedded_every_bits):
    _, _, simulated, folder = embedded_every_bits
    pipe = load_openvino_pipeline(folder)
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe.vae, OpenVINOVAE) and isinstance(pipe.unet, OpenVINOUNet)
    assert int8_layers(pipe.unet) >= 60  # the A8 layers with integer weights run on int8 kernels
    images = mixdq.generate_images(pipe, CAPTIONS, **mixdq.generation_defaults().as_kwargs())
    # the PyTorch deploy path's bound (tests/deploy/): float rounding only
    assert mixdq.core.metrics.psnr_db((simulated + 1) / 2, (images + 1) / 2) > 40
    # the exported decoder is the float VAE's
    latents = torch.randn(2, pipe.vae.config.latent_channels, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = pipe.vae.decode(latents).sample, pipe.vae.torch_vae.decode(latents).sample
    assert mixdq.core.metrics.sqnr_db(theirs, ours) > 60


@pytest.mark.parametrize("setting", ["w8a8", "planner-4bit-a8", "w8a8-self-attention"])
def test_w8a8_and_the_planners_4_bit_allocation_match_the_simulation(setting, tmp_path):
    from mixdq.core.assets import ASSETS

    pipe = mixdq.load_pipeline()
    pipe.set_progress_bar_config(disable=True)
    names = mixdq.load_inventory(None).names
    if setting.startswith("w8a8"):
        allocation = mixdq.Allocation.uniform(names, 8, 8)
    else:
        weights = mixdq.Planner(mixdq.Profile.load(ASSETS / "profiles" / "embedded.json")).plan(avg_bits=4.0)
        allocation = mixdq.Allocation(weights.allocation.weights, dict.fromkeys(names, 8))
    config = mixdq.QuantConfig(self_attention_bits=8 if setting.endswith("self-attention") else None)
    mixdq.quantize_(pipe, allocation, config=config, calibration=EMBEDDED_CALIBRATION)
    defaults = mixdq.generation_defaults().as_kwargs()
    simulated = mixdq.generate_images(pipe, CAPTIONS, **defaults)
    inputs = record_unet_inputs(pipe, lambda: pipe(CAPTIONS[0], **defaults))
    simulated_out = [unet_call(pipe.unet, x) for x in inputs]
    export_openvino(pipe, tmp_path / "ov")
    exported = OpenVINOUNet(tmp_path / "ov")
    assert exported.manifest["self_attention_bits"] == config.self_attention_bits
    # self-attention's query and key reach its attention through a FakeQuantize (NNCF's pattern)
    assert quantized_attention_inputs(tmp_path / "ov") == (14 if config.self_attention_bits else 0)
    # bench/openvino_parity.py: 32.1-133 dB per step (identical, or a rounding flips codes); images 56 dB
    assert min(mixdq.core.metrics.sqnr_db(s, unet_call(exported, x)) for s, x in zip(simulated_out, inputs)) > 30
    mixdq.restore(pipe)
    pipe.unet = exported
    images = mixdq.generate_images(pipe, CAPTIONS, **defaults)
    assert mixdq.core.metrics.psnr_db((simulated + 1) / 2, (images + 1) / 2) > 40


@pytest.mark.parametrize("make", [tiny_sd, tiny_sdxl], ids=["sd", "sdxl"])
def test_tiny_pipelines_export_and_run_through_diffusers(make, tmp_path):
    base = tmp_path / "base"
    make().save_pretrained(base)  # safetensors: what load_openvino_pipeline reads the rest from
    pipe = mixdq.load_pipeline(str(base))
    # weights only: activation rounding makes random tiny UNets chaotic (any 1-ulp difference can
    # flip a code; the PyTorch int8 path is 15-28 dB from the simulation on them), so the
    # activation grid's parity is held on the embedded model above
    names = mixdq.build_inventory(pipe.unet).names
    mixdq.quantize_(pipe, mixdq.Allocation(every_bits(names).weights, {}))
    inputs = record_unet_inputs(pipe)[0]
    simulated = unet_call(pipe.unet, inputs)
    export_openvino(pipe, tmp_path / "ov", base_model=str(base))
    assert mixdq.core.metrics.sqnr_db(simulated, unet_call(OpenVINOUNet(tmp_path / "ov"), inputs)) > 80  # measured 120
    assert {e["stored"] for e in read_openvino_manifest(tmp_path / "ov")["layers"].values()} == set(STORED.values())

    def image(folder):
        p = load_openvino_pipeline(folder)
        p.set_progress_bar_config(disable=True)
        # not the traced size: batch and spatial sizes stay free in the IR
        return np.asarray(p("a red circle", num_inference_steps=2, guidance_scale=0.0, height=48, width=64,
                            generator=torch.Generator().manual_seed(0)).images[0])

    first = image(tmp_path / "ov")
    assert first.shape == (48, 64, 3)
    assert np.array_equal(first, image(tmp_path / "ov"))


def test_asymmetric_weights_keep_their_zero_points(tmp_path):
    pipe = tiny_sd()
    names = mixdq.build_inventory(pipe.unet).names
    config = mixdq.QuantConfig(weight=mixdq.WeightQuantConfig(symmetric=False))
    mixdq.quantize_(pipe, every_bits(names), config, calibration=TINY_CALIBRATION)
    mixdq.apply_allocation(pipe, mixdq.Allocation(every_bits(names).weights, {}))  # weights only: exact
    inputs = record_unet_inputs(pipe)[0]
    simulated = unet_call(pipe.unet, inputs)
    export_openvino(pipe, tmp_path / "ov", vae_decoder=False)
    assert mixdq.core.metrics.sqnr_db(simulated, unet_call(OpenVINOUNet(tmp_path / "ov"), inputs)) > 80
    manifest = read_openvino_manifest(tmp_path / "ov")
    # code - zero-point of asymmetric 8-bit codes needs 9 bits: u8 codes with a float zero-point
    assert {e["stored"] for e in manifest["layers"].values()} == (set(STORED.values()) - {"i8"}) | {"u8"}
    assert set(manifest["files"]) == {"unet.xml", "unet.bin"} and not manifest["vae_decoder"]


def test_a_changed_or_missing_ir_is_refused(embedded_every_bits, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(embedded_every_bits[3], folder)
    weights = folder / "unet.bin"
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(mixdq.ConfigError, match="changed or truncated"):
        load_openvino_pipeline(folder)
    xml = folder / "unet.xml"
    xml.write_text(xml.read_text().replace("u2", "u4", 1))
    weights.write_bytes(data)
    with pytest.raises(mixdq.ConfigError, match="unet.xml does not match"):
        OpenVINOUNet(folder)
    xml.unlink()
    with pytest.raises(mixdq.ConfigError, match="missing"):
        OpenVINOUNet(folder)
    (folder / "manifest.json").write_text("{ not json")
    with pytest.raises(mixdq.ConfigError, match="damaged"):
        OpenVINOUNet(folder)
    with pytest.raises(mixdq.ConfigError, match="not an OpenVINO export"):
        OpenVINOUNet(tmp_path)


def test_an_uncalibrated_model_is_refused_and_nothing_is_written(tmp_path):
    pipe = tiny_sd()
    names = mixdq.build_inventory(pipe.unet).names
    mixdq.quantize_(pipe, mixdq.Allocation.uniform(names, 8, 8), calibration=TINY_CALIBRATION)
    # a new activation observer drops the calibrated ranges, the 8-bit activations stay
    mixdq.prepare(pipe, mixdq.QuantConfig(act=mixdq.ActQuantConfig(observer="percentile")))
    with pytest.raises(NotCalibratedError, match="calibrate"):
        export_openvino(pipe, tmp_path / "ov")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(MixDQError, match="bare UNet needs inputs"):
        export_openvino(pipe.unet, tmp_path / "ov")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    mixdq.restore(pipe)
    mixdq.prepare(pipe)
    with pytest.raises(mixdq.ConfigError, match="not an OpenVINO export"):
        export_openvino(pipe, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_cli_exports_an_allocation_and_refuses_one_for_another_model(tmp_path, capsys):
    from mixdq.cli import main

    names = mixdq.load_inventory(None).names
    alloc = tmp_path / "a.json"
    alloc.write_text(json.dumps(mixdq.Allocation.uniform(names, 4, 8).to_dict()))
    assert main(["export-openvino", "--allocation", str(alloc), "-o", str(tmp_path / "ov"), "--num-prompts", "4"]) == 0
    out = capsys.readouterr().out
    assert "weights stored as: u4 132" in out
    manifest = read_openvino_manifest(tmp_path / "ov")
    assert manifest["base_model"] is None and set(manifest["inputs"]) == {"sample", "timestep", "encoder_hidden_states"}
    # exporting again replaces the folder whole
    alloc.write_text(json.dumps(mixdq.Allocation.uniform(names, 8, 8).to_dict()))
    assert main(["export-openvino", "--allocation", str(alloc), "-o", str(tmp_path / "ov"), "--num-prompts", "4",
                 "--self-attention-bits", "8"]) == 0
    manifest = read_openvino_manifest(tmp_path / "ov")
    assert {e["stored"] for e in manifest["layers"].values()} == {"i8"} and manifest["self_attention_bits"] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "ov"]  # no temporary folder left

    other = mixdq.Allocation.uniform(mixdq.load_inventory("sd-turbo").names, 8, 8)
    alloc.write_text(json.dumps(other.to_dict()))
    assert main(["export-openvino", "--allocation", str(alloc), "-o", str(tmp_path / "other")]) == 2
    assert "error:" in capsys.readouterr().err and not (tmp_path / "other").exists()
