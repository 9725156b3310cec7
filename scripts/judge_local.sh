#!/usr/bin/env bash
# scripts/judge_local.sh: run `kick evaluate` with a local judge. Starts `kick serve` on a free loopback port
# with the judge model, points the evaluation at it (--judge-url/--judge-name), and stops the server when the
# evaluation ends, whatever its outcome. The evaluation's exit status is this script's.
#
# usage: scripts/judge_local.sh [--judge-model M] [--judge-threads N] [--judge-dtype D] -- EVALUATE_ARGS...
#   e.g. scripts/judge_local.sh -- -m smollm2 -t 1 --task summarization --judge-against-references -o results/dense
# KICK_BIN names the kick binary (default build/apps/kick). The judge defaults to smollm2 on 1 thread, fp32.
# The server's stderr goes to JUDGE_LOG (default: a temporary file, printed if the server fails to start).
set -u
kick="${KICK_BIN:-build/apps/kick}"
judge_model=smollm2
judge_threads=1
judge_dtype=fp32
while [ $# -gt 0 ]; do
  case "$1" in
    --judge-model) judge_model="$2"; shift 2 ;;
    --judge-threads) judge_threads="$2"; shift 2 ;;
    --judge-dtype) judge_dtype="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "judge_local.sh: unknown option '$1' (evaluate's own options go after --)" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "judge_local.sh: no kick evaluate arguments after --" >&2; exit 2; }
[ -x "$kick" ] || { echo "judge_local.sh: no kick binary at $kick (set KICK_BIN)" >&2; exit 2; }

temporary_log=""
if [ -n "${JUDGE_LOG:-}" ]; then
  log="$JUDGE_LOG"
else
  log=$(mktemp)
  temporary_log="$log"
fi
: >"$log"  # an old log's "serving ... :PORT" line must not be read as this server's
name=local-judge
pid=""
eval_pid=""
stop_server() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  fi
  [ -z "$temporary_log" ] || rm -f "$temporary_log"
}
# A signal to this script reaches the evaluation too (it resumes where it stopped), then the server stops.
on_signal() {
  [ -z "$eval_pid" ] || kill -TERM "$eval_pid" 2>/dev/null
  exit "$1"
}
trap stop_server EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

"$kick" serve -m "$judge_model" --dtype "$judge_dtype" -t "$judge_threads" --host 127.0.0.1 --port 0 --name "$name" -q \
  2>"$log" >/dev/null &
pid=$!
port=""
for _ in $(seq 1 1200); do  # up to 2 minutes to load the judge
  port=$(sed -n "s|^kick: serving $name on http://127\.0\.0\.1:\([0-9][0-9]*\)\$|\1|p" "$log" | head -n 1)
  [ -n "$port" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "judge_local.sh: kick serve -m $judge_model exited before serving:" >&2
    cat "$log" >&2
    pid=""
    exit 1
  fi
  sleep 0.1
done
[ -n "$port" ] || { echo "judge_local.sh: kick serve did not report its port within 2 minutes (log: $log)" >&2; exit 1; }
echo "judge_local.sh: judge $judge_model ($judge_dtype, $judge_threads thread(s)) serving on 127.0.0.1:$port" >&2

"$kick" evaluate "$@" --judge-url "http://127.0.0.1:$port/v1" --judge-name "$name" &
eval_pid=$!
wait "$eval_pid"
status=$?
eval_pid=""
exit "$status"
