#!/usr/bin/env bash
# Builds the libFuzzer targets (CMake preset "fuzz": clang, ASan + UBSan over kick's code) and runs each one for
# SECONDS (default 30) from the committed seeds (tests/fuzz/corpus/<target>) plus the corpus it grew on earlier
# runs (build-fuzz/corpus/<target>). Crashing inputs land in build-fuzz/crashes/<target>/; copy each into
# tests/fuzz/regressions/<target>/ once fixed, where the fuzz smoke replays them. Exits non-zero on any finding.
#   bash scripts/fuzz.sh [SECONDS] [TARGET ...]      e.g. bash scripts/fuzz.sh 600 gguf safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
all=(safetensors gguf llama2c config_json tokenizer_json task_file experiment datasets judge)
[ $# -gt 0 ] && targets=("$@") || targets=("${all[@]}")

command -v clang++ >/dev/null || { echo "fuzz: clang++ not found (apt-get install clang)" >&2; exit 1; }
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "${FUZZ_BUILD_JOBS:-2}"

# Leak checks stay on; LibTorch's one-time allocations are not reported as leaks, since they stay reachable.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1
failed=()
for target in "${targets[@]}"; do
  binary=build-fuzz/tests/fuzz/fuzz_$target
  [ -x "$binary" ] || { echo "fuzz: unknown target '$target' (one of: ${all[*]})" >&2; exit 2; }
  corpus=build-fuzz/corpus/$target crashes=build-fuzz/crashes/$target
  mkdir -p "$corpus" "$crashes"
  # Fixed crashes first: each must now pass.
  if [ -d "tests/fuzz/regressions/$target" ] && [ -n "$(ls -A "tests/fuzz/regressions/$target")" ]; then
    "$binary" tests/fuzz/regressions/"$target"/* >"build-fuzz/regressions_$target.log" 2>&1 ||
      { echo "fuzz: $target: a committed regression input fails again (build-fuzz/regressions_$target.log)"; failed+=("$target"); continue; }
  fi
  log=build-fuzz/fuzz_$target.log
  if "$binary" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
       -artifact_prefix="$crashes/" "$corpus" "tests/fuzz/corpus/$target" >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$target")
  fi
  stats=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -E 's/^#([0-9]+)[^c]*cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+).*/\1 runs, cov \2, ft \3, corpus \4/')
  # The run at which coverage (edges) last grew: a target has plateaued when most of its runs came after it.
  last_gain=$(grep -E '^#[0-9]+.*cov: [0-9]+' "$log" | sed -E 's/^#([0-9]+).*cov: ([0-9]+).*/\1 \2/' |
    awk '$2 > best { best = $2; at = $1 } END { print at }')
  echo "fuzz: $target: $status after ${seconds}s ($stats; edges last grew at run ${last_gain:-?})"
  [ "$status" = ok ] || { grep -E 'ERROR|SUMMARY|escaped' "$log" | head -5; ls "$crashes"; }
done
if ((${#failed[@]})); then
  echo "fuzz: findings in ${failed[*]} (inputs under build-fuzz/crashes/, logs build-fuzz/fuzz_<target>.log)" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${seconds}s without findings"
