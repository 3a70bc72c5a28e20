"""The project installs as a package: requirements.txt matches pyproject.toml, the console script
is the module's command line, the code passes ruff, and benches import the installed package."""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from support import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line and not line.startswith("mixdq-studio"):
            name, sep, version = line.partition("==")
            assert sep, f"unpinned requirement {line!r}"
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_requirements_txt_is_the_engine_plus_the_studio_extra():
    project = PYPROJECT["project"]
    want = _pins(project["dependencies"]) | _pins(project["optional-dependencies"]["studio"])
    have = _pins((ROOT / "requirements.txt").read_text().splitlines())
    assert have == want
    assert have["torch"] == "2.13.0"  # an unpinned torch pulls a multi-GB CUDA build
    test_only = _pins(project["optional-dependencies"]["test"])
    assert {"pytest", "playwright", "ruff"} <= set(test_only) and not set(test_only) & set(have)


def test_console_script_is_python_dash_m_mixdq():
    script = Path(sys.executable).parent / "mixdq"
    assert script.exists(), "run ./run.sh test (it installs the project, editable, into .venv)"
    by_script = subprocess.run([str(script), "allocate", "--help"], capture_output=True, text=True)
    by_module = subprocess.run([sys.executable, "-m", "mixdq", "allocate", "--help"], capture_output=True, text=True)
    assert by_script.returncode == by_module.returncode == 0
    assert by_script.stdout == by_module.stdout and "--budget-mb" in by_script.stdout


def test_ruff_passes():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.fail("ruff is not installed; ./run.sh test installs the project's [test] extra")
    res = subprocess.run([ruff, "check", "mixdq", "app", "bench", "tests", "app.py"], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("bench", sorted((ROOT / "bench").glob("*.py")), ids=lambda p: p.name)
def test_benches_use_the_installed_package(bench):
    text = bench.read_text()
    assert "sys.path" not in text
    assert not re.search(r"^\s*(from|import) (conftest|tiny_models)\b", text, re.M)


def test_docs_show_the_newest_committed_bench_results():
    """Figures in README.md and docs/ are rendered from bench/results/*.json, never typed in."""
    res = subprocess.run([sys.executable, "bench/render.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr + "\nrun: .venv/bin/python bench/render.py"
