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
# One binary for both kinds of machine: candle asks cudarc to link libcuda/cuBLAS/NVRTC at build
# time, so such a binary does not start where there is no NVIDIA driver. Turning on cudarc's
# run-time loading (its `dynamic-loading` code paths: dlopen on first use) and linking with
# --as-needed drops those libraries from the binary's needs. The cfg goes through RUSTFLAGS with an
# explicit --target so that it reaches the compiled crates and not the build scripts (cudarc's
# build script refuses both modes at once); only cudarc reads that cfg.
TARGET=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="${RUSTFLAGS:-} --cfg feature=\"dynamic-loading\" -C link-arg=-Wl,--as-needed" \
    cargo build --release --target "$TARGET" --target-dir target/cuda -p bedside --features cuda \
    --bin bedside --example train_bench
OUT=target/cuda/$TARGET/release
if readelf -d "$OUT/bedside" | grep -q 'libcuda\|libcublas\|libnvrtc\|libcurand'; then
    echo "$OUT/bedside still needs the CUDA libraries at start-up:" >&2
    readelf -d "$OUT/bedside" | grep NEEDED >&2
    exit 1
fi
# Without a driver here the binary must start, train on the CPU and say why for --device auto.
"$OUT/bedside" --version
# The WebGPU bench (no CUDA in it: wgpu finds the GPU through Vulkan), built as cargo bench builds it.
WEBGPU_BENCH=$(cargo bench --no-run -p bedside-runtime --bench webgpu --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "webgpu" and m.get("executable"):
        print(m["executable"])')
[ -x "$WEBGPU_BENCH" ] || { echo "the WebGPU bench did not build: cargo bench --no-run -p bedside-runtime --bench webgpu" >&2; exit 1; }
# What check.sh needs there (the GPU machine has no network): the binaries, the scripts, the
# tiny fixture and MiniLM.
mkdir -p .gpu/models/fixtures
cp "$OUT/bedside" "$OUT/examples/train_bench" .gpu/
cp "$WEBGPU_BENCH" .gpu/webgpu_bench
rm -rf .gpu/scripts .gpu/models/fixtures/tiny-safetensors .gpu/models/minilm
cp -r scripts .gpu/
cp -r models/fixtures/tiny-safetensors .gpu/models/fixtures/
cp -r "$(bash models/minilm.sh)" .gpu/models/minilm
echo "built .gpu/ (CUDA); copy it to the GPU machine and run there: bash .gpu/scripts/gpu/check.sh"
