#!/usr/bin/env bash
# Every GPU check in one run, for a session lent a GPU machine (issue 25): the CUDA tests, then the
# deploy bench on full-size UNets. The machine has no network: carry the wheels its torch lacks
# (diffusers, pulp, ...) and install them with --no-deps first (DEVELOPERS.md). Each step has its
# own timeout, so a slow compile cannot eat the time the next step needs; results land in
# bench/results/ (copy them back from $OUT).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
timeout 240 python -m pytest -q -p no:warnings tests/deploy/test_cuda.py 2>&1 | tail -30 | tee "$OUT/test_cuda.txt"
# SDXL-Turbo first (the targets are on it), then SD-Turbo; compiled settings against compiled fp16
timeout 480 python bench/deploy.py --models sdxl-turbo --settings w8a8,w4a8,mixed --compile --device cuda \
    --dtype float16 2>&1 | tail -40 | tee "$OUT/deploy_sdxl.txt"
cp bench/results/deploy-*cuda* "$OUT/" 2>/dev/null || true
