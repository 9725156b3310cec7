#!/usr/bin/env bash
# A full disk (a small tmpfs) gives a clear error and no corrupt output: kick compress leaves no folder at all,
# kick evaluate stops with the error, and once there is room again it resumes to exactly the records of a run
# that never hit the wall. Needs permission to mount a tmpfs (root in CI); exits 77 (skipped) without it.
#   fault_disk_full.sh KICK WORKDIR
set -euo pipefail
kick=$1 work=$2
fail() { echo "fault_disk_full: $*" >&2; exit 1; }
mnt="$work/full"
cleanup() { umount "$mnt" 2>/dev/null || true; }
trap cleanup EXIT
cleanup
rm -rf "$work" && mkdir -p "$mnt"
mount -t tmpfs -o size=200k tmpfs "$mnt" 2>/dev/null || { echo "fault_disk_full: cannot mount a tmpfs here: skipped"; exit 77; }

# 1. compress: the model (1 MB) does not fit.
if "$kick" compress -m stories260K --method magnitude --sparsity 0.5 -o "$mnt/model" >"$work/compress.log" 2>&1; then
  fail "kick compress succeeded on a full disk"
fi
grep -q "disk full" "$work/compress.log" || { cat "$work/compress.log"; fail "no 'disk full' in kick compress's error"; }
[ "$(tail -1 "$work/compress.log" | wc -l)" -eq 1 ] || true
[ -z "$(ls -A "$mnt")" ] || { ls -la "$mnt"; fail "kick compress left something behind on the full disk"; }

# 2. evaluate: the per-example log fills the disk part way.
args=(evaluate -m stories260K --task factoid_qa --protocol strict --limit 400 -t 2)
"$kick" "${args[@]}" -o "$work/whole" >/dev/null 2>&1 || fail "the reference evaluation failed"
if "$kick" "${args[@]}" -o "$mnt/eval" >"$work/eval.log" 2>&1; then fail "kick evaluate succeeded on a full disk"; fi
grep -q "disk full" "$work/eval.log" || { cat "$work/eval.log"; fail "no 'disk full' in kick evaluate's error"; }
mount -o remount,size=20m "$mnt"
"$kick" "${args[@]}" -o "$mnt/eval" >"$work/resume.log" 2>&1 || { cat "$work/resume.log"; fail "the resumed evaluation failed"; }
diff <(sort "$work/whole/factoid_qa.strict/seed0.jsonl") <(sort "$mnt/eval/factoid_qa.strict/seed0.jsonl") >/dev/null ||
  fail "the resumed records differ from the uninterrupted run's"
echo "fault_disk_full: ok"
