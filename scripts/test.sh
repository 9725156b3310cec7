#!/usr/bin/env bash
# The one command that sets everything up on a fresh Debian machine and runs all tests:
# apt packages, the SmolLM2 model, a Release build with ccache, CTest, then a 30-second-per-target smoke of the
# libFuzzer targets (scripts/fuzz.sh; KICK_FUZZ_SECONDS changes it, 0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash data/fetch_models.sh
build="${KICK_BUILD_DIR:-build}"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)"
(cd "$build" && OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" ctest --output-on-failure -j 2 --timeout 900)
fuzz_seconds="${KICK_FUZZ_SECONDS:-30}"
if [ "$fuzz_seconds" != 0 ]; then
  FUZZ_BUILD_JOBS="$(nproc)" bash scripts/fuzz.sh "$fuzz_seconds"
fi
