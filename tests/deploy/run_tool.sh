#!/usr/bin/env bash
# Runs a deployment tool for a ctest; a missing tool is a failure, not a skip: scripts/setup-deps.sh
# installs promtool (package prometheus) and amtool (package prometheus-alertmanager).
set -euo pipefail
tool=$1
shift
if ! command -v "$tool" >/dev/null 2>&1; then
  echo "FAIL: $tool is not installed; run scripts/setup-deps.sh" >&2
  exit 1
fi
exec "$tool" "$@"
