"""Sensitivity sweeps on Ray workers: the same profile as the serial sweep, through worker deaths,
driver restarts and a second driver; workers with other weights are refused."""

import json
import os
import signal

import pytest
import torch

import mixdq
from mixdq.embedded import dataset
from mixdq.sensitivity.distributed import Workers
from mixdq.sensitivity.journal import journal_lock, journal_path

pytestmark = pytest.mark.ray

ray = pytest.importorskip("ray")

# 3 layers x (weight 3, 8 bits + activation 8 bits) = 9 probes of 4 prompts each
CONFIG = mixdq.SweepConfig(prompts=dataset.calibration_captions(4), num_inference_steps=2, batch_size=4,
                           weight_bits=(3, 8), act_bits=(8,), layers=r"^down_blocks\.1\.attentions\.0\.(proj_in|proj_out|transformer_blocks\.0\.ff\.net\.2)$")
PROBES = 9
ONE_THREAD_EACH = Workers(count=2, threads=1)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray runtime for the module (a sweep joins it rather than starting its own)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def serial_profile(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each worker uses: the same sums in the same order
    try:
        return mixdq.sweep(_pipe(), CONFIG, tmp_path_factory.mktemp("serial") / "p.json", progress=False)
    finally:
        torch.set_num_threads(threads)


def _pipe():
    pipe = mixdq.load_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _scores(profile):
    return {layer.name: (layer.weight, layer.activation) for layer in profile}


def _busy_worker_pid() -> int | None:
    """A worker process in the middle of a probe (Ray titles it `ray::ProbeWorker.probe`)."""
    import psutil

    for p in psutil.process_iter(["cmdline"]):
        if any("ProbeWorker.probe" in part for part in p.info["cmdline"] or []):
            return p.pid
    return None


def test_workers_give_the_serial_profile_score_for_score(serial_profile, tmp_path):
    profile = mixdq.sweep(_pipe(), CONFIG, tmp_path / "p.json", workers=ONE_THREAD_EACH, progress=False)
    assert _scores(profile) == _scores(serial_profile)
    assert [layer.name for layer in profile] == [layer.name for layer in serial_profile]
    for key in ("weights_sha256", "prompts", "seeds", "resolution", "probes", "sweep"):
        assert profile.meta[key] == serial_profile.meta[key]
    run = profile.meta["workers"]
    assert run["count"] == 2 and run["threads_each"] == 1 and run["requeued_probes"] == 0
    assert len(run["probe_s_per_worker"]) == 2 and all(s > 0 for s in run["probe_s_per_worker"])
    assert json.loads((tmp_path / "p.json").read_text())["meta"]["workers"] == run
    assert not journal_path(tmp_path / "p.json").exists()


def test_a_worker_killed_mid_probe_costs_only_that_probe(serial_profile, tmp_path):
    killed = []

    def kill_one(n):
        if n == 2 and not killed:
            pid = _busy_worker_pid()
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    profile = mixdq.sweep(_pipe(), CONFIG, tmp_path / "p.json", workers=ONE_THREAD_EACH, progress=False,
                          on_probe=kill_one)
    assert killed, "no worker was busy to kill"
    assert _scores(profile) == _scores(serial_profile)
    assert profile.meta["workers"]["requeued_probes"] == 1


def test_an_interrupted_driver_resumes_without_rerunning_finished_probes(serial_profile, tmp_path):
    out = tmp_path / "p.json"

    def stop(n):
        if n == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mixdq.sweep(_pipe(), CONFIG, out, workers=ONE_THREAD_EACH, progress=False, on_probe=stop)
    finished = len(journal_path(out).read_text().splitlines()) - 1  # after the header
    assert finished == 4
    again = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # resumed without workers: the journal is the same either way
        profile = mixdq.sweep(_pipe(), CONFIG, out, progress=False, on_probe=again.append)
    finally:
        torch.set_num_threads(threads)
    assert len(again) == PROBES - finished
    assert _scores(profile) == _scores(serial_profile)


def test_a_second_driver_on_the_same_journal_is_refused(tmp_path):
    out = tmp_path / "p.json"
    with journal_lock(out), pytest.raises(mixdq.ConfigError, match=r"another sweep \(pid \d+ .*\) is writing"):
        mixdq.sweep(_pipe(), CONFIG, out, progress=False)
    assert not journal_path(out).exists()


def test_workers_with_other_weights_are_refused(tmp_path):
    pipe = _pipe()
    with torch.no_grad():
        pipe.unet.conv_in.weight[0, 0, 0, 0] += 1e-3  # the driver's copy differs from what workers load
    with pytest.raises(mixdq.ConfigError, match="loaded other weights than the driver"):
        mixdq.sweep(pipe, CONFIG, tmp_path / "p.json", workers=ONE_THREAD_EACH, progress=False)


def test_workers_split_evaluation_images_as_one_machine_would():
    from mixdq.sensitivity.distributed import generate
    from mixdq.sensitivity.probes import weights_sha256

    pipe = _pipe()
    prompts = dataset.evaluation_captions(5)
    allocation = mixdq.Allocation.uniform(mixdq.load_inventory(None).names, 4, None)
    mixdq.quantize_(pipe, allocation)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = mixdq.generate_images(pipe, prompts, 0, CONFIG.batch_size, **CONFIG.generation_kwargs())
    finally:
        torch.set_num_threads(threads)
    mixdq.quantize_(pipe, mixdq.Allocation())
    spread = generate(ONE_THREAD_EACH, CONFIG, weights_sha256(pipe), prompts, allocation)
    assert spread.shape == alone.shape == (5, 3, 64, 64)
    assert torch.equal(spread, alone)


def test_the_command_line_spreads_a_sweep_over_workers(tmp_path, capsys):
    from mixdq.cli import main

    out = tmp_path / "p.json"
    code = main(["sensitivity", "-o", str(out), "--workers", "2", "--threads", "1", "--num-prompts", "2", "--steps", "1",
                 "--weight-bits", "8", "--act-bits", "", "--layers", r"^conv_(in|out)$"])
    assert code == 0 and "2 probes" in capsys.readouterr().out
    meta = json.loads(out.read_text())["meta"]
    assert meta["workers"]["count"] == 2 and meta["probes"] == 2
