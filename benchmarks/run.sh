#!/usr/bin/env bash
# Runs every micro-benchmark once with 3 repetitions (best figures go to RESULTS.md by hand,
# with machine, date and commit). Usage: benchmarks/run.sh [build-dir]
set -euo pipefail
build="${1:-build}"
echo "machine: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p'), $(nproc) cores; commit $(git rev-parse --short HEAD); $(date -u +%F)"
for b in "$build"/benchmarks/bench_*; do
  [ -x "$b" ] || continue
  case "$(basename "$b")" in bench_e2e) continue ;; esac
  echo "== $(basename "$b")"
  "$b" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
done
