#!/usr/bin/env bash
# tests/bench/runtime_vs_llamacpp.sh: kick's prefill/decode tokens/s against llama.cpp's on the same model at equal
# precision (fp32 vs llama.cpp F32, bf16 vs BF16), one after the other in one run, as ratios; kick's figures
# also against this machine's GEMM-bound limit (kick bench runtime). Needs llama-cpp-python for the `python3` on
# PATH (`python3 -m pip install llama-cpp-python==0.3.16`, which compiles llama.cpp for this CPU); the F32/BF16
# GGUFs are made from the source GGUF by llama.cpp itself.
#
# usage: tests/bench/runtime_vs_llamacpp.sh [--kick BIN] [--gguf FILE] [--work DIR] [--threads N]
#        [--prompt-tokens N] [--decode-tokens N] [--repeats N]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
kick=build/apps/kick
gguf="${KICK_CACHE:-$HOME/.cache/kick}/models/SmolLM2-135M-Instruct.Q4_1.gguf"
work=/tmp/kick-runtime-bench
threads=2
prompt=256
decode=32
repeats=3
while [ $# -gt 0 ]; do
  case "$1" in
    --kick) kick="$2"; shift 2 ;;
    --gguf) gguf="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --prompt-tokens) prompt="$2"; shift 2 ;;
    --decode-tokens) decode="$2"; shift 2 ;;
    --repeats) repeats="$2"; shift 2 ;;
    *) echo "runtime_vs_llamacpp.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
[ -f "$gguf" ] || { echo "runtime_vs_llamacpp.sh: no GGUF at $gguf (scripts/setup.sh fetches SmolLM2)" >&2; exit 2; }
mkdir -p "$work"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

"$kick" bench runtime -m "$gguf" -t "$threads" --dtypes fp32,bf16 --prompt-tokens "$prompt" --decode-tokens "$decode" \
  --repeats "$repeats" --json "$work/kick.json"
python3 "$here/llamacpp_runtime.py" --gguf "$gguf" --work "$work" --types f32,bf16 --threads "$threads" \
  --prompt-tokens "$prompt" --decode-tokens "$decode" --repeats "$repeats" --json "$work/llamacpp.json"

python3 - "$work/kick.json" "$work/llamacpp.json" <<'EOF'
import json, sys
kick = {r["dtype"]: r for r in json.load(open(sys.argv[1]))["runs"]}
llama = json.load(open(sys.argv[2]))
print(f"\n{llama['prompt_tokens']}-token prefill, {llama['decode_tokens']} decoded tokens, {llama['threads']} threads, "
      f"best of N; llama-cpp-python {llama['llama_cpp_python']}")
print("| precision | kick prefill t/s | llama.cpp prefill t/s | kick/llama.cpp | kick prefill / GEMM limit "
      "| kick decode t/s | llama.cpp decode t/s | kick/llama.cpp |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for r in llama["runs"]:
    k = kick["fp32" if r["type"] == "f32" else r["type"]]
    print(f"| {k['dtype']} / {r['type'].upper()} | {k['prefill_tokens_per_s']:.1f} | {r['prefill_tokens_per_s']:.1f} | "
          f"{k['prefill_tokens_per_s'] / r['prefill_tokens_per_s']:.2f}x | {k['prefill_fraction_of_limit']:.3f} | "
          f"{k['decode_tokens_per_s']:.1f} | {r['decode_tokens_per_s']:.1f} | "
          f"{k['decode_tokens_per_s'] / r['decode_tokens_per_s']:.2f}x |")
EOF
