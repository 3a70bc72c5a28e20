"""The dependency rule, enforced: import-linter's contracts in pyproject.toml (each engine layer
imports only from the layers below it; the engine never imports the studio, Gradio or Spaces; no
import cycles inside a package), and ruff's PLC0415 (no import hidden inside a function to dodge
a cycle; `tests/test_packaging.py` runs ruff)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from support import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LAYERS = next(c for c in PROJECT["tool"]["importlinter"]["contracts"] if c["type"] == "layers")["layers"]


def lint_imports(config: Path | None = None) -> subprocess.CompletedProcess:
    tool = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if tool is None:
        pytest.fail("import-linter is not installed; ./run.sh test installs the project's [test] extra")
    argv = [tool, "--no-cache"] + (["--config", str(config)] if config else [])
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)


def test_the_import_contracts_hold():
    res = lint_imports()
    assert res.returncode == 0, res.stdout + res.stderr
    assert "BROKEN" not in res.stdout and res.stdout.count("KEPT") == len(PROJECT["tool"]["importlinter"]["contracts"])


def test_every_engine_package_is_in_a_layer():
    layered = {name.strip() for layer in LAYERS for name in layer.split("|")}
    packages = {f"mixdq.{p.name}" for p in (ROOT / "mixdq").iterdir() if (p / "__init__.py").exists()}
    assert packages | {"mixdq.cli"} == layered


def test_the_contracts_would_catch_an_upward_import(tmp_path):
    """The same layers, upside down: the real imports then break the contract (so it checks something)."""
    reversed_layers = ", ".join(f'"{layer}"' for layer in reversed(LAYERS))
    config = tmp_path / "upside-down.toml"
    config.write_text(f'[tool.importlinter]\nroot_packages = ["mixdq"]\n\n[[tool.importlinter.contracts]]\n'
                      f'name = "upside down"\ntype = "layers"\nlayers = [{reversed_layers}]\n')
    res = lint_imports(config)
    assert res.returncode != 0 and "BROKEN" in res.stdout
