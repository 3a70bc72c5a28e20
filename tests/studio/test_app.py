"""The studio through its API, as a notebook user or script would call it (gradio_client against a
launched server), and its plain view functions without a server."""

import ast
import asyncio
import re
import sys
import threading
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from gradio.state_holder import SessionState
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

import app
import mixdq
from app import positions, views
from app.registry import default_models
from app.studio import build_demo
from app.tabs import budget, compare
from app.tabs.common import Shared

from support import ROOT

PROMPT = "a large red circle on the left, white background"


@pytest.fixture(scope="module")
def models():
    return default_models()


@pytest.fixture(scope="module")
def client(models):
    demo = build_demo(models)
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    yield Client(demo.local_url, verbose=False)
    demo.close()


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_allocate_fits_the_budget_and_less_budget_never_helps(client):
    plans = [client.predict("sdxl-turbo", bits, 0.5, api_name="/allocate") for bits in (6.0, 4.5, 3.0)]
    for bits, plan in zip((6.0, 4.5, 3.0), plans):
        assert plan["avg_bits"] <= bits + 1e-9 and len(plan["weights"]) == 794
        assert set(plan) >= {"weights", "avg_bits", "weight_mb", "damage"}
    for more, less in zip(plans, plans[1:]):
        assert less["weight_mb"] <= more["weight_mb"] and less["damage"] >= more["damage"]
    embedded = client.predict("embedded", 4.0, 0.5, api_name="/allocate")
    assert len(embedded["weights"]) == 132 and embedded["avg_bits"] <= 4.0 + 1e-9


def test_compare_returns_two_64px_images_and_metrics(client):
    fp, q, metrics = client.predict(PROMPT, 0, 4.0, api_name="/compare")
    assert _pixels(fp).shape == _pixels(q).shape == (64, 64, 3)
    assert metrics["psnr_db"] > 25 and 0.9 < metrics["ssim"] <= 1
    assert metrics["alignment_fp"] == 1.0 and metrics["avg_bits"] <= 4.0 + 1e-9
    _, q2, low = client.predict(PROMPT, 0, 2.2, api_name="/compare")
    assert low["psnr_db"] < metrics["psnr_db"]  # fewer bits, further from FP


def test_concurrent_clients_each_get_their_own_allocations_image(client, models):
    budgets = (2.2, 6.0)
    serial = {b: _pixels(client.predict(PROMPT, 3, b, api_name="/compare")[1]) for b in budgets}
    assert not np.array_equal(serial[2.2], serial[6.0])
    results, errors = {}, []

    def call(bits):
        try:
            c = Client(client.src, verbose=False)
            results[bits] = [_pixels(c.predict(PROMPT, 3, bits, api_name="/compare")[1]) for _ in range(3)]
        except Exception as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=call, args=(b,)) for b in budgets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    for b in budgets:
        assert all(np.array_equal(img, serial[b]) for img in results[b])


@pytest.mark.parametrize("args, message", [
    (("", 0, 4.0), "prompt is empty"),
    (("a purple zebra", 0, 4.0), "never saw 'zebra'"),
    ((PROMPT, -5, 4.0), "seed must be a whole number"),
    ((PROMPT, 0, 0.5), "below the smallest feasible"),
])
def test_bad_compare_inputs_are_messages_and_the_next_request_works(client, args, message):
    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name="/compare")
    fp, _, _ = client.predict(PROMPT, 0, 4.0, api_name="/compare")
    assert _pixels(fp).shape == (64, 64, 3)


def test_allocate_names_what_is_missing(client):
    with pytest.raises(AppError, match="no sensitivity profile for sd-turbo"):
        client.predict("sd-turbo", 4.0, 0.5, api_name="/allocate")
    with pytest.raises(AppError, match="unknown model"):
        client.predict("nope", 4.0, 0.5, api_name="/allocate")


def test_studio_still_serves_the_inventory_of_full_size_architectures(client):
    table, summary = client.predict("sdxl-turbo", "8", "8", api_name="/inventory")
    assert len(table["data"]) == 794 and "0.501x FP16" in summary


# --- the views, without a server -----------------------------------------------------------


def test_locks_hold_and_unknown_locks_are_named(models):
    entry = models["sdxl-turbo"]
    name = "up_blocks.0.attentions.0.transformer_blocks.0.ff.net.2"
    controls = views.Controls(locks=((name, "fp"), ("conv_in", "2")))
    for frac in (0.1, 0.5, 0.9):
        lo, hi = views.budget_range(entry, controls)
        plan = views.solve(entry, controls, lo + frac * (hi - lo))
        assert plan.allocation.weight_bits(name) is None and plan.allocation.weight_bits("conv_in") == 2
    with pytest.raises(mixdq.UnknownLayerError, match="did you mean 'conv_in'"):
        views.solve(entry, views.Controls(locks=(("conv_inn", "8"),)), 2000)


def test_budget_range_spans_the_frontier_and_summary_reads(models):
    entry = models["embedded"]
    lo, hi = views.budget_range(entry, views.Controls())
    assert 0 < lo < hi
    plan = views.solve(entry, views.Controls(act_bits=6.0), (lo + hi) / 2)
    text = views.plan_summary(entry, plan, views.solve(entry, views.Controls(act_bits=6.0), (lo + hi) / 2, exact=True))
    assert "MB of UNet weights" in text and "x FP16" in text and "above the optimum" in text
    assert plan.act_avg_bits <= 6.0 + 1e-9


def test_sensitivity_frame_marks_unmeasured_layers(models):
    profile = models["sdxl-turbo"].profile
    frame = views.damage_frame(profile, "weight", {"content": "ssim", "quality": "ssim"}, 4)
    # MixDQ published SSIM for content layers only
    assert frame[frame.group == "quality"]["damage"].isna().all()
    assert frame[frame.group == "content"]["damage"].notna().all()
    top = views.most_sensitive(views.damage_frame(profile, "weight", {"content": "ssim", "quality": "sqnr"}, 2))
    assert list(top["damage"]) == sorted(top["damage"], reverse=True)


def _app_main():
    import importlib.util

    from support import ROOT

    spec = importlib.util.spec_from_file_location("app_main", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_app_py_follows_the_spaces_conventions(monkeypatch):
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    main = _app_main()
    args = main.parse_args([])
    assert (args.host, args.port) == ("0.0.0.0", 7999)
    args = main.parse_args(["--host", "127.0.0.1", "--port", "8001"])  # an explicit flag wins
    assert (args.host, args.port) == ("127.0.0.1", 8001)
    models, default = main.models_for(main.parse_args(["--model", "stabilityai/sdxl-turbo"]))
    assert default == "sdxl-turbo" and set(models) == {"embedded", "sdxl-turbo"}
    with pytest.raises(mixdq.ConfigError, match="mixdq sensitivity sd-turbo"):
        main.models_for(main.parse_args(["--model", "sd-turbo"]))


def test_readme_is_a_gradio_space():
    from support import ROOT

    front = (ROOT / "README.md").read_text().split("---")[1]
    for key in ("sdk: gradio", "sdk_version: 6.31.0", "app_file: app.py", "python_version:", "short_description:"):
        assert key in front


def test_slider_stays_inside_the_feasible_range():
    from app.tabs.budget import slider_update

    u = slider_update(644.46, 2562.15, 5000)
    assert u["minimum"] >= 644.46 and u["maximum"] <= 2562.15 and u["value"] == u["maximum"] and u["step"] == 10
    u = slider_update(1.4913, 5.8509, 3.01)
    assert u["step"] == 0.025 and u["minimum"] >= 1.4913 and u["value"] == 3.0
    single = slider_update(2.944, 2.944, 2.0)  # one width allowed everywhere: one feasible point
    assert single["minimum"] < single["maximum"] and single["value"] == 2.944 and single["interactive"] is False


def test_a_lock_to_an_unmeasured_width_is_refused_and_nothing_is_kept(models):
    entry = models["sdxl-turbo"]
    with pytest.raises(mixdq.ConfigError, match="6-bit SQNR was not measured"):
        views.with_lock(entry, views.Controls(), "conv_in", "6")
    assert views.with_lock(entry, views.Controls(locks=(("conv_in", "8"),)), "conv_in", "fp") == (("conv_in", "fp"),)


def test_api_numbers_are_checked(client):
    with pytest.raises(AppError, match="avg_bits must be a number"):
        client.predict("embedded", None, 0.5, api_name="/allocate")


def test_measure_reports_the_requested_prompts_beside_the_prediction(client):
    m = client.predict(4.0, 16, api_name="/measure")
    assert m["num_prompts"] == 16 and m["predicted_damage"] > 0 and m["avg_bits"] <= 4.0 + 1e-9
    assert m["psnr"] > 30 and 0.9 < m["ssim"] <= 1 and 0.9 <= m["alignment"] <= 1 and m["frechet"] >= 0
    low = client.predict(2.2, 16, api_name="/measure")
    assert low["predicted_damage"] > m["predicted_damage"] and low["psnr"] < m["psnr"]


def test_exported_files_are_the_pages_allocation(client, tmp_path):
    import yaml

    files = client.predict("sdxl-turbo", 4.5, 0.5, api_name="/export")
    by_name = {Path(f).name: Path(f) for f in files}
    page = client.predict("sdxl-turbo", 4.5, 0.5, api_name="/allocate")
    exported = mixdq.Allocation.load(by_name["allocation.json"])
    assert exported == mixdq.Allocation(page["weights"])
    yaml_text = by_name["mixdq_weight_bits.yaml"].read_text()
    assert mixdq.Allocation.from_mixdq_yaml(weight=yaml_text) == exported
    assert all(k.startswith("model.") for k in yaml.safe_load(yaml_text))
    csv = by_name["profile-sdxl-turbo.csv"].read_text().splitlines()
    assert csv[0].startswith("layer,group,kind,bits") and len(csv) > 794


def test_deployed_checkpoint_gives_the_pages_image(client, tmp_path):
    import zipfile

    before = _pixels(client.predict(PROMPT, 5, 4.0, api_name="/compare")[1])
    archive, sizes = client.predict(4.0, api_name="/export_deployed")
    # the export packed a copy over the studio's own weights (no second float UNet): they are untouched
    assert np.array_equal(_pixels(client.predict(PROMPT, 5, 4.0, api_name="/compare")[1]), before)
    assert 0 < sizes["weights_bytes"] < 0.2 * 4 * 5.8e6  # packed: well under FP32's 23 MB
    assert sum(sizes["kernels"].values()) == 132 and set(sizes["kernels"]) <= {*mixdq.deploy.KERNELS, "float"}
    zipfile.ZipFile(archive).extractall(tmp_path / "deployed")
    pipe = mixdq.deploy.load_deployed_pipeline(tmp_path / "deployed")
    assert _psnr_to_the_page(client, pipe) > 45  # measured 53.9 dB: int8 kernels vs simulation, 8-bit PNG


def _psnr_to_the_page(client, pipe) -> float:
    """PSNR of `pipe`'s image of PROMPT (seed 5) against /compare's quantized image at 4 bits."""
    from mixdq.core.metrics import psnr_db

    image = mixdq.generate_images(pipe, [PROMPT], first_seed=5, **mixdq.generation_defaults().as_kwargs())[0]
    _, page_q, _ = client.predict(PROMPT, 5, 4.0, api_name="/compare")
    page = torch.from_numpy(_pixels(page_q).copy()).permute(2, 0, 1).float() / 255
    return psnr_db(page, ((image + 1) / 2).clamp(0, 1))


@pytest.mark.openvino
@pytest.mark.parametrize("self_attention_bits", [0, 8])
def test_openvino_export_gives_the_pages_image(client, tmp_path, self_attention_bits):
    import zipfile

    before = _pixels(client.predict(PROMPT, 5, 4.0, api_name="/compare")[1])
    archive, sizes = client.predict(4.0, self_attention_bits, api_name="/export_openvino")
    assert np.array_equal(_pixels(client.predict(PROMPT, 5, 4.0, api_name="/compare")[1]), before)
    assert sizes["self_attention_bits"] == (self_attention_bits or None)
    assert 0 < sizes["unet_bytes"] < 0.3 * 4 * 5.8e6  # weights at their bits: far under FP32's 23 MB
    assert set(sizes["files"]) == {"unet.xml", "unet.bin", "vae_decoder.xml", "vae_decoder.bin"}
    assert sum(sizes["stored"].values()) == 132 and set(sizes["stored"]) <= {"u2", "u3", "u4", "u6", "i8", "f32"}
    zipfile.ZipFile(archive).extractall(tmp_path / "ov")
    pipe = mixdq.deploy.load_openvino_pipeline(tmp_path / "ov")
    assert pipe.unet.manifest["self_attention_bits"] == sizes["self_attention_bits"]
    assert _psnr_to_the_page(client, pipe) > 40  # the page's image is MixDQ's: no self-attention grid


def test_an_uploaded_profile_of_another_model_is_refused_by_name(client):
    from gradio_client import handle_file

    from support import ROOT

    sdxl = handle_file(str(ROOT / "assets" / "profiles" / "sdxl-turbo-mixdq.json"))
    with pytest.raises(AppError, match=r"not a profile of embedded \(132 layers\).*layers embedded does not"):
        client.predict("embedded", [sdxl], api_name="/upload_profile")
    own = handle_file(str(ROOT / "assets" / "profiles" / "embedded.json"))
    key = client.predict("embedded", [own], api_name="/upload_profile")
    assert key.startswith("embedded · upload-")
    plan = client.predict(key, 4.0, 0.5, api_name="/allocate")  # served like any model
    assert plan["avg_bits"] <= 4.0 + 1e-9


def test_mixdq_yaml_uploads_are_read_as_data(client, tmp_path):
    from gradio_client import handle_file

    from support import ROOT

    files = [handle_file(str(p)) for p in sorted((ROOT / "assets" / "mixdq" / "sdxl-turbo").glob("*.yaml"))]
    assert files
    key = client.predict("sdxl-turbo", files, api_name="/upload_profile")
    assert key.startswith("sdxl-turbo · upload-")
    with pytest.raises(AppError, match="one .json profile, or MixDQ's .yaml files"):
        bad = tmp_path / "profile.pkl"
        bad.write_bytes(b"not a pickle we would ever load")
        client.predict("sdxl-turbo", [handle_file(str(bad))], api_name="/upload_profile")


def test_metric_agreement_matches_the_published_figures():
    from mixdq.planning.damage import metric_agreement

    from support import ROOT

    sdxl = mixdq.Profile.load(ROOT / "assets" / "profiles" / "sdxl-turbo-mixdq.json")
    for bits in (2, 4):
        frame, rho = metric_agreement(sdxl, "weight", bits)
        assert len(frame) == 420 and 0.99 < rho < 1
    _, rho = metric_agreement(mixdq.Profile.load(ROOT / "assets" / "profiles" / "embedded.json"), "weight", 4)
    assert 0.95 < rho < 0.99


def test_a_link_with_bad_values_keeps_the_defaults(models):
    from types import SimpleNamespace

    from app.studio import url_state

    request = SimpleNamespace(query_params={"model": "nope", "budget": "inf", "cw": "nan", "seed": "-9", "prompt": ""})
    picker, cw, prompt, seed, (model, budget) = url_state(models, "embedded", request)
    assert picker["value"] == model == "embedded" and budget is None and seed == 0
    assert not isinstance(cw, float) and not isinstance(prompt, str)  # gr.skip(): left as they are
    request = SimpleNamespace(query_params={"model": "sdxl-turbo", "budget": "1500", "cw": "3", "seed": "7"})
    picker, cw, _, seed, (model, budget) = url_state(models, "embedded", request)
    assert (model, budget, cw, seed) == ("sdxl-turbo", 1500.0, 1.0, 7) and "sdxl-turbo" in picker["choices"]


def test_yaml_with_python_tags_is_refused_not_run(client, tmp_path):
    from gradio_client import handle_file

    evil = tmp_path / "weight_sqnr.yaml"
    marker = tmp_path / "ran"
    evil.write_text(f"model.conv_in: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(AppError, match="not valid YAML|could not|YAML"):
        client.predict("embedded", [handle_file(str(evil))], api_name="/upload_profile")
    assert not marker.exists()


# --- the tabs' wiring, through Gradio's own call path (no server) -------------------------------


def _call(demo, session, block_fn, values: dict) -> list:
    """A handler called as a browser's event calls it: each input's value (its default where
    `values` has none) in Gradio's order, states and updated components from the session."""
    raw = [None if c.stateful else values.get(c, c.value) for c in block_fn.inputs]
    return asyncio.run(demo.process_api(block_fn, raw, session))["data"]


def test_the_budget_controls_reach_each_handler_as_one_value(models):
    with gr.Blocks() as demo:
        shared = Shared(models, gr.Dropdown(list(models), value="embedded"), gr.State(()), gr.State(None))
        b = budget.build(shared)
        c = compare.build(shared, b)
    entry, controls = models["embedded"], b.controls
    values = {shared.model: "embedded", controls.content_weight: 0.7, controls.content_bits: ["8", "4"],
              controls.quality_bits: ["4", "8"], controls.allow_fp: True, controls.quantize_acts: True,
              controls.act_bits: 6.0, controls.mode: "Decoupled (one program)", controls.k: 1.0, c.prompt: PROMPT,
              c.seed: 3}
    session = SessionState(demo)
    reset = next(fn for fn in demo.fns.values() if fn.name == "reset")
    _call(demo, session, reset, {shared.model: "embedded"})  # the model picked: the bits and budget get their range
    session[controls.locks._id] = (("conv_in", "fp"),)
    shown = session[b.slider._id]  # the slider as reset() left it: the model's range
    mb = values[b.slider] = (shown.minimum + shown.maximum) / 2
    read = controls.read({**values, controls.locks: [("conv_in", "fp")]})
    assert read == views.Controls(content_weight=0.7, content_bits=(4, 8), quality_bits=(4, 8), allow_fp=True,
                                  locks=(("conv_in", "fp"),), act_bits=6.0)
    # a handler with gr.Progress after its one dict of values: Generate, in Gradio's call path
    plan = views.solve(entry, read, mb)
    assert plan.allocation.weight_bits("conv_in") is None
    data = _call(demo, session, demo.fns[c.made[0]["id"]], values)
    assert f"the allocation: {plan.avg_bits:.2f} bits" in data[4] and "PSNR" in data[4]
    summary, *_ = _call(demo, session, next(fn for fn in demo.fns.values() if fn.name == "exact"), values)
    assert f"{plan.avg_bits:.2f}" in summary  # letting go of the budget (dragging is drawn in the page)
    lo, hi = views.budget_range(entry, read)
    now, *later = b.reshape({**values, controls.locks: read.locks, b.slider: hi * 10})  # brought inside
    slider, summary, *_ = now
    assert lo <= slider["value"] <= hi and "MB" in summary
    assert (later or [now])[-1][-1] == positions.table(entry, read, lo, hi)  # then every position, these controls


def test_the_studio_imports_only_the_engine_modules_its_package_lists():
    """app/'s docstring lists the engine modules it may use beyond `mixdq` and `mixdq.deploy`."""
    allowed = {"mixdq", "mixdq.deploy", *re.findall(r"`(mixdq(?:\.\w+)+)`", app.__doc__)}
    outside = {}
    for path in [ROOT / "app.py", *sorted((ROOT / "app").rglob("*.py"))]:
        tree = ast.parse(path.read_text())
        inner = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Attribute) and id(node) not in inner:  # mixdq.core.bits.KINDS
                parts = ast.unparse(node).split(".")
                names = [next((".".join(parts[:n]) for n in range(len(parts), 0, -1)
                               if ".".join(parts[:n]) in sys.modules), "")]
            else:
                continue
            for name in names:
                if name.split(".")[0] == "mixdq" and name not in allowed:
                    outside.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert not outside, f"engine modules app/ uses that app/__init__.py does not list: {outside}"
