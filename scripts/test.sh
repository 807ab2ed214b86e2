#!/usr/bin/env bash
# Every test: Rust unit and integration tests (native), then the wasm build checked in
# Node against the native CLI. Run scripts/setup.sh first (the README's command does).
set -euo pipefail
cd "$(dirname "$0")/.."

# The real-model tests must not skip here.
export BEDSIDE_REQUIRE_MINILM=1
BEDSIDE_MINILM_DIR=$(bash models/minilm.sh)
export BEDSIDE_MINILM_DIR

cargo test --workspace
bash scripts/build-wasm.sh
node --test tests/wasm/
