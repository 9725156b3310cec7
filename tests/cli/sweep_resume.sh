#!/usr/bin/env bash
# kill -9 in the middle of `kick sweep`, then rerun: the rerun starts only the jobs whose results were missing
# (no finished compression or evaluation is redone), and the final report equals an uninterrupted sweep's.
#   sweep_resume.sh KICK EXPERIMENT WORKDIR
set -euo pipefail
kick=$1 experiment=$2 work=$3
fail() { echo "sweep_resume: $*" >&2; exit 1; }
rm -rf "$work" && mkdir -p "$work"

"$kick" sweep "$experiment" -o "$work/whole" -j 2 >"$work/whole.log" 2>&1 || { cat "$work/whole.log"; fail "uninterrupted sweep failed"; }
"$kick" report "$work/whole" >"$work/whole.md" 2>/dev/null

# The interrupted sweep runs in its own process group so that kill -9 takes it and its children at once, as a
# crash or a job scheduler's kill would.
setsid "$kick" sweep "$experiment" -o "$work/cut" -j 2 >"$work/cut.log" 2>&1 &
leader=$!
for _ in $(seq 600); do
  [ "$(find "$work/cut/evals" -name sweep_cell.json 2>/dev/null | wc -l)" -ge 2 ] && break
  sleep 0.05
done
kill -9 -- "-$leader" 2>/dev/null || true
wait "$leader" 2>/dev/null || true

cells_total=$(grep -c '^kick sweep: started evaluate' "$work/whole.log")
models_total=$(grep -c '^kick sweep: started compress' "$work/whole.log")
cells_done=$(find "$work/cut/evals" -name sweep_cell.json | wc -l)
models_done=$(find "$work/cut/models" -maxdepth 2 -name compression.json | wc -l)
[ "$cells_done" -lt "$cells_total" ] || fail "the sweep finished before the kill; nothing was tested"
echo "killed with $models_done/$models_total models and $cells_done/$cells_total cells done"

"$kick" sweep "$experiment" -o "$work/cut" -j 2 >"$work/rerun.log" 2>&1 || { cat "$work/rerun.log"; fail "rerun failed"; }
started_cells=$(grep -c '^kick sweep: started evaluate' "$work/rerun.log" || true)
started_models=$(grep -c '^kick sweep: started compress' "$work/rerun.log" || true)
[ "$started_cells" -eq $((cells_total - cells_done)) ] || fail "rerun started $started_cells evaluations, expected $((cells_total - cells_done))"
[ "$started_models" -eq $((models_total - models_done)) ] || fail "rerun started $started_models compressions, expected $((models_total - models_done))"
[ -z "$(find "$work/cut/models" -maxdepth 1 -name '*.tmp-*')" ] || fail "a half-written model folder was left behind"

"$kick" report "$work/cut" >"$work/cut.md" 2>/dev/null
diff -u "$work/whole.md" "$work/cut.md" || fail "the resumed sweep's report differs from the uninterrupted one"
# A third run has nothing left to do.
"$kick" sweep "$experiment" -o "$work/cut" -j 2 >"$work/third.log" 2>&1
grep -q ", 0 jobs to run" "$work/third.log" || fail "a finished sweep still had jobs to run"
echo "sweep_resume: ok (rerun started $started_models compressions and $started_cells evaluations)"
