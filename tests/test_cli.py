import json
import subprocess
import sys

import pytest

from conftest import ROOT
from mixdq.cli import main
from tiny_models import tiny_sdxl


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_python_dash_m_help_lists_every_command():
    res = subprocess.run([sys.executable, "-m", "mixdq", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0
    for command in ("inventory", "memory"):
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
