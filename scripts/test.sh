#!/usr/bin/env bash
# The one command that sets everything up on a fresh Debian machine and runs all tests:
# apt packages, the SmolLM2 model, a Release build with ccache, then CTest (its summary line ends the output).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash data/fetch_models.sh
build="${KICK_BUILD_DIR:-build}"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)"
cd "$build"
OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" ctest --output-on-failure -j 2 --timeout 900
