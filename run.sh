#!/usr/bin/env bash
# The project's one entry point. Sets everything up (idempotently), then acts:
#   ./run.sh studio [--host H --port P]   start MixDQ Studio on the embedded default model
#   ./run.sh test [pytest args]           run the whole test suite
#   ./run.sh mixdq ARGS                   the engine's command line (python -m mixdq ARGS)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

VENV=.venv
STAMP="$VENV/.requirements.sha256"

setup_python() {
  if [ ! -x "$VENV/bin/python" ]; then
    # torch==2.13.0's CPU wheel is built for CPython 3.11.
    local py
    py=$(command -v python3.11 || command -v python3)
    echo "setup: creating $VENV with $py" >&2
    "$py" -m venv "$VENV"
  fi
  local want
  want=$(sha256sum requirements.txt | cut -d' ' -f1)
  if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing requirements.txt" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
    echo "$want" > "$STAMP"
  fi
}

# The browser tests drive Debian's chromium (playwright never downloads a browser here).
setup_system() {
  command -v chromium > /dev/null && return
  echo "setup: installing Debian's chromium for the browser tests" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium > /dev/null
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
    setup_python
    export GRADIO_ANALYTICS_ENABLED=False
    exec "$VENV/bin/python" app.py "$@"
    ;;
  test)
    setup_python
    setup_system
    single_thread
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  mixdq)
    setup_python
    exec "$VENV/bin/python" -m mixdq "$@"
    ;;
  *)
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
