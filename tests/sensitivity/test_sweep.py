"""The sensitivity sweep: both metrics per probe, batched probes, resumable after any interruption."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import mixdq
from mixdq.quant.layers import quant_layers
from mixdq.sensitivity.config import SweepConfig
from mixdq.sensitivity.driver import sweep
from mixdq.sensitivity.journal import journal_path

from support import ROOT
from tiny_models import PROMPTS, tiny_sd

LAYERS = r"^(conv_in|down_blocks\.1\.attentions\.0\.transformer_blocks\.0\.(attn2\.to_v|ff\.net\.2))$"
CONFIG = SweepConfig(prompts=tuple(PROMPTS), num_inference_steps=2, height=32, width=32,
                     weight_bits=(2, 8), act_bits=(4, 8), layers=LAYERS)


def probed(profile):
    return {layer.name: layer for layer in profile if layer.weight or layer.activation}


def test_sweep_records_both_metrics_and_more_bits_hurt_less(tmp_path):
    pipe = tiny_sd()
    calls = []
    pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    profile = sweep(pipe, CONFIG, tmp_path / "p.json", model_id="tiny-sd", progress=False)

    assert len(profile) == len(quant_layers(pipe)) and profile.names[0] == "conv_in"
    layers = probed(profile)
    assert set(layers) == {"conv_in", "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v",
                           "down_blocks.1.attentions.0.transformer_blocks.0.ff.net.2"}
    for layer in layers.values():
        for kind, (low, high) in (("weight", (2, 8)), ("activation", (4, 8))):
            scores = layer.scores(kind)
            assert set(scores) == {"ssim", "sqnr"} and set(scores["ssim"]) == {low, high}
            assert scores["sqnr"][low] < scores["sqnr"][high]
            assert 0 < scores["ssim"][low] <= scores["ssim"][high] <= 1
    assert layers["conv_in"].group == "quality" and layers["down_blocks.1.attentions.0.transformer_blocks.0.ff.net.2"].group == "content"

    # a probe is one batched pipeline call: steps UNet calls for all prompts together
    probes = 3 * (2 + 2)
    assert len(calls) == (1 + 1 + probes) * CONFIG.num_inference_steps  # calibration, reference, probes
    meta = profile.meta
    assert meta["prompts"] == PROMPTS and meta["seeds"] == [0, 1, 2, 3] and meta["steps"] == 2
    assert meta["resolution"] == [32, 32] and meta["probes"] == probes and len(meta["weights_sha256"]) == 64
    assert {"torch", "diffusers", "transformers"} <= set(meta["versions"]) and meta["elapsed_s"] > 0
    assert mixdq.Profile.load(tmp_path / "p.json") == profile
    assert not journal_path(tmp_path / "p.json").exists()
    df = profile.to_dataframe()
    assert len(df) == 3 * 4 and set(df.columns) >= {"layer", "kind", "bits", "ssim", "sqnr"}


class Interrupt(Exception):
    pass


def stop_after(n):
    def on_probe(i):
        if i == n:
            raise Interrupt

    return on_probe


def test_interrupted_sweep_resumes_to_the_same_profile(tmp_path):
    whole = sweep(tiny_sd(), CONFIG, tmp_path / "whole.json", progress=False)

    out = tmp_path / "resumed.json"
    with pytest.raises(Interrupt):
        sweep(tiny_sd(), CONFIG, out, progress=False, on_probe=stop_after(5))
    assert not out.exists() and len(journal_path(out).read_text().splitlines()) == 1 + 5
    # a torn last line (the process died mid-write) costs that probe only
    with open(journal_path(out), "a") as f:
        f.write('{"kind": "weight", "layer": "conv')
    new = []
    resumed = sweep(tiny_sd(), CONFIG, out, progress=False, on_probe=new.append)
    assert len(new) == 12 - 5
    assert [layer.to_dict() for layer in resumed] == [layer.to_dict() for layer in whole]


def test_a_journal_from_another_sweep_is_refused_not_mixed(tmp_path):
    out = tmp_path / "p.json"
    with pytest.raises(Interrupt):
        sweep(tiny_sd(), CONFIG, out, progress=False, on_probe=stop_after(2))
    other = SweepConfig(**{**CONFIG.__dict__, "first_seed": 7})
    with pytest.raises(mixdq.ConfigError, match="holds a different sweep.*--restart"):
        sweep(tiny_sd(), other, out, progress=False)
    profile = sweep(tiny_sd(), other, out, progress=False, restart=True)
    assert profile.meta["seeds"][0] == 7


@pytest.mark.slow  # a real subprocess killed mid-sweep, then the rest
def test_kill_9_then_rerun_gives_the_uninterrupted_profile(tmp_path):
    """The real thing: `python -m mixdq sensitivity` on the embedded model, killed with SIGKILL."""
    args = [sys.executable, "-m", "mixdq", "sensitivity", "--num-prompts", "2", "--steps", "1",
            "--layers", "attn", "--weight-bits", "2,8", "--act-bits", "8", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed = tmp_path / "killed.json"
    proc = subprocess.Popen([*args, "-o", str(killed)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = journal_path(killed)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) > 10:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not killed.exists()
    done_before = len(journal.read_text().splitlines()) - 1

    rerun = subprocess.run([*args, "-o", str(killed)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    whole = subprocess.run([*args, "-o", str(tmp_path / "whole.json")], cwd=ROOT, env=env,
                           capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    a = json.loads(killed.read_text())
    b = json.loads((tmp_path / "whole.json").read_text())
    assert a["layers"] == b["layers"] and a["meta"]["probes"] == b["meta"]["probes"] > done_before


def test_sweep_runs_on_sdxl_pipelines(tmp_path):
    from tiny_models import tiny_sdxl

    config = SweepConfig(prompts=tuple(PROMPTS), num_inference_steps=2, height=32, width=32,
                         weight_bits=(2, 8), act_bits=(8,), layers=r"^(conv_in|add_embedding\.linear_1)$")
    profile = sweep(tiny_sdxl(), config, tmp_path / "p.json", progress=False)
    for name in ("conv_in", "add_embedding.linear_1"):
        assert profile[name].weight["sqnr"][2] < profile[name].weight["sqnr"][8]
        assert set(profile[name].activation) == {"ssim", "sqnr"}
