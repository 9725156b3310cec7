#!/usr/bin/env bash
# `kick serve` as a process: start on a free loopback port, read the port from its stderr line
# "kick: serving NAME on http://127.0.0.1:PORT", query /v1/models and one greedy completion with curl,
# then SIGTERM it and expect a clean exit ("kick: stopped", status 0). Every wait is bounded.
# usage: serve_smoke.sh KICK_BINARY
set -u
kick="$1"
log=$(mktemp)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null; fi
  rm -f "$log"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- kick serve stderr:"; cat "$log"; exit 1; }

"$kick" serve -m stories260K --host 127.0.0.1 --port 0 --threads 1 2>"$log" >/dev/null &
pid=$!

port=""
for _ in $(seq 1 600); do  # up to 60 s for the model to load
  port=$(sed -n 's|^kick: serving stories260K on http://127\.0\.0\.1:\([0-9][0-9]*\)$|\1|p' "$log" | head -n 1)
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || fail "kick serve exited before serving"
  sleep 0.1
done
[ -n "$port" ] || fail "no 'kick: serving ... on http://127.0.0.1:PORT' line within 60 s"

base="http://127.0.0.1:$port/v1"
models=$(curl -sS --max-time 20 "$base/models") || fail "GET /v1/models"
# nlohmann::json writes keys sorted, so each part is checked on its own.
has() { case "$1" in *"$2"*) return 0 ;; *) return 1 ;; esac; }
has "$models" '"object":"list"' && has "$models" '"id":"stories260K"' || fail "GET /v1/models answered: $models"

completion=$(curl -sS --max-time 60 -H 'Content-Type: application/json' \
  -d '{"prompt": "Once upon a time", "max_tokens": 16, "temperature": 0}' "$base/completions") || fail "POST /v1/completions"
has "$completion" '"object":"text_completion"' && has "$completion" '"text":"' ||
  fail "POST /v1/completions answered: $completion"
has "$completion" '"completion_tokens":16' || has "$completion" '"finish_reason":"stop"' ||
  fail "completion neither used its 16 tokens nor stopped: $completion"

status=$(curl -sS --max-time 20 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d '{}' "$base/chat/completions")
[ "$status" = "400" ] || fail "POST /v1/chat/completions without messages gave HTTP $status, expected 400"

kill -TERM "$pid"
for _ in $(seq 1 200); do  # up to 20 s to stop
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$pid" 2>/dev/null && fail "still running 20 s after SIGTERM"
wait "$pid"
code=$?
pid=""
[ "$code" -eq 0 ] || fail "exit status $code after SIGTERM, expected 0"
grep -q '^kick: stopped$' "$log" || fail "no 'kick: stopped' line"
echo "ok: served on port $port, /v1/models and /v1/completions answered, stopped cleanly on SIGTERM"
