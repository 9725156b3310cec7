#!/usr/bin/env bash
# The main job on a fresh machine: set up, build, fetch SmolLM2-135M-Instruct, then compress it (Wanda, 50%
# unstructured) and measure what that cost: WikiText-2 perplexity, 5-shot MMLU and FreebaseQA for the dense and
# the compressed model, side by side. By default on a documented subset (8 perplexity windows of 2048 tokens,
# 2 MMLU questions per subject, 100 FreebaseQA questions: about 7 minutes on 2 cores after the build, measured);
# --full runs everything.
# Results land in results/main/ (resumable: rerunning skips what is done).
set -euo pipefail
cd "$(dirname "$0")/.."

windows=8 mmlu_limit=2 qa_limit=100
if [ "${1:-}" = "--full" ]; then windows=0 mmlu_limit=0 qa_limit=0; fi
bash scripts/setup.sh
bash data/fetch_models.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)"
kick=build/apps/kick
out=results/main
mkdir -p "$out"

$kick generate -m smollm2 --chat -p "What are three tips for staying healthy?" -n 128
[ -d "$out/smollm2-wanda50" ] ||
  $kick compress -m smollm2 --method wanda --sparsity 0.5 --nsamples 32 --seqlen 512 -o "$out/smollm2-wanda50"
for model in smollm2 "$out/smollm2-wanda50"; do
  name=$(basename "$model")
  echo "== $name"
  $kick perplexity -m "$model" --seqlen 2048 --max-windows "$windows" | grep -E "windows|perplexity"
  $kick evaluate -m "$model" --task mmlu --limit "$mmlu_limit" -o "$out/$name"
  $kick evaluate -m "$model" --task factoid_qa --limit "$qa_limit" -o "$out/$name"
done
