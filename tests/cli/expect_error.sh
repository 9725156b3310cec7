#!/usr/bin/env bash
# Runs a kick command that must fail: exit status non-zero (not a crash signal), and exactly one error
# line on stderr ("kick: error ...", one line, after any progress lines) containing the expected text.
# usage: expect_error.sh EXPECTED_TEXT -- COMMAND...
set -u
expected="$1"; shift
[ "$1" = "--" ] && shift
err=$(mktemp)
"$@" >/dev/null 2>"$err"
status=$?
lines=$(grep -c '^kick: error' "$err")
message=$(grep '^kick: error' "$err")
tail_line=$(tail -n 1 "$err")
if [ "$status" -eq 0 ]; then echo "FAIL: exit status 0, expected failure: $*"; exit 1; fi
if [ "$status" -ge 128 ]; then echo "FAIL: killed by signal $((status - 128)): $*"; exit 1; fi
if [ "$lines" -ne 1 ] || [ "$tail_line" != "$message" ]; then echo "FAIL: expected one final 'kick: error' line on stderr:"; cat "$err"; exit 1; fi
rm -f "$err"
case "$message" in
  "kick: error"*"$expected"*) echo "ok: $message"; exit 0 ;;
  *) echo "FAIL: stderr lacks '$expected':"; echo "$message"; exit 1 ;;
esac
