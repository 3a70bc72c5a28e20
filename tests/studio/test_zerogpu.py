"""The studio under ZeroGPU's contract, with the real `spaces` package (the test extra).

On a ZeroGPU Space `spaces.GPU(duration=...)` asks the device API for a GPU for each call, forks
a worker, pickles the call's arguments into it and its result back (`spaces/zero/wrappers.py`),
and whatever the worker builds dies with it. Here the studio runs as on such a Space
(`python app.py` with SPACES_ZERO_GPU=true and SPACE_ID), on the CPU: `tests/studio/zerogpu/
sitecustomize.py` shims only what a CPU-only torch lacks, and `DeviceAPI` below stands in for the
device API on 127.0.0.1, granting a fresh worker every call (and ending the previous one, as a
scheduler that lent the GPU elsewhere does). Its log says what every GPU call asked for.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
import torch

import mixdq

from support import ROOT

pytestmark = pytest.mark.slow  # starts the studio under `spaces`, twice

PROMPT = "a large red circle on the left, white background"
HARNESS = ROOT / "tests" / "studio" / "zerogpu"


class DeviceAPI:
    """ZeroGPU's device API as `spaces/zero/api.py` (`APIClient`) calls it: /startup-report,
    /schedule (answered with a `ScheduleResponse` that is never `idle`, so each call forks a new
    worker), /allow (the worker's pid), /release."""

    def __init__(self, studio_pid: callable):
        self.schedules: list[dict] = []  # one per GPU call: taskId, durationSeconds, the worker's pid
        self.released: dict[str, bool] = {}  # allow token -> fail
        self.reports = 0
        self._studio_pid = studio_pid
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                body = api.answer(url.path, query)
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str, query: dict) -> bytes:
        with self._lock:
            if path == "/startup-report":
                self.reports += 1
            elif path == "/schedule":
                self.end_workers()  # the GPU went elsewhere meanwhile: no worker is reused
                token = f"token-{len(self.schedules)}"
                self.schedules.append({"task": query["taskId"], "seconds": int(query["durationSeconds"]),
                                       "token": token, "pid": None})
                return json.dumps({"idle": False, "nvidiaIndex": 0, "nvidiaUUID": "GPU-stand-in",
                                   "allowToken": token}).encode()
            elif path == "/allow":
                next(s for s in self.schedules if s["token"] == query["allowToken"])["pid"] = int(query["pid"])
            elif path == "/release":
                self.released[query["allowToken"]] = query["fail"] == "true"
            return b"{}"

    def end_workers(self) -> None:
        """End the workers of earlier calls: only children of the studio, each by its pid."""
        for pid in (s["pid"] for s in self.schedules if s["pid"] is not None):
            if _running_child(pid, self._studio_pid()):
                os.kill(pid, signal.SIGKILL)

    def calls_since(self, n: int) -> list[dict]:
        with self._lock:
            return self.schedules[n:]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _running_child(pid: int, parent: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False  # gone
    return f"\nPPid:\t{parent}\n" in status and "\nState:\tZ" not in status


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _png(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def _close(a: dict, b: dict, tol: float = 1e-3) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=tol), key


def _flat(ranges: dict) -> tuple[list[tuple[str, str]], list[float]]:
    """Calibration ranges as (layer, observer) names and their numbers (lo, hi, calls each)."""
    layers = ranges["layers"]
    names = [(name, kind) for name in sorted(layers) for kind in sorted(layers[name])]
    return names, [v for name, kind in names for v in layers[name][kind]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """What the in-process studio gives for the same calls, and every argument tuple it hands to
    `app.gpu.render` (the functions run here: SPACES_ZERO_GPU is not set in this process). Its own
    pipelines, ranges and cache for this module, whatever other tests loaded or calibrated."""
    from app import api, gpu, settings
    from app.registry import default_models

    calls = []
    real = gpu.render

    def render(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("MIXDQ_STUDIO_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.setattr(settings, "_CURRENT", [])
        mp.setattr(gpu, "PIPELINES", {})
        mp.setattr(gpu, "RANGES", {})
        mp.setattr(gpu, "render", render)
        models = default_models()
        fp, q, metrics = api.compare(models, PROMPT, 0, 4.0)
        api.compare(models, PROMPT, 0, 4.0)  # ranges given, the FP image cached
        measured = api.measure(models, 4.0, 8)
        yield {"fp": fp, "q": q, "metrics": metrics, "measure": measured, "render_calls": list(calls),
               "ranges": mixdq.calibration_ranges(gpu.PIPELINES["embedded"].pipe), "models": models}
    finally:
        mp.undo()


def test_every_argument_the_studio_hands_to_the_gpu_pickles(reference, monkeypatch):
    from app import gpu
    from app.pipelines import Job
    from app.views import Controls

    calls = reference["render_calls"]
    assert [a[2] is None for a, _ in calls] == [True, False, False]  # calibrated once, then ranges passed
    for args, kwargs in calls:  # built through ModelEntry.images and Job.plain()
        assert not kwargs
        assert pickle.loads(pickle.dumps((args, kwargs))) == (args, kwargs)
    key, jobs, ranges = calls[0][0]
    assert key == "embedded" and [j["allocation"] is None for j in jobs] == [True, False]
    result = gpu.render(*calls[-1][0])  # a result comes back pickled too
    assert torch.equal(pickle.loads(pickle.dumps(result))["images"][0], result["images"][0])

    entry = reference["models"]["embedded"]
    allocation = entry.planner(Controls().plan_config()).plan(avg_bits=4.0, act_avg_bits=8).allocation
    job = Job((PROMPT,), 3, allocation, bos_aware=False)
    assert pickle.loads(pickle.dumps(job.plain())) == job.plain()
    assert mixdq.Allocation.from_dict(job.plain()["allocation"]) == allocation

    exported = []
    monkeypatch.setattr(gpu, "export", lambda *a, **k: exported.append((a, k)) or {"archive": "x", "ranges": None})
    entry.export("deployed", allocation)
    entry.export("openvino", allocation, 8)
    assert [a[1] for a, _ in exported] == ["deployed", "openvino"]
    for args, kwargs in exported:
        assert pickle.loads(pickle.dumps((args, kwargs))) == (args, kwargs)


@pytest.mark.timeout(120)
@pytest.mark.skipif(torch.version.cuda is not None, reason="tests/studio/zerogpu shims a CPU-only torch")
def test_studio_serves_images_and_exports_under_zerogpu(reference, tmp_path):
    from gradio_client import Client

    from app import gpu

    cache, port = tmp_path / "cache", _free_port()
    proc: subprocess.Popen | None = None
    device = DeviceAPI(lambda: proc.pid)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_SERVER_", "MIXDQ_"))}
    env.update(
        SPACES_ZERO_GPU="true", SPACE_ID="test/mixdq", SPACES_ZERO_DEVICE_API_URL=device.url,
        ZEROGPU_OFFLOAD_DIR=str(tmp_path / "offload"), PYTHONPATH=str(HARNESS), MIXDQ_STUDIO_CACHE=str(cache),
        MIXDQ_DEVICE="cpu", HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
    )
    log_path = tmp_path / "studio.log"
    url = f"http://127.0.0.1:{port}/"
    try:
        with open(log_path, "w") as log:
            proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"the studio exited:\n{log_path.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"the studio did not start:\n{log_path.read_text()[-4000:]}"
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        assert device.reports == 1  # spaces' start-up hook ran: the studio runs in ZeroGPU mode
        client = Client(url, verbose=False)

        # /compare: FP and quantized images from ONE GPU call, which calibrated; the ranges came back
        fp, q, metrics = client.predict(PROMPT, 0, 4.0, api_name="/compare")
        first, = device.calls_since(0)
        ranges_files = list((cache / "calibration").glob("embedded-*.json"))
        assert len(ranges_files) == 1, "the main process saves the ranges the worker measured"
        saved = ranges_files[0].read_bytes(), ranges_files[0].stat().st_mtime_ns
        (names, numbers), (want_names, want_numbers) = _flat(json.loads(saved[0])), _flat(reference["ranges"])
        assert names == want_names and numbers == pytest.approx(want_numbers, rel=1e-5)
        for got, want in ((_png(fp), reference["fp"]), (_png(q), reference["q"])):
            assert got.shape == want.shape and np.abs(got.astype(int) - want.astype(int)).max() <= 1
        _close(metrics, reference["metrics"])

        # again: the FP image is cached in the main process and the ranges go with the call
        fp2, q2, _ = client.predict(PROMPT, 0, 4.0, api_name="/compare")
        second, = device.calls_since(1)
        assert np.array_equal(_png(q2), _png(q))

        # /measure: FP and quantized images of 8 captions, one GPU call
        measured = client.predict(4.0, 8, api_name="/measure")
        measure_calls = device.calls_since(2)
        assert len(measure_calls) == 1
        _close(measured, reference["measure"])

        # exports: each one GPU call, the archive made in the worker and sent back by path
        for n, (args, name, member) in enumerate((((4.0,), "/export_deployed", "manifest.json"),
                                                  ((4.0, 0), "/export_openvino", "unet.xml"))):
            archive, sizes = client.predict(*args, api_name=name)
            assert len(device.calls_since(3 + n)) == 1, name
            with zipfile.ZipFile(archive) as z:
                assert any(member in f for f in z.namelist()), (name, z.namelist())
            assert sizes["predicted_mb"] == pytest.approx(reference["measure"]["weight_mb"], abs=1e-3)
            assert sum((sizes.get("kernels") or sizes.get("stored")).values()) > 0  # kernels are timed: no reference
        exports = device.calls_since(3)

        # what each call asked for: a positive duration that fits its work, never a calibration again
        # (spaces' default GPU config, which a machine without NVIDIA's driver gets, has duration_factor 1)
        calls = device.calls_since(0)
        assert len(calls) == 5 and all(c["seconds"] > 0 for c in calls)
        assert len({c["task"] for c in calls}) == 2 and exports[0]["task"] == exports[1]["task"] != first["task"]
        assert {c["task"] for c in (first, second, *measure_calls)} == {first["task"]}
        job = {"prompts": [PROMPT]}
        assert first["seconds"] == gpu.render_seconds("embedded", [job, job], None)
        assert second["seconds"] == gpu.render_seconds("embedded", [job], {}) \
            < gpu.render_seconds("embedded", [job], None)
        captions = {"prompts": [""] * 8}  # FP and quantized images of 8 captions, none cached
        assert measure_calls[0]["seconds"] == gpu.render_seconds("embedded", [captions, captions], {})
        assert [c["seconds"] for c in exports] == [gpu.export_seconds("embedded", k, {}, None, {})
                                                   for k in ("deployed", "openvino")]
        assert (ranges_files[0].read_bytes(), ranges_files[0].stat().st_mtime_ns) == saved

        # every call had its own worker, now ended, and gave its GPU back without a failure
        pids = [c["pid"] for c in calls]
        assert None not in pids and len(set(pids)) == 5 and proc.pid not in pids
        assert not any(_running_child(pid, proc.pid) for pid in pids[:-1])
        assert device.released == {c["token"]: False for c in calls}
    except BaseException:
        if log_path.exists():
            print(log_path.read_text()[-6000:])  # pytest shows it with the failure: what the studio said
        raise
    finally:
        if proc is not None:  # the studio and what it forked (its session): workers outlive a killed parent
            os.killpg(proc.pid, signal.SIGKILL)  # before the wait, so the group's id is still the studio's
            proc.wait()
        device.close()
