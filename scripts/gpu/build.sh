#!/usr/bin/env bash
# Builds the CUDA binaries on this machine (no GPU needed) into .gpu/, ready to copy to a GPU
# machine with scripts/gpu/check.sh (../shared/gpu/README.md describes that machine).
#
#   bash scripts/gpu/build.sh          # ~16 min on 2 cores the first time (candle's CUDA kernels)
#
# Environment: CUDA_ENV, the script that installs nvcc and points the build at CUDA stand-ins
# [../shared/gpu/cuda-build-env.sh]. The build goes to target/cuda so the CPU build in
# target/release stays as it is.
set -euo pipefail
cd "$(dirname "$0")/../.."

CUDA_ENV=${CUDA_ENV:-../shared/gpu/cuda-build-env.sh}
if [ ! -f "$CUDA_ENV" ]; then
    echo "no CUDA build environment at $CUDA_ENV (set CUDA_ENV)" >&2
    exit 2
fi
# shellcheck disable=SC1090
source "$CUDA_ENV"
cargo build --release --target-dir target/cuda -p bedside --features cuda --bin bedside --example train_bench
# What check.sh needs there (the GPU machine has no network): the binaries, the scripts, the
# tiny fixture and MiniLM.
mkdir -p .gpu/models/fixtures
cp target/cuda/release/bedside target/cuda/release/examples/train_bench .gpu/
rm -rf .gpu/scripts .gpu/models/fixtures/tiny-safetensors .gpu/models/minilm
cp -r scripts .gpu/
cp -r models/fixtures/tiny-safetensors .gpu/models/fixtures/
cp -r "$(bash models/minilm.sh)" .gpu/models/minilm
echo "built .gpu/ (CUDA); copy it to the GPU machine and run there: bash .gpu/scripts/gpu/check.sh"
