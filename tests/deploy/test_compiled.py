"""Deployed models under torch.compile: the same numbers as eager, kernels chosen for it, kept on disk."""

import json

import pytest
import torch

import mixdq
from mixdq.core.errors import MixDQError
from mixdq.deploy import KERNELS, deploy, deployed_layers, load_deployed_pipeline, save_deployed
from mixdq.deploy.compiling import is_compiled, load_inductor
from mixdq.deploy.kernels import compiled_costs
from mixdq.embedded import dataset
from mixdq.quant.layers import quant_layers

from tiny_models import sd_like_layers

pytestmark = pytest.mark.compile

CAPTIONS = dataset.evaluation_captions(3)
CALIBRATION = mixdq.CalibrationConfig(prompts=dataset.calibration_captions(8), num_inference_steps=4, batch_size=8)


def _images(pipe, captions):
    """One image per call: the batch size the compiled UNet was warmed up on (another compiles again)."""
    return mixdq.generate_images(pipe, captions, batch_size=1, **mixdq.generation_defaults().as_kwargs())


def _calibrated(model, x, allocation):
    mixdq.prepare(model)
    with mixdq.calibrating(model), torch.no_grad():
        for name, layer in model.items():
            layer(x[name])
    mixdq.apply_allocation(model, allocation)


def test_every_kernel_runs_in_one_compiled_graph_with_eager_numbers():
    model, x = sd_like_layers()
    names = list(model)
    _calibrated(model, x, mixdq.Allocation(dict(zip(names, [4, 8, 2, 6, 3], strict=True)), dict.fromkeys(names, 8)))
    kernels = dict(zip(names, ["int-mm", "int8", "int8-repack", "dequant", "int8-unpack"], strict=True))
    deploy(model, kernel=kernels, cache_bytes=0)
    assert {m.kernel for m in deployed_layers(model).values()} == set(KERNELS)

    def all_layers(inputs):
        return {name: layer(inputs[name]) for name, layer in model.items()}

    load_inductor()
    compiled = torch.compile(all_layers, fullgraph=True)  # fullgraph: no layer may break the graph
    with torch.no_grad():
        eager, fused = all_layers(x), compiled(x)
    for name in names:
        assert fused[name].shape == eager[name].shape, name
        # the compiler fuses the input's rounding and the weight's unpacking; the codes are the same
        assert ((fused[name] - eager[name]).abs().max() / eager[name].abs().max()).item() < 1e-5, name


@pytest.fixture(scope="module")
def compiled_deployment():
    """The embedded model at uniform W4A8, simulated images, then deployed with compile=True."""
    pipe = mixdq.load_pipeline()
    pipe.set_progress_bar_config(disable=True)
    allocation = mixdq.Allocation.uniform(mixdq.load_inventory(None).names, 4, 8)
    mixdq.quantize_(pipe, allocation, calibration=CALIBRATION)
    simulated = _images(pipe, CAPTIONS)
    deploy(pipe, compile=True)
    return pipe, simulated


def test_a_compiled_deployment_gives_the_simulated_images(compiled_deployment):
    pipe, simulated = compiled_deployment
    assert is_compiled(pipe.unet) and not quant_layers(pipe)
    real = _images(pipe, CAPTIONS)
    # the bound the eager deployment meets (tests/deploy/)
    assert mixdq.core.metrics.psnr_db((simulated + 1) / 2, (real + 1) / 2) > 40


def test_kernels_are_chosen_for_the_compiled_model(compiled_deployment):
    pipe, _ = compiled_deployment
    for layer in deployed_layers(pipe).values():
        spec = layer.spec
        cost = compiled_costs(spec.kernel_ms)
        assert cost["dequant"] == spec.kernel_ms["float"]  # fused into the float op
        best_at_own_bits = min([k for k in ("int8-repack", "dequant") if k in cost], key=cost.__getitem__)
        if "memory allowance" in spec.kernel_reason:
            assert cost[spec.kernel] < cost[best_at_own_bits], spec.layer
        else:
            assert spec.kernel == best_at_own_bits, spec.layer
        assert spec.kernel_reason.startswith("fastest once compiled")


def test_a_saved_compiled_deployment_loads_ahead_of_time_compiled(compiled_deployment, tmp_path, monkeypatch):
    """save_deployed writes the AOTInductor package; loading runs it, with any batch size, and
    says what to do for another resolution or another torch."""
    from mixdq.deploy import checkpoint
    from mixdq.deploy.ahead import AOTUNet

    pipe, simulated = compiled_deployment
    before = _images(pipe, CAPTIONS[:1])
    save_deployed(pipe, tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["compile"] is True and manifest["aot"]["file"] == "unet.pt2"
    assert manifest["aot"]["shapes"] == {"sample": [8, 8, 8], "encoder_hidden_states": [16, 64]}
    loaded = load_deployed_pipeline(tmp_path / "m")
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.unet, AOTUNet)
    one = _images(loaded, CAPTIONS[:1])
    three = mixdq.generate_images(loaded, CAPTIONS, batch_size=3, **mixdq.generation_defaults().as_kwargs())
    psnr = lambda a, b: mixdq.core.metrics.psnr_db((a + 1) / 2, (b + 1) / 2)  # noqa: E731
    assert psnr(one, before) > 45 and psnr(three, simulated) > 40
    with pytest.raises(MixDQError, match="resolution it was deployed at"):
        loaded("a cat", height=96, width=96, num_inference_steps=1, guidance_scale=0.0)
    eager = load_deployed_pipeline(tmp_path / "m", compile=False)
    assert not is_compiled(eager.unet) and not isinstance(eager.unet, AOTUNet)
    # another torch: compile again, with a warning (the package is machine code for this one)
    monkeypatch.setattr(checkpoint.torch, "__version__", "0.0.0")
    with pytest.warns(UserWarning, match="compiling it again"):
        again = checkpoint.load_deployed(tmp_path / "m")
    assert is_compiled(again) and not isinstance(again, AOTUNet)
    monkeypatch.undo()
    (tmp_path / "m" / "unet.pt2").write_bytes(b"not a package")  # never run: compiled from the weights instead
    with pytest.warns(UserWarning, match="does not match its manifest"):
        tampered = checkpoint.load_deployed(tmp_path / "m")
    assert is_compiled(tampered) and not isinstance(tampered, AOTUNet)


def test_a_package_that_cannot_be_exported_leaves_a_folder_that_compiles_on_loading(
        compiled_deployment, tmp_path, monkeypatch):
    from mixdq.deploy import checkpoint

    def fail(*_args):
        raise RuntimeError("export refused this graph")

    monkeypatch.setattr(checkpoint, "export_package", fail)
    with pytest.warns(UserWarning, match="could not be saved ahead of time .*export refused"):
        save_deployed(compiled_deployment[0], tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["aot"] == {"skipped": "export failed: RuntimeError"}
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["manifest.json", "unet.safetensors"]
    assert is_compiled(load_deployed_pipeline(tmp_path / "m").unet)


def test_compile_without_a_cxx_compiler_says_what_to_do_and_changes_nothing(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    model, x = sd_like_layers()
    _calibrated(model, x, mixdq.Allocation.uniform(list(model), 8, 8))
    with pytest.raises(MixDQError, match="needs a C\\+\\+ compiler.*apt-get install g\\+\\+"):
        deploy(model, compile=True)
    assert len(quant_layers(model)) == len(model) and not deployed_layers(model)


def test_the_command_line_says_what_compile_needs(capsys, monkeypatch, tmp_path):
    from mixdq.cli import main

    monkeypatch.setenv("CXX", "no-such-compiler-here")
    mixdq.Allocation.uniform(mixdq.load_inventory(None).names, 8, 8).save(tmp_path / "w8a8.json")
    code = main(["deploy", "--allocation", str(tmp_path / "w8a8.json"), "-o", str(tmp_path / "m"), "--compile",
                 "--num-prompts", "2"])
    assert code == 2 and "needs a C++ compiler" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_a_copy_of_a_deployed_model_runs_its_own_kernels_when_compiled():
    import copy
    import gc

    model, x = sd_like_layers()
    _calibrated(model, x, mixdq.Allocation.uniform(list(model), 4, 8))
    deploy(model, kernel="int8-repack", cache_bytes=0)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        expected = {name: layer(x[name]) for name, layer in model.items()}
    del model
    gc.collect()  # the original is gone: compiled code must reach the copy's layers, not the original's

    def all_layers(inputs):
        return {name: layer(inputs[name]) for name, layer in twin.items()}

    load_inductor()
    with torch.no_grad():
        out = torch.compile(all_layers, fullgraph=True)(x)
    for name, value in expected.items():
        assert ((out[name] - value).abs().max() / value.abs().max()).item() < 1e-5, name
