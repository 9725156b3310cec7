#!/usr/bin/env bash
# kick report's HTML page rendered in headless Chromium (Debian's chromium): tables equal the summaries, charts
# render, no console errors, a screenshot is drawn (tests/cli/report_chromium.py). Skipped (77) without Chromium.
#   report_chromium.sh KICK EXPERIMENT WORKDIR
set -euo pipefail
kick=$1 experiment=$2 work=$3
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "report_chromium: skipped: no chromium (apt-get install chromium)" >&2; exit 77; }
rm -rf "$work" && mkdir -p "$work"
"$kick" sweep "$experiment" -o "$work/sweep" -j 2 -t 1 >"$work/sweep.log" 2>&1 || { cat "$work/sweep.log"; exit 1; }
"$kick" report "$work/sweep" >/dev/null
python3 "$(dirname "$0")/report_chromium.py" "$browser" "$work/sweep" --screenshot "$work/report.png"
