#!/usr/bin/env bash
# kill -9 during kick compress, at several points of the run: the output folder is either absent or complete
# (compression.json present and the model loads), never half-written. The temporary DIR.tmp-<pid> a killed run
# leaves beside it is named as such; kick sweep removes those at its next start.
#   fault_kill_compress.sh KICK WORKDIR
set -euo pipefail
kick=$1 work=$2
fail() { echo "fault_kill_compress: $*" >&2; exit 1; }
rm -rf "$work" && mkdir -p "$work"
args=(compress -m stories260K --method sparsegpt --sparsity 0.5 --nsamples 64 --seqlen 256 -t 1)
start=$(date +%s.%N)
"$kick" "${args[@]}" -o "$work/reference" >/dev/null 2>&1 || fail "the uninterrupted compression failed"
whole=$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { print a - b }')
complete=0 absent=0
for fraction in 0.1 0.3 0.5 0.7 0.9 0.97; do
  out="$work/killed-$fraction"
  "$kick" "${args[@]}" -o "$out" >/dev/null 2>&1 &
  pid=$!
  sleep "$(awk -v w="$whole" -v f="$fraction" 'BEGIN { print w * f }')"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ -e "$out" ]; then
    [ -f "$out/compression.json" ] || fail "killed at $fraction of the run: $out exists without compression.json"
    "$kick" inspect "$out" >/dev/null 2>&1 || fail "killed at $fraction of the run: $out does not load"
    cmp "$out/model.safetensors" "$work/reference/model.safetensors" || fail "killed at $fraction: a complete folder differs"
    complete=$((complete + 1))
  else
    absent=$((absent + 1))
  fi
done
[ "$absent" -gt 0 ] || fail "every run finished before its kill; nothing was tested"
echo "fault_kill_compress: ok ($absent killed runs left no folder, $complete had completed; uninterrupted run ${whole}s)"
