import json
import subprocess
import sys

import pytest

from mixdq.cli import main

from support import ROOT
from tiny_models import tiny_sdxl


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_python_dash_m_help_lists_every_command():
    res = subprocess.run([sys.executable, "-m", "mixdq", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0
    for command in ("inventory", "memory", "sensitivity", "import-mixdq", "allocate", "deploy", "report"):
        assert command in res.stdout


def test_inventory_json_of_full_size_sdxl_turbo(capsys):
    code, out, _ = run(capsys, "inventory", "sdxl-turbo", "--json")
    layers = json.loads(out)
    assert code == 0 and len(layers) == 794
    assert {"name", "kind", "params", "group"} <= set(layers[0])
    assert sum(layer["params"] for layer in layers) == 2_565_880_320
    assert sum(layer["group"] == "content" for layer in layers) == 420


def test_no_model_named_inventories_the_embedded_model(capsys):
    code, out, _ = run(capsys, "inventory", "--json")
    layers = json.loads(out)
    assert code == 0 and len(layers) == 132
    assert any(layer["name"].endswith("attn2.to_k") and layer["group"] == "content" for layer in layers)


def test_inventory_table_and_a_local_folder(capsys, tmp_path):
    tiny_sdxl().save_pretrained(tmp_path)
    code, out, _ = run(capsys, "inventory", str(tmp_path))
    assert code == 0
    assert "attn2.to_k" in out and "add_embedding.linear_1" in out
    assert "183 layers" in out


def test_memory_of_an_allocation_file(capsys, tmp_path):
    alloc = tmp_path / "a.json"
    alloc.write_text(json.dumps({"weights": {"conv_in": 4}, "activations": {"conv_in": 8}}))
    code, out, _ = run(capsys, "memory", "sd-turbo", "--allocation", str(alloc), "--json")
    report = json.loads(out)
    assert code == 0 and report["layers"] == 282
    assert report["weight_bytes"] == pytest.approx(report["weight_bytes_fp16"] - 11520 * 1.5 + 320 * 2)
    code, out, _ = run(capsys, "memory", "sdxl-turbo", "--weight-bits", "8", "--act-bits", "8")
    assert "0.501x" in out and "2,568.9 MB" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["inventory", "nobody/no-such-model"], "hf download nobody/no-such-model"),
        (["inventory", "./missing-folder"], "no folder"),
    ],
)
def test_errors_are_one_clear_line_not_a_traceback(argv, message):
    res = subprocess.run([sys.executable, "-m", "mixdq", *argv], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2
    assert message in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.startswith("error: ")


def test_bad_allocation_file_is_a_clear_error(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"weights": {"conv_in": 7}}')
    code, _, err = run(capsys, "memory", "sd-turbo", "--allocation", str(bad))
    assert code == 2 and "choose one of 2, 3, 4, 5, 6, 8" in err


SDXL_PROFILE = str(ROOT / "assets" / "profiles" / "sdxl-turbo-mixdq.json")


def test_import_mixdq_then_allocate_json(capsys, tmp_path):
    out = tmp_path / "sdxl.json"
    code, printed, _ = run(capsys, "import-mixdq", str(ROOT / "assets" / "mixdq" / "sdxl-turbo"), "-o", str(out))
    assert code == 0 and "794 layers (420 content, 374 quality) of sdxl-turbo" in printed

    code, printed, _ = run(capsys, "allocate", "--profile", str(out), "--avg-bits", "4", "--json")
    result = json.loads(printed)
    assert code == 0 and "activations" not in result
    assert len(result["weights"]) == 794 and set(result["weights"].values()) <= {2, 4, 8}
    assert result["avg_bits"] <= 4 and result["weight_mb"] > 0 and result["damage"] > 0

    code, printed, _ = run(capsys, "allocate", "--profile", str(out), "--budget-mb", "1500", "--json",
                           "--act-avg-bits", "6", "--allow-fp", "--lock", "conv_in=fp", "--act-lock", "conv_out=fp")
    result = json.loads(printed)
    assert result["weights"]["conv_in"] == "fp" and result["activations"]["conv_out"] == "fp"
    assert result["weight_mb"] <= 1500 and result["act_avg_bits"] <= 6


def test_allocate_mixdq_mode_json(capsys):
    code, printed, _ = run(capsys, "allocate", "--profile", SDXL_PROFILE, "--avg-bits", "5", "--mode", "mixdq",
                           "--k", "1.1", "--act-avg-bits", "8", "--json")
    result = json.loads(printed)
    assert code == 0 and abs(result["avg_bits"] - 5) <= 0.02
    assert sum(v == "fp" for v in result["activations"].values()) == 9  # MixDQ's ~1 % per group


def test_allocate_errors_are_one_clear_line(capsys, tmp_path):
    code, _, err = run(capsys, "allocate", "--profile", SDXL_PROFILE, "--budget-mb", "10")
    assert code == 2 and "smallest feasible 644.5 MB" in err
    code, _, err = run(capsys, "allocate", "--profile", str(tmp_path / "none.json"), "--avg-bits", "4")
    assert code == 2 and "no profile at" in err
    code, _, err = run(capsys, "allocate", "--profile", SDXL_PROFILE, "--avg-bits", "4", "--lock", "conv_in")
    assert code == 2 and "LAYER=BITS" in err


def test_allocate_then_deploy_the_embedded_model(capsys, tmp_path):
    from mixdq.deploy import load_deployed_pipeline, read_manifest

    profile = str(ROOT / "assets" / "profiles" / "embedded.json")
    code, _, _ = run(capsys, "allocate", "--profile", profile, "--avg-bits", "4", "--act-avg-bits", "8",
                     "-o", str(tmp_path / "alloc.json"))
    assert code == 0
    code, printed, _ = run(capsys, "deploy", "--allocation", str(tmp_path / "alloc.json"), "-o", str(tmp_path / "m"),
                           "--num-prompts", "4")
    assert code == 0 and "layers per kernel:" in printed
    manifest = read_manifest(tmp_path / "m")
    assert manifest["base_model"] is None and len(manifest["layers"]) == 132
    code, printed, _ = run(capsys, "report", str(tmp_path / "m"), "--json")
    rows = json.loads(printed)
    assert code == 0 and len(rows) == 132
    for row in rows:  # every layer says which kernel it took, why, and what that cost against float
        entry = manifest["layers"][row["layer"]]
        assert row["kernel"] == entry.get("kernel", "float") and row["reason"] == entry.get("kernel_reason", "")
        if row["kernel"] != "float":
            assert row["ms"] == pytest.approx(entry["kernel_ms"][row["kernel"]], rel=1e-12)
            assert row["float_ms"] == pytest.approx(entry["kernel_ms"]["float"], rel=1e-12)
    code, printed, _ = run(capsys, "report", str(tmp_path / "m"))
    assert code == 0 and "fastest measured" in printed and "layers per kernel:" in printed
    pipe = load_deployed_pipeline(tmp_path / "m")
    image = pipe("a small red circle on the left, white background", num_inference_steps=4,
                 guidance_scale=0.0, output_type="pt").images
    assert image.shape == (1, 3, 64, 64)
