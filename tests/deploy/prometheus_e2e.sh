#!/usr/bin/env bash
# End-to-end check of deploy/ against the real binary and a real Prometheus (ctest
# deploy_prometheus_e2e, label deploy):
#  1. starts `socialpulse demo --scenario crisis` (embedded broker, synthetic traffic, reputation
#     crisis for acme) with /metrics on a free loopback port,
#  2. starts Prometheus on a free loopback port, scraping it every second and evaluating
#     deploy/prometheus/rules every second (generated config),
#  3. polls the Prometheus HTTP API until, before the deadline:
#     - the target is up and every rule evaluates without error,
#     - every recording rule and every dashboard query (variables = .*) returns data, except the
#       documented E2E_OPTIONAL ones,
#     - ALERTS{alertname="ReputationSpike",alertstate="firing"} is firing for exactly the crisis
#       brand ($CRISIS_BRAND, default acme); it firing for any other brand fails at once,
#  4. and Alertmanager, running the shipped routes (deploy/alertmanager/alertmanager.yml) with every
#     receiver given a webhook to a local sink, delivers ReputationSpike for that brand to the
#     `communications` receiver (the example webhook receiver, exercised).
# A missing prometheus is a failure, not a skip (scripts/setup-deps.sh installs it).
# Usage: SOCIALPULSE_BIN=build/app/socialpulse tests/deploy/prometheus_e2e.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SOCIALPULSE_BIN=${SOCIALPULSE_BIN:-$ROOT/build/app/socialpulse}
PROMETHEUS_BIN=${PROMETHEUS_BIN:-prometheus}
# The demo's crisis bucket closes 70-130 s after start and the alert has `for: 1m`: ~200 s worst case.
# Alertmanager's group_wait for communications adds 10 s.
DEADLINE_S=${DEADLINE_S:-250}
CRISIS_BRAND=${CRISIS_BRAND:-acme}
read -r -a DEMO_EXTRA_ARGS <<<"${DEMO_EXTRA_ARGS:-}"
# Queries that may legitimately stay empty in a healthy demo run (regex on the query text);
# everything else must return data:
#  - team="platform": the "Platform alerts" panel lists firing pipeline alerts, and a healthy run
#    has none (SocialpulseDown, ConsumerLagHigh, WatermarkStalled, DLQRateHigh and
#    CheckpointFailing all need minutes of a fault; promtool tests cover them).
E2E_OPTIONAL=${E2E_OPTIONAL:-team=\"platform\"}

command -v "$PROMETHEUS_BIN" >/dev/null || { echo "FAIL: prometheus not installed (scripts/setup-deps.sh)" >&2; exit 1; }
[ -x "$SOCIALPULSE_BIN" ] || { echo "FAIL: SOCIALPULSE_BIN=$SOCIALPULSE_BIN is not executable" >&2; exit 1; }
command -v curl >/dev/null || { echo "FAIL: curl not installed" >&2; exit 1; }

work=$(mktemp -d)
pids=()
# Stops what this script started (TERM, then KILL after 15 s) on every exit path.
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "${KEEP_WORKDIR:-0}" = 1 ]; then echo "workdir kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
deadline=$((SECONDS + DEADLINE_S))

# The demo binds /metrics to port 0 and prints the URL it got: no port race.
"$SOCIALPULSE_BIN" demo --scenario crisis --metrics-listen 127.0.0.1:0 "${DEMO_EXTRA_ARGS[@]}" \
  >"$work/demo.out" 2>"$work/socialpulse.log" </dev/null &
pids+=($!)
metrics_target=
until metrics_target=$(sed -n 's|^ *metrics: *http://\([^/]*\)/metrics.*|\1|p' "$work/demo.out" | head -1) && [ -n "$metrics_target" ]; do
  [ $SECONDS -lt $deadline ] || { echo "FAIL: demo printed no metrics URL"; tail -20 "$work/socialpulse.log"; exit 1; }
  kill -0 "${pids[0]}" 2>/dev/null || { echo "FAIL: demo exited"; tail -20 "$work/socialpulse.log"; exit 1; }
  sleep 0.2
done
# Prometheus cannot report a port it chose itself: take a free one from the kernel (tiny race).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PROM_PORT=${PROM_PORT:-$(free_port)}
AM_PORT=$(free_port)
SINK_PORT=$(free_port)
# Debian names the binary prometheus-alertmanager.
ALERTMANAGER_BIN=${ALERTMANAGER_BIN:-$(command -v prometheus-alertmanager || command -v alertmanager || true)}
[ -n "$ALERTMANAGER_BIN" ] || { echo "FAIL: alertmanager not installed (scripts/setup-deps.sh)" >&2; exit 1; }

# The webhook sink: appends each notification (one JSON document per line) to webhook.jsonl.
python3 - "$SINK_PORT" "$work/webhook.jsonl" >"$work/sink.log" 2>&1 <<'PY' &
import http.server, json, sys
port, out = int(sys.argv[1]), sys.argv[2]
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(out, "a") as f:
            f.write(json.dumps(json.loads(body)) + "\n")
        self.send_response(200)
        self.end_headers()
http.server.HTTPServer(("127.0.0.1", port), Sink).serve_forever()
PY
pids+=($!)
# The shipped routes, with every receiver notifying the sink.
python3 - "$ROOT/deploy/alertmanager/alertmanager.yml" "$work/alertmanager.yml" "http://127.0.0.1:$SINK_PORT/alerts" <<'PY'
import sys, yaml
src, dst, url = sys.argv[1:4]
config = yaml.safe_load(open(src))
for receiver in config["receivers"]:
    receiver["webhook_configs"] = [{"url": url, "send_resolved": False}]
yaml.safe_dump(config, open(dst, "w"))
PY
"$ALERTMANAGER_BIN" --config.file="$work/alertmanager.yml" --storage.path="$work/am" \
  --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= >"$work/alertmanager.log" 2>&1 </dev/null &
pids+=($!)

cat >"$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $ROOT/deploy/prometheus/rules/socialpulse-recording.yml
  - $ROOT/deploy/prometheus/rules/socialpulse-alerts.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['127.0.0.1:$AM_PORT']
scrape_configs:
  - job_name: socialpulse
    scrape_timeout: 1s
    static_configs:
      - targets: ['$metrics_target']
YAML

"$PROMETHEUS_BIN" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$work/prometheus.log" 2>&1 </dev/null &
pids+=($!)

until curl -fsS "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null 2>&1; do
  [ $SECONDS -lt $deadline ] || { echo "FAIL: Prometheus not ready"; tail -20 "$work/prometheus.log"; exit 1; }
  kill -0 "${pids[3]}" 2>/dev/null || { echo "FAIL: Prometheus exited"; tail -20 "$work/prometheus.log"; exit 1; }
  sleep 1
done

status=0
python3 - "$ROOT" "http://127.0.0.1:$PROM_PORT" "$((deadline - SECONDS))" "$CRISIS_BRAND" "$E2E_OPTIONAL" "${pids[0]}" "$work/webhook.jsonl" <<'PY' || status=$?
import json, os, re, sys, time, urllib.parse, urllib.request
root, prom, budget, crisis_brand, optional, demo_pid, webhook_log = sys.argv[1:8]
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
started = time.monotonic()
end = started + budget
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
        if firing - {crisis_brand}:
            print(f"FAIL: ReputationSpike fires for {sorted(firing - {crisis_brand})}, a calm brand", file=sys.stderr)
            sys.exit(1)
        if firing != {crisis_brand}:
            problems.append(f"ReputationSpike firing for {sorted(firing)}, expected exactly [{crisis_brand}]")
    except Exception as e:  # Prometheus still starting, scrape not there yet…
        problems.append(f"query error: {e}")
    delivered = set()
    if os.path.exists(webhook_log):
        for line in open(webhook_log):
            n = json.loads(line)
            for a in n.get("alerts", []):
                if a["labels"].get("alertname") == "ReputationSpike" and a.get("status") == "firing":
                    delivered.add((n.get("receiver"), a["labels"].get("brand")))
    if not problems and ("communications", crisis_brand) not in delivered:
        problems.append(f"Alertmanager has not notified the communications webhook of ReputationSpike for {crisis_brand} (got {sorted(delivered)})")
    if not problems:
        print(f"OK after {time.monotonic() - started:.0f}s: {len(queries)} dashboard queries and recording rules return data; ReputationSpike fires for {sorted(firing)} only")
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
  echo "--- alertmanager log (tail)"; tail -10 "$work/alertmanager.log"
fi
echo "prometheus_e2e: ${SECONDS}s in total"
exit $status
