#!/usr/bin/env bash
# The same command with the same seed gives byte-identical compressed weights and identical evaluation
# records, run to run (fixed thread count: a different count may change float summation order).
#   determinism.sh KICK WORKDIR
set -euo pipefail
kick=$1 work=$2
fail() { echo "determinism: $*" >&2; exit 1; }
rm -rf "$work" && mkdir -p "$work"
for run in a b; do
  "$kick" compress -m stories260K --method sparsegpt --sparsity 0.5 --nsamples 4 --seqlen 64 --seed 7 -t 2 \
    -o "$work/$run" >/dev/null 2>&1
  "$kick" compress -m stories260K --method gptq --bits 4 --group-size -1 --nsamples 4 --seqlen 64 --seed 7 -t 2 \
    -o "$work/$run-gptq" >/dev/null 2>&1
  "$kick" evaluate -m "$work/$run" --task factoid_qa --protocol strict --limit 4 -t 2 -o "$work/$run-eval" >/dev/null 2>&1
  # Sampled (temperature 0.7, top-k under llm-kick), batched: per-example seeds make the rows reproducible.
  "$kick" evaluate -m stories260K --task instruction_following --protocol llm-kick --limit 3 --batch-size 2 -t 2 \
    -o "$work/$run-sampled" >/dev/null 2>&1
done
cmp "$work/a/model.safetensors" "$work/b/model.safetensors" || fail "SparseGPT weights differ between runs"
cmp "$work/a-gptq/model.safetensors" "$work/b-gptq/model.safetensors" || fail "GPTQ weights differ between runs"
# compression.json differs only in timings.
strip() { /usr/bin/env python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
def walk(x):
    if isinstance(x, dict): return {k: walk(v) for k, v in x.items() if "second" not in k and k not in ("time", "created", "seconds")}
    if isinstance(x, list): return [walk(v) for v in x]
    return x
print(json.dumps(walk(d), sort_keys=True))' "$1"; }
[ "$(strip "$work/a/compression.json")" = "$(strip "$work/b/compression.json")" ] || fail "compression.json differs beyond timings"
cmp "$work/a-eval/factoid_qa.strict/seed0.jsonl" "$work/b-eval/factoid_qa.strict/seed0.jsonl" || fail "evaluation records differ"
cmp "$work/a-sampled/instruction_following.llm-kick/seed0.jsonl" "$work/b-sampled/instruction_following.llm-kick/seed0.jsonl" ||
  fail "sampled records differ"
echo "determinism: ok"
