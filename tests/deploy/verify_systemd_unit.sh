#!/usr/bin/env bash
# `systemd-analyze verify` of deploy/systemd/socialpulse.service (ctest deploy_systemd_unit, issue
# 19 item 8), with ExecStart pointing at the built binary. systemd-analyze exits 0 even for
# unknown keys or bad values, so any output fails the test; a deliberately broken copy must
# produce output, or the check itself is broken. Exit 77 (skip) without systemd-analyze.
# Usage: verify_systemd_unit.sh UNIT BINARY
set -euo pipefail
unit=$1
bin=$2
command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze not installed"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s#/usr/local/bin/socialpulse#$bin#g" "$unit" >"$work/socialpulse.service"
if ! out=$(systemd-analyze verify "$work/socialpulse.service" 2>&1) || [ -n "$out" ]; then
  echo "FAIL: systemd-analyze verify $unit:" >&2
  echo "$out" >&2
  exit 1
fi
sed 's/^Type=simple/Type=not-a-type/' "$work/socialpulse.service" >"$work/broken.service"
if [ -z "$(systemd-analyze verify "$work/broken.service" 2>&1 || true)" ]; then
  echo "FAIL: a broken unit verified silently: this check cannot fail" >&2
  exit 1
fi
echo "ok: $unit verifies cleanly"
