"""`python -m app.space`: the folder a Hugging Face Space runs from, per hardware kind, and the
publish step up to the Hub's door (no test touches the network)."""

import inspect
import json
import os
import re
import subprocess
import sys

import huggingface_hub
import pytest
import yaml

import mixdq
from app import space

from support import ROOT

REQUIREMENTS = (ROOT / "requirements.txt").read_text()
GRADIO_PIN = next(line.split("==")[1].strip() for line in REQUIREMENTS.splitlines() if line.startswith("gradio=="))
TORCH_PIN = next(line.split("==")[1].strip() for line in REQUIREMENTS.splitlines() if line.startswith("torch=="))
EMBEDDED_UNET = "assets/embedded/unet/diffusion_pytorch_model.safetensors"
EMBEDDED_BINARIES = {
    EMBEDDED_UNET,
    "assets/embedded/vae/diffusion_pytorch_model.safetensors",
    "assets/embedded/text_encoder/model.safetensors",
    "assets/embedded-classifier/model.safetensors",
}
SDXL_FP16 = {
    "model_index.json", "scheduler/scheduler_config.json",
    *(f"{t}/{f}" for t in ("tokenizer", "tokenizer_2")
      for f in ("merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json")),
    "text_encoder/config.json", "text_encoder/model.fp16.safetensors",
    "text_encoder_2/config.json", "text_encoder_2/model.fp16.safetensors",
    "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors",
    "vae/config.json", "vae/diffusion_pytorch_model.fp16.safetensors",
}


def front_matter(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def preloads(front: dict) -> dict[str, set[str]]:
    entries = front.get("preload_from_hub", [])
    assert all(len(entry.split(" ")) == 2 for entry in entries), entries  # "repo file1,file2", no commit
    return {entry.split(" ")[0]: set(entry.split(" ")[1].split(",")) for entry in entries}


def git_files(*paths: str) -> set[str]:
    out = subprocess.run(["git", "ls-files", "--", *paths], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("kind, models, hub", [
    ("cpu-basic", "embedded", {}),
    ("l4x1", "embedded,sdxl-turbo", {"stabilityai/sdxl-turbo": SDXL_FP16}),
    ("zero-a10g", "sdxl-turbo", {"stabilityai/sdxl-turbo": SDXL_FP16}),
])
def test_assembly_per_kind(tmp_path, kind, models, hub):
    lines = []
    out = tmp_path / "space"
    result = space.assemble(out, kind, models, log=lines.append)

    front, body = front_matter((out / "README.md").read_text())
    assert front["sdk"] == "gradio" and front["sdk_version"] == GRADIO_PIN and front["app_file"] == "app.py"
    assert front["python_version"] == "3.12"  # a ZeroGPU Python (3.12.12); any 3.x elsewhere
    assert front["suggested_hardware"] == kind
    assert front["title"] and front["short_description"] and "env" not in front
    assert preloads(front) == hub  # exactly the fp16 files the served models load; none on the CPU
    assert body.endswith(front_matter((ROOT / "README.md").read_text())[1])  # the repo's README body

    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files == set(result.files) | {space.MARKER}
    assert {"app.py", "app/studio.py", "mixdq/__init__.py", EMBEDDED_UNET, "assets/profiles/embedded.json",
            "assets/profiles/sdxl-turbo-mixdq.json", "requirements.txt", "README.md", "pyproject.toml"} <= files
    assert {f for f in git_files("app", "mixdq", "assets") if (ROOT / f).is_file()} - {"app/space.py"} <= files
    assert not [f for f in files if f.split("/")[0] in ("tests", "bench", ".ci", ".git", "out", ".venv")]
    links = re.findall(r"\]\((?!https?:|#)([^)#]+)", body)  # the README's own files: its screenshot, docs/
    assert "docs/images/studio.png" in links and not [link for link in links if link not in files]
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    assert "run.sh" not in files and "DEVELOPERS.md" not in files
    assert (out / EMBEDDED_UNET).read_bytes() == (ROOT / EMBEDDED_UNET).read_bytes()
    assert {path for path, _ in result.xet} == EMBEDDED_BINARIES | {"docs/images/studio.png"}  # the README's screenshot
    assert result.total_bytes == sum((out / f).stat().st_size for f in result.files)
    assert any("diffusion_pytorch_model.safetensors (23.4 MB)" in line for line in lines)
    assert any(f"{len(result.files)} files" in line for line in lines)

    reqs = (out / "requirements.txt").read_text()
    pins = [line for line in reqs.splitlines() if line and not line.startswith("#")]
    torch = [line for line in pins if line.startswith("torch==")]
    assert not [line for line in pins if line.split("==")[0] == "spaces"]  # the SDK image brings it
    assert f"gradio=={GRADIO_PIN}" in pins and "diffusers==0.42.1" in pins
    if kind == "cpu-basic":
        assert pins[0] == "--extra-index-url https://download.pytorch.org/whl/cpu"
        assert torch == [f"torch=={TORCH_PIN}+cpu"]
    elif kind == "zero-a10g":
        assert torch == ["torch==2.11.0"] and "--extra-index-url" not in reqs
    else:
        assert torch == [f"torch=={TORCH_PIN}"] and "--extra-index-url" not in reqs and "R580" in reqs

    manifest = json.loads((out / space.MARKER).read_text())
    assert manifest["hardware"] == kind and manifest["models"] == models.split(",")


def test_rerun_replaces_its_own_previous_assembly(tmp_path):
    out = tmp_path / "space"
    space.assemble(out, "cpu-basic", log=lambda _: None)
    (out / "stale.txt").write_text("from an earlier run")
    space.assemble(out, "a10g-large", "embedded,sdxl-turbo", log=lambda _: None)
    front, _ = front_matter((out / "README.md").read_text())
    assert front["suggested_hardware"] == "a10g-large" and "stabilityai/sdxl-turbo" in preloads(front)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space"]  # no temporary folder left behind


def test_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(mixdq.ConfigError, match="not empty and is not a previous assembly"):
        space.assemble(tmp_path, "cpu-basic", log=lambda _: None)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    with pytest.raises(mixdq.ConfigError, match="is a file"):
        space.assemble(tmp_path / "notes.txt", "cpu-basic", log=lambda _: None)
    empty = tmp_path / "empty"
    empty.mkdir()
    space.assemble(empty, "cpu-basic", log=lambda _: None)  # an empty folder is fine
    assert (empty / "app.py").is_file()


@pytest.mark.parametrize("kind, models, message", [
    ("a10g", "embedded", "unknown Space hardware 'a10g' (did you mean 'a10g-small' or 'a10g-large'?); choose one of cpu-basic"),
    ("zerogpu", None, "(did you mean 'zero-a10g'?)"),
    ("gpu", None, "unknown Space hardware 'gpu'"),
    ("l4x1", "sdxl", "unknown model 'sdxl' (did you mean 'sdxl-turbo'?): --models takes"),
    ("cpu-basic", "embedded,sdxl-turbo", "cpu-basic cannot serve sdxl-turbo images: CPU basic: 2 vCPU, 16 GB RAM has no GPU"),
    ("l4x1", "sd-turbo", "unknown model 'sd-turbo' (did you mean 'sdxl-turbo'?): --models takes a comma-separated "
     "list of embedded, sdxl-turbo, the models the studio ships a sensitivity profile of"),
])
def test_bad_inputs_say_what_to_do(tmp_path, kind, models, message):
    with pytest.raises(mixdq.ConfigError) as e:
        space.assemble(tmp_path / "space", kind, models, log=lambda _: None)
    assert message in str(e.value)
    assert not (tmp_path / "space").exists()


def test_repo_readme_front_matter_is_valid_for_zerogpu():
    front, _ = front_matter((ROOT / "README.md").read_text())
    assert front["python_version"] == "3.12"  # ZeroGPU runs 3.12.12 or 3.10.13 (spaces-zerogpu.md)
    assert front["sdk"] == "gradio" and front["sdk_version"] == GRADIO_PIN
    assert (ROOT / front["app_file"]).is_file()
    assert set(space.KINDS) <= {h.value for h in huggingface_hub.SpaceHardware}


def _cli(tmp_path, *argv):
    env = {k: v for k, v in os.environ.items() if k not in ("HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE")}
    env |= {"HF_TOKEN": "", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
            "HF_TOKEN_PATH": str(tmp_path / "hf" / "token"), "HF_ENDPOINT": "http://127.0.0.1:9"}
    return subprocess.run([sys.executable, "-m", "app.space", *argv], cwd=ROOT, env=env, capture_output=True, text=True)


def test_cli_publish_without_a_token_says_how_to_get_one(tmp_path):
    res = _cli(tmp_path, "publish", "someone/mixdq-studio", "--hardware", "cpu-basic")
    assert res.returncode == 2 and res.stdout == ""  # nothing assembled, nothing sent
    assert res.stderr.startswith("error: publishing needs a Hugging Face token")
    assert "hf auth login" in res.stderr and "HF_TOKEN=" in res.stderr
    res = _cli(tmp_path, "assemble", str(tmp_path / "out"), "--hardware", "cpu-basic", "--models", "sdxl-turbo")
    assert res.returncode == 2 and res.stderr.startswith("error: cpu-basic cannot serve sdxl-turbo")
    assert not (tmp_path / "out").exists()


def test_publish_offline_refuses_before_any_request(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(mixdq.ConfigError, match="unset HF_HUB_OFFLINE"):
        space.publish("someone/mixdq-studio", "l4x1", log=lambda _: None)
    with pytest.raises(mixdq.ConfigError, match="give OWNER/NAME"):
        space.publish("mixdq-studio", "l4x1", log=lambda _: None)


REAL_API = huggingface_hub.HfApi


class RecordingApi:
    """HfApi's Space calls, recorded; each call is bound to the real method's signature first."""

    calls: list = []

    def __init__(self, token=None):
        assert token == "hf_test"

    def __getattr__(self, name):
        real = getattr(REAL_API, name)

        def call(*args, **kwargs):
            inspect.signature(real).bind(self, *args, **kwargs)  # TypeError on a wrong call
            if name == "upload_folder":  # the folder exists only during the call
                folder = kwargs["folder_path"]
                kwargs["readme"] = front_matter((folder / "README.md").read_text())[0]
                kwargs["requirements"] = (folder / "requirements.txt").read_text()
            RecordingApi.calls.append((name, args, kwargs))
            return {"get_space_variables": {}}.get(name, f"https://huggingface.co/spaces/{args[0]}" if args else None)

        return call


def test_publish_creates_sets_variables_and_uploads(tmp_path, monkeypatch):
    monkeypatch.setattr(space, "_token", lambda: "hf_test")
    monkeypatch.setattr(space, "HfApi", RecordingApi)
    RecordingApi.calls = []
    url = space.publish("someone/studio", "zero-a10g", "sdxl-turbo", private=True, log=lambda _: None)
    assert url == "https://huggingface.co/spaces/someone/studio"
    names = [name for name, _, _ in RecordingApi.calls]
    assert names == ["create_repo", "add_space_variable", "get_space_variables", "upload_folder"]
    _, args, kw = RecordingApi.calls[0]
    assert args == ("someone/studio",) and kw == dict(repo_type="space", space_sdk="gradio", exist_ok=True, private=True)
    assert RecordingApi.calls[1][1] == ("someone/studio", "MIXDQ_STUDIO_MODELS", "sdxl-turbo")
    upload = RecordingApi.calls[-1][2]
    assert upload["repo_id"] == "someone/studio" and upload["repo_type"] == "space"
    assert upload["readme"]["suggested_hardware"] == "zero-a10g" and "torch==2.11.0" in upload["requirements"]
    assert space.MARKER in upload["ignore_patterns"]

    RecordingApi.calls = []
    space.publish("someone/studio", "t4-medium", "embedded,sdxl-turbo", allow_sweeps=True, request_hardware=True,
                  cache="/data", out=str(tmp_path / "kept"), log=lambda _: None)
    variables = {args[1]: args[2] for name, args, _ in RecordingApi.calls if name == "add_space_variable"}
    assert variables == {"MIXDQ_STUDIO_MODELS": "embedded,sdxl-turbo", "MIXDQ_STUDIO_SWEEPS": "1",
                         "MIXDQ_STUDIO_CACHE": "/data"}
    assert ("request_space_hardware", ("someone/studio", "t4-medium"), {}) in RecordingApi.calls
    assert (tmp_path / "kept" / "app.py").is_file()  # --out keeps the assembly


def test_docs_cover_every_kind_and_both_commands():
    docs = (ROOT / "docs" / "spaces.md").read_text()
    assert "python -m app.space assemble" in docs and "python -m app.space publish" in docs
    assert all(f"`{kind}`" in docs for kind in space.KINDS)
