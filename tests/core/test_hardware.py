"""Where models run and what they hold: device and dtype selection, fp16 weight variants, the
bounded cache of quantized weights, and calibration ranges as plain data."""

import copy
import pickle

import pytest
import torch

import mixdq
from mixdq.quant.layers import quant_layers

from support import CALIBRATION, generate
from tiny_models import tiny_sd, tiny_sdxl

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def no_placement_env(monkeypatch):
    for name in ("MIXDQ_DEVICE", "MIXDQ_DTYPE"):
        monkeypatch.delenv(name, raising=False)


# --- device and dtype -------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="the default on a machine without a GPU")
def test_without_a_gpu_models_run_on_the_cpu_in_float32():
    placement = mixdq.Placement.resolve()
    assert (placement.device, placement.dtype, placement.variant) == ("cpu", torch.float32, None)


@GPU
def test_with_a_gpu_models_run_there_in_float16_from_the_fp16_files():
    placement = mixdq.Placement.resolve()
    assert placement.on_cuda and placement.dtype == torch.float16 and placement.variant == "fp16"


def test_arguments_win_over_the_environment_which_wins_over_the_default(monkeypatch):
    monkeypatch.setenv("MIXDQ_DTYPE", "bf16")
    assert mixdq.Placement.resolve().dtype == torch.bfloat16
    assert mixdq.Placement.resolve(dtype="float32").dtype == torch.float32
    monkeypatch.setenv("MIXDQ_DEVICE", "cpu")
    assert mixdq.Placement.resolve().device == "cpu"


@pytest.mark.parametrize("device, dtype, message", [
    ("tpu", None, "unknown device|runs on cpu or cuda"),
    ("cpu", "float8", "unknown dtype 'float8'"),
])
def test_bad_device_or_dtype_says_what_is_valid(device, dtype, message):
    with pytest.raises(mixdq.ConfigError, match=message):
        mixdq.Placement.resolve(device, dtype)


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for a GPU that is missing")
def test_asking_for_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("MIXDQ_DEVICE", "cuda")
    with pytest.raises(mixdq.ConfigError, match="no CUDA GPU here.*unset MIXDQ_DEVICE"):
        mixdq.Placement.resolve()


def test_a_half_precision_load_reads_the_fp16_files_where_the_model_has_them(tmp_path):
    pipe = tiny_sd()
    pipe.save_pretrained(tmp_path)
    stored = pipe.unet.conv_in.weight.detach().clone()
    loaded = mixdq.load_pipeline(str(tmp_path), device="cpu", dtype="bfloat16")
    assert loaded.unet.dtype == torch.bfloat16  # no fp16 files: the float32 ones, cast on load
    with torch.no_grad():  # the fp16 files hold other numbers, so which files were read shows
        pipe.unet.conv_in.weight += 1
    pipe.to(torch.float16).save_pretrained(tmp_path, variant="fp16")
    half = mixdq.load_pipeline(str(tmp_path), device="cpu", dtype="float16")
    assert half.unet.dtype == torch.float16
    assert torch.equal(half.unet.conv_in.weight, pipe.unet.conv_in.weight)
    full = mixdq.load_pipeline(str(tmp_path), device="cpu", dtype="float32")
    assert torch.equal(full.unet.conv_in.weight, stored)  # a float32 load reads the float32 files


@GPU
def test_a_pipeline_loads_onto_the_gpu_in_float16(tmp_path):
    tiny_sd().save_pretrained(tmp_path)
    pipe = mixdq.load_pipeline(str(tmp_path))
    assert pipe.device.type == "cuda" and pipe.unet.dtype == torch.float16


# --- the quantized-weight cache -------------------------------------------------------------

def _cached_bytes(pipe) -> int:
    return sum(layer._weight_cache.nbytes() for layer in quant_layers(pipe).values())


def _float_bytes(pipe) -> int:
    return sum(layer.weight.numel() * layer.weight.element_size() for layer in quant_layers(pipe).values())


@pytest.fixture
def budget():
    yield mixdq.set_weight_cache_budget
    mixdq.set_weight_cache_budget(0)


def test_visiting_every_width_holds_one_quantized_copy_of_each_weight(budget):
    pipe = mixdq.prepare(tiny_sdxl())
    names = quant_layers(pipe)
    for bits in (*mixdq.WEIGHT_BITS, *reversed(mixdq.WEIGHT_BITS)):
        mixdq.apply_allocation(pipe, mixdq.Allocation.uniform(names, bits))
        generate(pipe, steps=1)
        assert _cached_bytes(pipe) == _float_bytes(pipe)  # one copy, never one per width visited


def test_a_byte_budget_keeps_more_widths_for_faster_flips_and_results_stay_exact(budget):
    pipe = mixdq.prepare(tiny_sd())
    names = quant_layers(pipe)
    one = _float_bytes(pipe)
    budget(2 * one)
    outputs = {}
    for bits in (8, 4, 2, 8):
        mixdq.apply_allocation(pipe, mixdq.Allocation.uniform(names, bits))
        outputs.setdefault(bits, []).append(generate(pipe, steps=1))
    assert _cached_bytes(pipe) == 3 * one  # the width in use and two extras
    assert torch.equal(*outputs[8])  # a width served from the cache gives the same result
    budget(0)
    assert _cached_bytes(pipe) == one
    mixdq.apply_allocation(pipe, mixdq.Allocation.uniform(names, 4))
    assert torch.equal(generate(pipe, steps=1), outputs[4][0])  # recomputed, the same


def test_a_copied_model_starts_without_cached_weights(budget):
    pipe = mixdq.prepare(tiny_sd())
    mixdq.apply_allocation(pipe, mixdq.Allocation.uniform(quant_layers(pipe), 4))
    generate(pipe, steps=1)
    fork = mixdq.fork_pipeline(pipe)
    assert _cached_bytes(fork) == 0 and _cached_bytes(pipe) == _float_bytes(pipe)
    assert torch.equal(generate(fork, steps=1), generate(pipe, steps=1))


def test_a_negative_budget_is_refused():
    with pytest.raises(mixdq.ConfigError, match="bytes >= 0"):
        mixdq.set_weight_cache_budget(-1)


# --- calibration ranges as data ---------------------------------------------------------------

def test_calibration_ranges_move_to_another_process_as_plain_data():
    pipe = tiny_sd()
    mixdq.prepare(pipe)
    mixdq.calibrate(pipe, CALIBRATION, progress=False)
    ranges = pickle.loads(pickle.dumps(mixdq.calibration_ranges(pipe)))  # what a ZeroGPU worker hands back
    other = mixdq.prepare(copy.deepcopy(tiny_sd()))
    assert not mixdq.is_calibrated(other)
    mixdq.set_calibration_ranges(other, ranges)
    assert mixdq.is_calibrated(other)
    w4a8 = mixdq.Allocation.uniform(quant_layers(pipe), 4, 8)
    for p in (pipe, other):
        mixdq.apply_allocation(p, w4a8)
    assert torch.equal(generate(pipe, steps=1), generate(other, steps=1))


def test_ranges_of_another_model_are_refused():
    sd, sdxl = mixdq.prepare(tiny_sd()), mixdq.prepare(tiny_sdxl())
    mixdq.calibrate(sd, CALIBRATION, progress=False)
    with pytest.raises(mixdq.ConfigError, match="not of this model"):
        mixdq.set_calibration_ranges(sdxl, mixdq.calibration_ranges(sd))
    assert not mixdq.is_calibrated(sdxl)
