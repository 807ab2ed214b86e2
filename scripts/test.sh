#!/usr/bin/env bash
# Every test: Rust unit and integration tests (native), then the wasm build checked in
# Node against the native CLI. Run scripts/setup.sh first (the README's command does).
set -euo pipefail
cd "$(dirname "$0")/.."

# The real-model tests must not skip here.
export BEDSIDE_REQUIRE_MINILM=1
BEDSIDE_MINILM_DIR=$(bash models/minilm.sh)
export BEDSIDE_MINILM_DIR
# The WebGPU tests run on Mesa's lavapipe (setup.sh installs it) and must not skip here.
export BEDSIDE_REQUIRE_WEBGPU=1
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}

# A one-off CI build gains nothing from incremental caches (about 1 GB on disk).
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi
cargo test --workspace
bash scripts/build-wasm.sh
node --test tests/wasm/
# The page and the widget in headless Chromium and Firefox against the native CLI (screenshots
# in target/browser-screenshots/); the widget test installs vite from the npm registry.
node --test tests/browser/
# Fuzz smoke: every untrusted-input reader (fuzz/) for a few seconds each from its seeds,
# without a sanitizer (the ASAN build of candle and wgpu is too slow for CI). Longer runs:
# scripts/fuzz.sh 180.
FUZZ_SANITIZER=none bash scripts/fuzz.sh "${BEDSIDE_FUZZ_SECONDS:-15}"
