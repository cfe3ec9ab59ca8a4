#!/usr/bin/env bash
# Smoke run of a Release binary (`make test` builds one: packagers build Release, issue 19 item
# 4): --version, validate of the shipped config, and a short demo that must serve consumed
# events on /metrics and stop with exit 0.
# Usage: scripts/release-smoke.sh path/to/socialpulse
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
demo_pid=
cleanup() {
  if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then kill -KILL "$demo_pid"; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" --version
"$bin" validate -c "$root/deploy/socialpulse.yaml"
"$bin" demo --duration 60s --metrics-listen 127.0.0.1:0 >"$work/out" 2>"$work/err" &
demo_pid=$!
url=
consumed=0
for _ in $(seq 1 300); do  # 30 s deadline
  url=${url:-$(sed -n 's/^  metrics: *//p' "$work/out")}
  if [ -n "$url" ]; then
    consumed=$(curl -sf "$url" | sed -n 's/^socialpulse_events_consumed_total //p' || true)
    if [ -n "$consumed" ] && [ "${consumed%%.*}" -gt 0 ]; then break; fi
  fi
  kill -0 "$demo_pid" 2>/dev/null || { echo "FAIL: demo exited early" >&2; cat "$work/err" >&2; exit 1; }
  sleep 0.1
done
if [ -z "$consumed" ] || [ "${consumed%%.*}" -le 0 ]; then
  echo "FAIL: the Release demo served no consumed events within 30 s (url='$url')" >&2
  tail -20 "$work/err" >&2
  exit 1
fi
kill -TERM "$demo_pid"
status=0
wait "$demo_pid" || status=$?
demo_pid=
if [ "$status" -ne 0 ]; then
  echo "FAIL: the Release demo exited $status after SIGTERM" >&2
  tail -20 "$work/err" >&2
  exit 1
fi
echo "release smoke: ok (consumed=$consumed)"
