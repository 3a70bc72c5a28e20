#!/usr/bin/env bash
# The project's one entry point. Sets everything up (idempotently), then acts:
#   ./run.sh studio [--host H --port P]   start MixDQ Studio on the embedded default model
#   ./run.sh test [pytest args]           run the whole test suite
#   ./run.sh mixdq ARGS                   the engine's command line (python -m mixdq ARGS)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

VENV=.venv

# Installs the project into .venv, editable, with the extras a command needs ("studio" or
# "test"); redone only when requirements.txt, pyproject.toml or the extras change.
setup_python() {
  local extras=$1
  if [ ! -x "$VENV/bin/python" ]; then
    # torch==2.13.0's CPU wheel is built for CPython 3.11.
    local py
    py=$(command -v python3.11 || command -v python3)
    echo "setup: creating $VENV with $py" >&2
    "$py" -m venv "$VENV"
  fi
  local stamp="$VENV/.installed-$extras.sha256" want
  want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing the project with [$extras] into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[$extras]"
    echo "$want" > "$stamp"
  fi
}

# The browser tests drive Debian's chromium (playwright never downloads a browser here); the
# torch.compile tests need a C++ compiler and Python's headers (inductor builds the kernels it
# writes with g++).
setup_system() {
  local missing=()
  command -v chromium > /dev/null || missing+=(chromium)
  command -v g++ > /dev/null || missing+=(g++)
  local headers
  headers=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
  [ -f "$headers/Python.h" ] || missing+=("$("$VENV/bin/python" -c 'import sys; print("python%d.%d-dev" % sys.version_info[:2])')")
  [ ${#missing[@]} -eq 0 ] && return
  echo "setup: installing Debian's ${missing[*]} for the tests" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" > /dev/null
}

# Tests run on one thread: figures are reproducible and CI's two cores are not oversubscribed.
single_thread() {
  export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
  export HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  studio)
    setup_python studio
    export GRADIO_ANALYTICS_ENABLED=False
    exec "$VENV/bin/python" app.py "$@"
    ;;
  test)
    setup_python test
    setup_system
    single_thread
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  mixdq)
    setup_python studio
    exec "$VENV/bin/mixdq" "$@"
    ;;
  *)
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
