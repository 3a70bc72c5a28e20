"""Assemble MixDQ Studio as a Hugging Face Space, and publish it (docs/spaces.md says what runs where).

    python -m app.space assemble OUT --hardware cpu-basic
    python -m app.space assemble OUT --hardware l4x1 --models embedded,sdxl-turbo
    python -m app.space publish OWNER/NAME --hardware zero-a10g --models sdxl-turbo [--private]

`assemble` writes the folder a Space runs from: the tracked files the studio reads at run time
(app.py, app/, mixdq/, assets/, pyproject.toml, LICENSE), a requirements.txt with the torch build
that suits the hardware, and a README.md whose front matter names the hardware and preloads the
served models' fp16 weights at build time. `publish` assembles into a temporary folder, creates
the Space, sets its variables (MIXDQ_STUDIO_MODELS, ...) through the API and uploads the folder
over HTTP, where the Hub stores the binaries in Xet itself (a git push without LFS is rejected).

What the Hub accepts was read in hub-docs @ 242f4a1 (2026-08-22), not tried on a Space:
- spaces-config-reference.md: `suggested_hardware` "must be a valid hardware flavor": cpu-basic,
  cpu-upgrade, t4-small, t4-medium, l4x1, l4x4, l40sx1.., a10g-small, a10g-large, ...; the list
  omits ZeroGPU, whose flavor `zero-a10g` is huggingface_hub 2.4.0's `SpaceHardware.ZERO_A10G`
  (and what ZeroGPU Spaces put there). `preload_from_hub` is a list of "repository_name
  file1,file2" strings, downloaded at build time into the default cache ~/.cache/huggingface/hub
  (not private repos). `python_version`: "any valid Python 3.x"; `short_description` shows on
  the thumbnail.
- spaces-zerogpu.md: Python 3.12.12 or 3.10.13; PyTorch 2.8.0, 2.9.1, 2.10.0, 2.11.0.
- spaces-dependencies.md: the runtime installs requirements.txt; the Gradio SDK image brings
  gradio (at `sdk_version`) and, per the `spaces` sources, `spaces` itself: never pin it.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from huggingface_hub import HfApi, SpaceHardware, constants, get_token
from huggingface_hub.errors import HfHubHTTPError

from mixdq import ARCHITECTURES, ConfigError, MixDQError

ROOT = Path(__file__).resolve().parent.parent

# what ships: tracked files under these folders, and these top-level files where tracked
SHIP_DIRS = ("app", "mixdq", "assets", "docs")  # docs/: the README's screenshot and links
SHIP_FILES = ("app.py", "pyproject.toml")
SHIP_PREFIXES = ("LICENSE", "NOTICE")  # LICENSE, LICENSE.md, ... at the top level
MARKER = ".mixdq-space.json"  # written into every assembly; what lets a re-run replace it
# what MIXDQ_STUDIO_MODELS accepts: the models the studio ships a sensitivity profile of
# (app.startup.SHIPPED_PROFILES); SD-Turbo needs one measured first (`mixdq sensitivity sd-turbo`)
MODELS = ("embedded", "sdxl-turbo")
DEFAULT_MODELS = ("embedded",)
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
ZEROGPU_TORCH = "2.11.0"  # the newest of spaces-zerogpu.md's list (2.8.0, 2.9.1, 2.10.0, 2.11.0)
XET_MIN_BYTES = 10_000_000  # "For files larger than 10MB, Spaces requires Git-LFS" (spaces-github-actions.md)
TOKENIZER_FILES = ("merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json")


@dataclass(frozen=True)
class Kind:
    """A Space hardware flavor, as `suggested_hardware` and `request_space_hardware` name it."""

    name: str
    label: str  # the hardware, from spaces-gpus.md / spaces-zerogpu.md
    gpu: bool
    zero: bool = False


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("cpu-basic", "CPU basic: 2 vCPU, 16 GB RAM", gpu=False),
        Kind("t4-small", "Nvidia T4 small: 4 vCPU, 15 GB RAM, 16 GB VRAM", gpu=True),
        Kind("t4-medium", "Nvidia T4 medium: 8 vCPU, 30 GB RAM, 16 GB VRAM", gpu=True),
        Kind("l4x1", "1x Nvidia L4: 8 vCPU, 30 GB RAM, 24 GB VRAM", gpu=True),
        Kind("a10g-small", "Nvidia A10G small: 4 vCPU, 15 GB RAM, 24 GB VRAM", gpu=True),
        Kind("a10g-large", "Nvidia A10G large: 12 vCPU, 46 GB RAM, 24 GB VRAM", gpu=True),
        Kind("zero-a10g", "ZeroGPU: a GPU per call, half an RTX Pro 6000 Blackwell (48 GB)", gpu=True, zero=True),
    )
}


@dataclass(frozen=True)
class Assembly:
    out: Path
    kind: Kind
    models: tuple[str, ...]
    files: tuple[str, ...]  # every file in the folder, relative, the marker excepted
    total_bytes: int
    xet: tuple[tuple[str, int], ...]  # binaries (and files over 10 MB) the Hub stores in Xet


# ---------------------------------------------------------------------------------------------
# What a kind gets


def parse_kind(name: str) -> Kind:
    if name in KINDS:
        return KINDS[name]
    close = ([k for k in KINDS if k.startswith(name)] or [k for k in KINDS if name and name in k]
             or difflib.get_close_matches(name, KINDS, n=1, cutoff=0.5))
    hint = f" (did you mean {' or '.join(repr(k) for k in close)}?)" if close else ""
    raise ConfigError(
        f"unknown Space hardware '{name}'{hint}; choose one of {', '.join(KINDS)} "
        "(docs/spaces.md says what each runs)"
    )


def parse_models(text: str | Iterable[str] | None, kind: Kind) -> tuple[str, ...]:
    """The models the Space serves with images, checked against what the hardware can run."""
    items = text.split(",") if isinstance(text, str) else list(text or ())
    models = tuple(dict.fromkeys(m.strip() for m in items if m.strip())) or DEFAULT_MODELS
    for m in models:
        if m not in MODELS:
            close = difflib.get_close_matches(m, MODELS, n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"unknown model '{m}'{hint}: --models takes a comma-separated list of {', '.join(MODELS)}, "
                "the models the studio ships a sensitivity profile of"
            )
    if not kind.gpu:
        full = [m for m in models if m != "embedded"]
        if full:
            raise ConfigError(
                f"{kind.name} cannot serve {', '.join(full)} images: {kind.label} has no GPU, so the "
                "full-size pipeline would load in fp32 on the CPU (13.9 GB for SDXL-Turbo, and 10.3 GB more "
                "for its quantized copy, against 16 GB) and take minutes per image. On cpu-basic the "
                "studio serves the embedded model's images and every full-size profile view; drop "
                f"'{','.join(full)}' from --models, or choose a GPU kind (t4-medium, l4x1, a10g-large, zero-a10g)"
            )
    return models


def fp16_files(model: str) -> tuple[str, ...]:
    """The files of a full-size model's hub repo that `from_pretrained(variant="fp16")` reads.

    sdxl-turbo's names match a listing of stabilityai/sdxl-turbo's files; sd-turbo's follow the
    same diffusers layout (one text encoder and tokenizer). Neither was checked against the Hub
    from here (no network): a wrong name fails the Space's build, so check its build log."""
    sdxl = model == "sdxl-turbo"
    suffixes = ("", "_2") if sdxl else ("",)
    files = ["model_index.json", "scheduler/scheduler_config.json"]
    for s in suffixes:
        files += [f"tokenizer{s}/{name}" for name in TOKENIZER_FILES]
    for s in suffixes:
        files += [f"text_encoder{s}/config.json", f"text_encoder{s}/model.fp16.safetensors"]
    for part in ("unet", "vae"):
        files += [f"{part}/config.json", f"{part}/diffusion_pytorch_model.fp16.safetensors"]
    return tuple(files)


def preload_from_hub(kind: Kind, models: Iterable[str]) -> list[str]:
    """`preload_from_hub` entries ("repo file1,file2"): the fp16 files of every full-size model
    on GPU kinds and ZeroGPU (where the studio loads fp16 on CUDA); none on the CPU."""
    if not kind.gpu:
        return []
    return [f"{ARCHITECTURES[m].hub_id} {','.join(fp16_files(m))}" for m in models if m != "embedded"]


def split_front_matter(text: str) -> tuple[dict, str]:
    """A README's YAML front matter (parsed with safe_load) and the body after it."""
    m = re.match(r"---\r?\n(.*?)\r?\n---[ \t]*\r?\n", text, re.S)
    if m is None:
        raise ConfigError("README.md has no YAML front matter (--- ... ---) at its top; restore it from git")
    front = yaml.safe_load(m.group(1)) or {}
    if not isinstance(front, dict):
        raise ConfigError("README.md's front matter is not a YAML mapping; restore it from git")
    return front, text[m.end():]


def _pins(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        name, sep, version = line.partition("==")
        if sep and not line.startswith("-"):
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def gradio_pin(requirements: str) -> str:
    pin = _pins(requirements).get("gradio")
    if pin is None:
        raise ConfigError("requirements.txt pins no gradio (gradio==X.Y.Z): the Space's sdk_version is that pin")
    return pin


def front_matter(kind: Kind, models: Iterable[str], repo_front: dict, requirements: str) -> dict:
    """The Space's README front matter: the repo's title, emoji, colors and description, with
    the SDK, Python and hardware of this kind. No `env`: variables are set through the API."""
    models = tuple(models)
    keep = ("title", "emoji", "colorFrom", "colorTo")
    front = {k: repo_front[k] for k in keep if k in repo_front}
    front |= {
        "sdk": "gradio",
        "sdk_version": gradio_pin(requirements),
        "app_file": "app.py",
        "python_version": "3.12",  # ZeroGPU offers 3.12.12 and 3.10.13; CPU/GPU Spaces take any 3.x
        "suggested_hardware": kind.name,
        "short_description": repo_front.get("short_description", "MixDQ Studio"),
    }
    hub_models = [ARCHITECTURES[m].hub_id for m in models if m != "embedded"]
    if hub_models:
        front["models"] = hub_models
    preload = preload_from_hub(kind, models)
    if preload:
        front["preload_from_hub"] = preload
    return front


def readme_for(kind: Kind, models: Iterable[str], readme: str, requirements: str, source: str) -> str:
    repo_front, body = split_front_matter(readme)
    front = yaml.safe_dump(front_matter(kind, models, repo_front, requirements), sort_keys=False,
                           allow_unicode=True, width=10_000)
    note = f"<!-- assembled by `python -m app.space assemble --hardware {kind.name}` from {source} -->\n"
    return f"---\n{front}---\n{note}{body}"


def requirements_for(kind: Kind, requirements: str) -> str:
    """The Space's requirements.txt: the studio's pins, with the torch build this kind needs
    (and never `spaces`, which the Gradio SDK image installs itself)."""
    pins = _pins(requirements)
    if "torch" not in pins:
        raise ConfigError("requirements.txt pins no torch (torch==X.Y.Z); restore it from git")
    version = pins["torch"].split("+")[0]
    if kind.zero:
        torch = [
            "# ZeroGPU documents PyTorch 2.8.0, 2.9.1, 2.10.0 and 2.11.0 (spaces-zerogpu.md): the newest of",
            f"# those, not the {version} the studio is tested with (unverified on a Space).",
            f"torch=={ZEROGPU_TORCH}",
        ]
    elif kind.gpu:
        torch = [
            f"# PyPI's torch {version} for Linux is the CUDA 13 build: it needs an NVIDIA driver >= R580 on",
            "# the host, which Spaces do not document (unverified; spaces-gpus.md: check",
            "# torch.cuda.is_available() in the logs).",
            f"torch=={version}",
        ]
    else:
        torch = [
            "# PyTorch's CPU build from its own index: PyPI's Linux wheel is the CUDA 13 build, GBs of CUDA",
            "# libraries a CPU Space never uses (unverified on a Space).",
            f"torch=={version}+cpu",
        ]
    lines = [f"# Written by `python -m app.space assemble --hardware {kind.name}` from the studio's requirements.txt."]
    if not kind.gpu:
        lines.append(f"--extra-index-url {CPU_INDEX}")
    for line in requirements.splitlines():
        bare = line.split("#")[0].strip()
        name = re.split(r"[=<>!~\[; ]", bare, maxsplit=1)[0].lower().replace("_", "-")
        if not bare or name == "spaces":
            continue
        lines += torch if name == "torch" else [bare]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# What ships


def _git(*args: str) -> str:
    try:
        res = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        res = None
    if res is None or res.returncode != 0:
        raise ConfigError(
            "assembling a Space needs a git checkout of the studio (`git ls-files` decides what ships, "
            f"so untracked files never do); {ROOT} is not one, or git is missing"
            + (f": {res.stderr.strip()}" if res is not None and res.stderr.strip() else "")
        )
    return res.stdout


def _ships(path: str) -> bool:
    parts = path.split("/")
    if "__pycache__" in parts or path.endswith((".pyc", ".pyo")):
        return False
    if len(parts) == 1:
        return path in SHIP_FILES or path.startswith(SHIP_PREFIXES)
    return parts[0] in SHIP_DIRS


def shipped_files() -> tuple[list[str], list[str]]:
    """The tracked files the Space gets, and the untracked ones under shipped folders that it
    does not get (to warn about: a new module that is not `git add`ed yet)."""
    tracked = set(_git("ls-files", "-z").split("\0")) - {""}
    ignored = set(_git("ls-files", "-z", "--cached", "--ignored", "--exclude-standard").split("\0"))
    files = sorted(p for p in tracked - ignored if _ships(p) and (ROOT / p).is_file())
    untracked = _git("ls-files", "-z", "--others", "--exclude-standard", "--", *SHIP_DIRS, *SHIP_FILES)
    return files, sorted(p for p in untracked.split("\0") if p and _ships(p))


def _source() -> str:
    commit = _git("rev-parse", "--short", "HEAD").strip()
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", *SHIP_DIRS, *SHIP_FILES).strip()
    return f"commit {commit}" + (" with uncommitted changes" if dirty else "")


def _is_binary(path: Path) -> bool:
    with open(path, "rb") as f:
        return b"\0" in f.read(8192)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 100_000 else f"{n / 1e3:,.1f} kB"


def _check_out(out: Path) -> bool:
    """True when `out` holds a previous assembly (to replace); raises when it holds anything else."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise ConfigError(f"{out} is a file; give assemble a folder that does not exist yet, or an empty one")
    if (out / MARKER).is_file():
        return True
    if any(out.iterdir()):
        raise ConfigError(
            f"{out} is not empty and is not a previous assembly (it has no {MARKER}); give a new "
            "folder, or empty this one: assemble replaces only what it made itself"
        )
    return False


def assemble(out: str | os.PathLike, kind: str | Kind, models: str | Iterable[str] | None = None,
             log=print) -> Assembly:
    """Write the Space's files into `out`: built next to it, then swapped in whole, so `out` is
    either the previous assembly or the new one. A re-run into a previous assembly replaces it."""
    kind = kind if isinstance(kind, Kind) else parse_kind(kind)
    models = parse_models(models, kind)
    out = Path(out).absolute()
    replace = _check_out(out)
    files, untracked = shipped_files()
    requirements = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    source = _source()

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.assembling-"))
    try:
        log(f"assembling MixDQ Studio for {kind.name} ({kind.label}), serving {','.join(models)}, from {source}")
        groups: dict[str, list[int]] = {}
        for rel in files:
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest)
            top = rel.split("/")[0] + ("/" if "/" in rel else "")
            groups.setdefault(top, [0, 0])
            groups[top][0] += 1
            groups[top][1] += dest.stat().st_size
        for top, (count, size) in groups.items():
            log(f"  copied {top:<16} {count:4d} file{'s' if count > 1 else ' '} {_mb(size):>10}")
        (tmp / "requirements.txt").write_text(requirements_for(kind, requirements), encoding="utf-8")
        (tmp / "README.md").write_text(readme_for(kind, models, readme, requirements, source), encoding="utf-8")
        log(f"  wrote  requirements.txt (torch for {kind.name}) and README.md (front matter for {kind.name})")

        written = sorted(files + ["requirements.txt", "README.md"])
        sizes = {rel: (tmp / rel).stat().st_size for rel in written}
        xet = tuple((rel, sizes[rel]) for rel in written
                    if sizes[rel] >= XET_MIN_BYTES or _is_binary(tmp / rel))
        manifest = {"hardware": kind.name, "models": list(models), "source": source, "files": written}
        (tmp / MARKER).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

        if replace:
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if out.exists():
                out.rmdir()  # empty (checked above)
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    total = sum(sizes.values())
    log(f"{len(written)} files, {_mb(total)} in all, in {out}")
    if xet:
        log(f"binaries the Hub stores in Xet on upload ({len(xet)}, {_mb(sum(s for _, s in xet))}; a git push "
            "without LFS/Xet would be rejected):")
        for rel, size in xet:
            log(f"  {rel} ({_mb(size)})")
    if untracked:
        shown = ", ".join(untracked[:8]) + (f" and {len(untracked) - 8} more" if len(untracked) > 8 else "")
        log(f"warning: {len(untracked)} untracked file{'s' if len(untracked) > 1 else ''} under "
            f"{', '.join(SHIP_DIRS)} did not ship: {shown}; `git add` what the studio needs (a module that "
            "shipped code imports, missing, stops the Space at start-up)")
    if kind.gpu and models == DEFAULT_MODELS:
        log(f"note: only the embedded model is served, which runs in seconds on the CPU; {kind.name}'s GPU "
            "is for full-size models (--models embedded,sdxl-turbo)")
    return Assembly(out, kind, models, tuple(written), total, xet)


# ---------------------------------------------------------------------------------------------
# Publishing


def _token() -> str:
    token = get_token()
    if not token:
        raise ConfigError(
            "publishing needs a Hugging Face token that can write to the Space's owner: run "
            "`hf auth login`, or set HF_TOKEN=hf_... (create one at https://huggingface.co/settings/tokens, "
            "role 'write')"
        )

    if constants.HF_HUB_OFFLINE:
        raise ConfigError("HF_HUB_OFFLINE is set, and publishing talks to the Hub: unset HF_HUB_OFFLINE")
    return token


def publish(repo_id: str, kind: str | Kind, models: str | Iterable[str] | None = None, *, private: bool = False,
            allow_sweeps: bool = False, request_hardware: bool = False, cache: str | None = None,
            out: str | None = None, log=print) -> str:
    """Assemble, create the Space (or reuse it), set its variables and upload. Returns its URL."""
    kind = kind if isinstance(kind, Kind) else parse_kind(kind)
    models = parse_models(models, kind)
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise ConfigError(f"'{repo_id}' is not a Space id: give OWNER/NAME, e.g. your-name/mixdq-studio")
    if cache is not None and not cache.startswith("/"):
        raise ConfigError(f"--cache {cache}: give the absolute mount path of the Storage Bucket, e.g. /data")
    token = _token()

    with tempfile.TemporaryDirectory(prefix="mixdq-space-") as scratch:
        folder = assemble(out or Path(scratch) / "space", kind, models, log=log).out
        api = HfApi(token=token)
        try:
            url = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", exist_ok=True, private=private)
            log(f"Space {url}")
            variables = {"MIXDQ_STUDIO_MODELS": ",".join(models)}
            if allow_sweeps:
                variables["MIXDQ_STUDIO_SWEEPS"] = "1"
            if cache:
                variables["MIXDQ_STUDIO_CACHE"] = cache
            for key, value in variables.items():
                api.add_space_variable(repo_id, key, value, description="set by python -m app.space publish")
                log(f"  variable {key}={value}")
            existing = api.get_space_variables(repo_id)
            if not allow_sweeps and "MIXDQ_STUDIO_SWEEPS" in existing:
                log(f"  note: MIXDQ_STUDIO_SWEEPS={existing['MIXDQ_STUDIO_SWEEPS'].value} was already set on the "
                    "Space and stays (delete it in the Space's settings to turn sweeps off)")
            if not cache and "MIXDQ_STUDIO_CACHE" not in existing:
                log("  note: profiles and sweeps live on the Space's ephemeral disk; attach a Storage Bucket "
                    "and publish again with --cache /data to keep them")
            if request_hardware:
                api.request_space_hardware(repo_id, SpaceHardware(kind.name))
                log(f"  requested hardware {kind.name} (billed by the hour on paid kinds)")
            else:
                log(f"  hardware left as it is: choose {kind.name} in the Space's settings, or pass --request-hardware")
            commit = api.upload_folder(
                folder_path=folder, repo_id=repo_id, repo_type="space", ignore_patterns=[MARKER],
                # files of an earlier upload that this one no longer has (.gitattributes is never deleted)
                delete_patterns=[f"{d}/*" for d in SHIP_DIRS],
                commit_message=f"MixDQ Studio for {kind.name} ({','.join(models)})",
            )
        except ValueError as e:  # upload_folder has the Hub validate README.md's front matter first
            if "Invalid metadata" not in str(e):
                raise
            raise ConfigError(
                f"the Hub refused the Space's README.md front matter for {kind.name}: {e}. Publish with --out DIR, "
                f"fix DIR/README.md, then `hf upload {repo_id} DIR . --repo-type=space --exclude {MARKER}`"
            ) from e
        except HfHubHTTPError as e:
            raise ConfigError(
                f"the Hub refused: {e}. Check that your token can write to '{repo_id.split('/')[0]}' "
                "(`hf auth whoami`) and that the name is free or yours"
            ) from e
    log(f"uploaded: {getattr(commit, 'commit_url', commit)}")
    space = f"https://huggingface.co/spaces/{repo_id}"
    log(f"done: {space} builds now (its logs are on the page)")
    return space


# ---------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app.space", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    kinds = ", ".join(KINDS)
    models_help = (f"comma-separated models served with images, loaded at start-up ({', '.join(MODELS)}; "
                   "default embedded)")

    p = sub.add_parser("assemble", help="write the files a Space needs into a folder")
    p.add_argument("out", metavar="OUT", help="a new or empty folder, or a previous assembly (replaced)")
    p.add_argument("--hardware", required=True, metavar="KIND", help=kinds)
    p.add_argument("--models", help=models_help)

    p = sub.add_parser("publish", help="assemble, create the Space, set its variables and upload")
    p.add_argument("repo_id", metavar="OWNER/NAME")
    p.add_argument("--hardware", required=True, metavar="KIND", help=kinds)
    p.add_argument("--models", help=models_help)
    p.add_argument("--private", action="store_true", help="create the Space private")
    p.add_argument("--allow-sweeps", action="store_true",
                   help="set MIXDQ_STUDIO_SWEEPS=1: visitors may start full-size sensitivity sweeps (hours)")
    p.add_argument("--request-hardware", action="store_true",
                   help="also switch the Space to KIND (paid kinds bill by the hour)")
    p.add_argument("--cache", metavar="DIR", help="set MIXDQ_STUDIO_CACHE, e.g. /data for a mounted Storage Bucket")
    p.add_argument("--out", metavar="DIR", help="keep the assembled folder here (default: a temporary one)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "assemble":
            assemble(args.out, args.hardware, args.models)
        else:
            publish(args.repo_id, args.hardware, args.models, private=args.private, allow_sweeps=args.allow_sweeps,
                    request_hardware=args.request_hardware, cache=args.cache, out=args.out)
    except MixDQError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
