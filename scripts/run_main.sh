#!/usr/bin/env bash
# The main job on a fresh machine: set up, build, fetch SmolLM2-135M-Instruct, then measure its
# WikiText-2 perplexity and answer a chat prompt. By default perplexity uses the first 8 windows of
# 2048 tokens (about 2 minutes on 2 cores); --full scores the whole test set.
set -euo pipefail
cd "$(dirname "$0")/.."

windows=8
[ "${1:-}" = "--full" ] && windows=0
bash scripts/setup.sh
bash data/fetch_models.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)"
build/apps/kick perplexity -m smollm2 --seqlen 2048 --max-windows "$windows"
build/apps/kick generate -m smollm2 --chat -p "What are three tips for staying healthy?" -n 128
