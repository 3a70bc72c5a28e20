"""The engine on a GPU, as a user with CUDA runs it: an fp16 pipeline on the device, quantized,
swept, deployed (oneDNN's int8 kernels are CPU-only, so every layer takes `dequant`), compiled,
and a CPU deployment loaded onto the GPU.

CI has no GPU, so these skip there; on a machine with one, `pytest tests/deploy/test_cuda.py` runs them.
`MIXDQ_TEST_DEVICE=cpu` runs them on the CPU in fp32 (a dry run of the tests themselves).
"""

import os

import pytest
import torch

import mixdq
from mixdq.core.metrics import psnr_db
from mixdq.deploy import deploy, deployed_layers, load_deployed_pipeline, module_bytes, save_deployed
from mixdq.embedded import dataset

DEVICE = os.environ.get("MIXDQ_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else None)
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(DEVICE is None, reason="needs a CUDA GPU (or MIXDQ_TEST_DEVICE)")]
DTYPE = torch.float16 if DEVICE and DEVICE.startswith("cuda") else torch.float32

CAPTIONS = dataset.evaluation_captions(4)
CALIBRATION = mixdq.CalibrationConfig(prompts=dataset.calibration_captions(8), num_inference_steps=4, batch_size=8)
DEFAULTS = mixdq.generation_defaults().as_kwargs()


def _pipe(device=DEVICE, dtype=DTYPE):
    pipe = mixdq.load_pipeline(dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _images(pipe, batch_size: int = 32) -> torch.Tensor:
    return mixdq.generate_images(pipe, CAPTIONS, batch_size=batch_size, **DEFAULTS).float().cpu()


def _psnr(a, b) -> float:
    return psnr_db((a + 1) / 2, (b + 1) / 2)


def _w4a8() -> mixdq.Allocation:
    names = mixdq.load_inventory(None).names
    return mixdq.Allocation.uniform(names, 4, 8)


def test_quantized_simulation_on_the_gpu_damages_images_as_on_the_cpu():
    """Calibrated and quantized on the device in its dtype, W4A8 costs the images what it costs
    on the CPU in fp32; fp16 itself moves the images (24 dB on an H200), quantization adds nothing."""
    results = {}
    for device, dtype in (("cpu", torch.float32), (DEVICE, DTYPE)):
        pipe = _pipe(device, dtype)
        fp = _images(pipe)
        mixdq.quantize_(pipe, _w4a8(), calibration=CALIBRATION)
        results[device] = fp, _images(pipe)
    (fp_cpu, q_cpu), (fp_dev, q_dev) = results["cpu"], results[DEVICE]
    print(f"\nfloat {DEVICE}/{DTYPE} vs cpu: {_psnr(fp_dev, fp_cpu):.1f} dB; W4A8: {_psnr(q_dev, q_cpu):.1f} dB; "
          f"W4A8 vs float on {DEVICE}: {_psnr(q_dev, fp_dev):.1f} dB, on cpu: {_psnr(q_cpu, fp_cpu):.1f} dB")
    assert abs(_psnr(q_dev, fp_dev) - _psnr(q_cpu, fp_cpu)) < 2
    assert _psnr(q_dev, q_cpu) > min(40, _psnr(fp_dev, fp_cpu)) - 3


def test_deploying_on_the_gpu_keeps_its_dtype_times_its_kernels_and_matches_the_simulation():
    pipe = _pipe()
    names = mixdq.load_inventory(None).names
    allocation = _w4a8().with_layer(names[0], weight=None, act=None)  # one float layer too
    mixdq.quantize_(pipe, allocation, calibration=CALIBRATION)
    simulated = _images(pipe)
    before = module_bytes(pipe)
    deploy(pipe)
    layers = deployed_layers(pipe)
    after = module_bytes(pipe)
    deployed = _images(pipe)
    print(f"\nUNet bytes {after / before:.3f}x of {DTYPE}; deployed vs simulated {_psnr(deployed, simulated):.1f} dB")
    assert layers[names[0]].weight.dtype == DTYPE and layers[names[0]].weight.device.type == DEVICE.split(":")[0]
    if DEVICE != "cpu":  # oneDNN's int8 kernels are CPU-only: dequant and int-mm are timed there
        for name, layer in layers.items():
            if name != names[0]:
                assert layer.kernel in ("dequant", "int-mm"), name
                assert "int8 kernels run on the CPU" in layer.spec.kernel_reason, name
                assert {"float", "dequant"} <= set(layer.spec.kernel_ms), name
    assert after < 0.45 * before  # 4-bit codes and fp32 scales against 16 (or 32) bits
    assert _psnr(deployed, simulated) > 40


def test_int_mm_on_the_device_matches_the_simulation():
    """W8A8 on torch._int_mm (cuBLASLt's int8 GEMM on a GPU) wherever a layer can use it: Linear
    layers and 1x1 convolutions, on CUDA with inputs and outputs in multiples of 8; the others
    say why and take the fastest they can."""
    pipe = _pipe()
    names = mixdq.load_inventory(None).names
    mixdq.quantize_(pipe, mixdq.Allocation.uniform(names, 8, 8), calibration=CALIBRATION)
    simulated = _images(pipe)
    deploy(pipe, kernel="int-mm")
    layers = deployed_layers(pipe)
    on = [n for n, m in layers.items() if m.kernel == "int-mm"]
    print(f"\n{len(on)} of {len(layers)} layers on int-mm ({DEVICE})")
    assert len(on) > len(layers) / 2  # every attention and feed-forward projection
    for layer in layers.values():
        assert layer.kernel == "int-mm" or layer.spec.kernel_reason.startswith("int-mm asked for, but")
    deployed = _images(pipe)
    print(f"int-mm deployment vs simulated on {DEVICE}: {_psnr(deployed, simulated):.1f} dB")
    assert _psnr(deployed, simulated) > 40


def test_a_cpu_deployment_loads_onto_the_gpu(tmp_path):
    """int8 kernels chosen on the CPU; `.to(device)` moves the codes and switches to dequant."""
    pipe = _pipe("cpu", torch.float32)
    mixdq.quantize_(pipe, mixdq.Allocation.uniform(mixdq.load_inventory(None).names, 8, 8), calibration=CALIBRATION)
    deploy(pipe, kernel="int8")
    on_cpu = _images(pipe)
    save_deployed(pipe, tmp_path / "w8a8")
    loaded = load_deployed_pipeline(tmp_path / "w8a8").to(DEVICE)
    loaded.set_progress_bar_config(disable=True)
    for layer in deployed_layers(loaded).values():
        assert layer.kernel == ("int8" if DEVICE == "cpu" else "dequant")
        assert DEVICE == "cpu" or layer.weight_codes.device.type == DEVICE.split(":")[0]
    on_device = _images(loaded)
    print(f"\nCPU int8 deployment loaded onto {DEVICE}: {_psnr(on_device, on_cpu):.1f} dB")
    assert _psnr(on_device, on_cpu) > 40


def test_a_sensitivity_sweep_on_the_gpu_agrees_with_the_cpu(tmp_path):
    config = mixdq.SweepConfig(prompts=tuple(CAPTIONS), num_inference_steps=4, weight_bits=(2, 4), act_bits=(4,),
                               layers=r"up_blocks\.1\.attentions\.0\.transformer_blocks\.0\.(attn2\.to_q|ff\.net\.2)$",
                               batch_size=4)
    profiles = {}
    for device, dtype in (("cpu", torch.float32), (DEVICE, DTYPE)):
        profiles[device] = mixdq.sweep(_pipe(device, dtype), config, tmp_path / f"{device}.json", progress=False)
    measured = []
    for name in profiles["cpu"].names:
        for kind in ("weight", "activation"):
            cpu, dev = profiles["cpu"][name].scores(kind), profiles[DEVICE][name].scores(kind)
            measured += [(name.rsplit(".", 2)[-2:], kind, metric, bits, value, dev[metric][bits])
                         for metric, by_bits in cpu.items() for bits, value in by_bits.items()]
    print("".join(f"\n{'.'.join(n)} {k} {m} {b}: cpu {v:.3f}, {DEVICE} {d:.3f}" for n, k, m, b, v, d in measured))
    assert len(measured) >= 6  # 2 layers x (2 weight + 1 activation bit-widths) x at least one metric
    for *what, cpu, dev in measured:
        if what[2] == "ssim":
            assert abs(dev - cpu) < 0.03, what
        elif min(cpu, dev) < 45:  # damage well above fp16's own noise (~60 dB SQNR): the same figure
            assert abs(dev - cpu) < 1.5, what
        else:  # both near the dtype's noise floor: negligible damage on both
            assert min(cpu, dev) > 40, what


@pytest.mark.skipif(DEVICE == "cpu", reason="tests/deploy/test_compiled.py covers the CPU")
def test_a_compiled_deployment_on_the_gpu_matches_the_simulation():
    pipe = _pipe()
    mixdq.quantize_(pipe, _w4a8(), calibration=CALIBRATION)
    simulated = _images(pipe, batch_size=1)
    deploy(pipe, compile=True)  # warmed up at batch 1: a batch of 4 would compile again (a minute on an H200)
    compiled = _images(pipe, batch_size=1)
    print(f"\ncompiled deployment vs simulated on {DEVICE}: {_psnr(compiled, simulated):.1f} dB")
    assert _psnr(compiled, simulated) > 40
