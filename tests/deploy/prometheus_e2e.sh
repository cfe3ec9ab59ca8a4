#!/usr/bin/env bash
# End-to-end check of deploy/ against the real binary and a real Prometheus (not in ctest yet):
#  1. starts `socialpulse demo` (embedded broker, synthetic traffic with a reputation crisis),
#  2. starts Prometheus scraping it every second with deploy/prometheus/rules,
#  3. polls the Prometheus HTTP API until, before the deadline:
#     - the target is up and every rule evaluates without error,
#     - every recording rule and every dashboard query (variables = .*) returns data,
#     - ALERTS{alertname="ReputationSpike",alertstate="firing"} is firing for exactly the crisis
#       brand ($CRISIS_BRAND, or else the only brand whose socialpulse_reputation_spikes_total > 0).
# Usage: SOCIALPULSE_BIN=build/app/socialpulse tests/deploy/prometheus_e2e.sh
set -euo pipefail

# --- knobs (the demo's flag names may still change) ---
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SOCIALPULSE_BIN=${SOCIALPULSE_BIN:-$ROOT/build/app/socialpulse}
PROMETHEUS_BIN=${PROMETHEUS_BIN:-prometheus}
METRICS_PORT=${METRICS_PORT:-19464}
PROM_PORT=${PROM_PORT:-19090}
DEADLINE_S=${DEADLINE_S:-600}
CRISIS_BRAND=${CRISIS_BRAND:-}
DEMO_SCENARIO_FLAG=${DEMO_SCENARIO_FLAG:---scenario}
DEMO_METRICS_FLAG=${DEMO_METRICS_FLAG:---metrics-listen}
read -r -a DEMO_EXTRA_ARGS <<<"${DEMO_EXTRA_ARGS:-}"
# Queries that may legitimately stay empty in a demo run (no rejects, no late events…), regex on
# the query text. Everything else must return data.
E2E_OPTIONAL=${E2E_OPTIONAL:-socialpulse_events_rejected_total\{|socialpulse_late_events_total|socialpulse_series_folded_total|socialpulse_care_response_seconds|team=\"platform\"}

command -v "$PROMETHEUS_BIN" >/dev/null || { echo "FAIL: prometheus not installed (scripts/setup-deps.sh)" >&2; exit 1; }
[ -x "$SOCIALPULSE_BIN" ] || { echo "FAIL: SOCIALPULSE_BIN=$SOCIALPULSE_BIN is not executable" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${KEEP_WORKDIR:-0}" = 1 ]; then echo "workdir kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

cat >"$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $ROOT/deploy/prometheus/rules/socialpulse-recording.yml
  - $ROOT/deploy/prometheus/rules/socialpulse-alerts.yml
scrape_configs:
  - job_name: socialpulse
    scrape_timeout: 1s
    static_configs:
      - targets: ['127.0.0.1:$METRICS_PORT']
YAML

(cd "$work" && exec "$SOCIALPULSE_BIN" demo "$DEMO_SCENARIO_FLAG" crisis \
   "$DEMO_METRICS_FLAG" "127.0.0.1:$METRICS_PORT" "${DEMO_EXTRA_ARGS[@]}") >"$work/socialpulse.log" 2>&1 &
pids+=($!)
"$PROMETHEUS_BIN" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$work/prometheus.log" 2>&1 &
pids+=($!)

deadline=$((SECONDS + DEADLINE_S))
until curl -fsS "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null 2>&1; do
  [ $SECONDS -lt $deadline ] || { echo "FAIL: Prometheus not ready"; tail -20 "$work/prometheus.log"; exit 1; }
  kill -0 "${pids[1]}" 2>/dev/null || { echo "FAIL: Prometheus exited"; tail -20 "$work/prometheus.log"; exit 1; }
  sleep 1
done

status=0
python3 - "$ROOT" "http://127.0.0.1:$PROM_PORT" "$((deadline - SECONDS))" "$CRISIS_BRAND" "$E2E_OPTIONAL" "${pids[0]}" <<'PY' || status=$?
import json, os, re, sys, time, urllib.parse, urllib.request
root, prom, budget, crisis_brand, optional, demo_pid = sys.argv[1:7]
sys.path.insert(0, os.path.join(root, "tests/deploy"))
import check_dashboards as cd
import yaml

cd.VARIABLE_VALUES.clear()
cd.DEFAULT_VARIABLE_VALUE = ".*"
checker = cd.Checker(root)
for path in sorted(__import__("glob").glob(os.path.join(root, "deploy/grafana/dashboards/*.json"))):
    checker.check_dashboard(path, {})
queries = {}
for where, q in checker.queries:
    queries.setdefault(q, where)
for record in sorted(checker.recorded):
    queries.setdefault(record, f"recording rule {record}")
optional_re = re.compile(optional) if optional else None

def api(path, **params):
    url = f"{prom}/api/v1/{path}?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{path}: {body}")
    return body["data"]

def has_data(q):
    return len(api("query", query=q)["result"]) > 0

budget = float(budget)
end = time.monotonic() + budget
last = None
while True:
    problems = []
    try:
        os.kill(int(demo_pid), 0)
    except OSError:
        print("FAIL: socialpulse demo exited", file=sys.stderr)
        sys.exit(1)
    try:
        up = api("query", query='up{job="socialpulse"}')["result"]
        if not up or up[0]["value"][1] != "1":
            problems.append("target socialpulse is not up")
        for g in api("rules")["groups"]:
            for r in g["rules"]:
                if r.get("health") == "err":
                    problems.append(f"rule {r['name']}: {r.get('lastError')}")
        for q, where in queries.items():
            # Annotations mark events (e.g. a spike counter changing): any time in the run counts.
            probe = f"count_over_time(({q})[30m:1s])" if " annotation " in where else q
            if not has_data(probe) and not (optional_re and optional_re.search(q)):
                problems.append(f"no data: {where}: {q}")
        firing = {s["metric"].get("brand") for s in api("query", query='ALERTS{alertname="ReputationSpike",alertstate="firing"}')["result"]}
        expected = crisis_brand
        if not expected:
            spiking = {s["metric"]["brand"] for s in api("query", query="sum by (brand) (socialpulse_reputation_spikes_total) > 0")["result"]}
            expected = spiking.pop() if len(spiking) == 1 else None
            if expected is None:
                problems.append(f"cannot tell the crisis brand: brands with spikes = {sorted(spiking) or 'none'}")
        if expected and firing != {expected}:
            problems.append(f"ReputationSpike firing for {sorted(firing)}, expected exactly [{expected}]")
    except Exception as e:  # Prometheus still starting, scrape not there yet…
        problems.append(f"query error: {e}")
    if not problems:
        print(f"OK: {len(queries)} dashboard queries and recording rules return data; ReputationSpike fires for {firing}")
        sys.exit(0)
    if problems != last:
        print(f"[{budget - (end - time.monotonic()):.0f}s] waiting: {len(problems)} open, e.g. {problems[0]}", flush=True)
        last = problems
    if time.monotonic() > end:
        print("FAIL: deadline reached with:", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        sys.exit(1)
    time.sleep(2)
PY
if [ $status -ne 0 ]; then
  echo "--- socialpulse log (tail)"; tail -30 "$work/socialpulse.log"
  echo "--- prometheus log (tail)"; tail -10 "$work/prometheus.log"
fi
exit $status
