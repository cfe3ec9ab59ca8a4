#!/usr/bin/env python3
"""Both expositions of the real binary are valid (issue 19 item 7; ctest deploy_exposition).

Starts `socialpulse demo` on a free loopback port, waits (with a deadline) until it has consumed
events, then checks
  - the Prometheus text format (the default, and on Accept: text/plain) with `promtool check metrics`,
  - OpenMetrics 1.0 (on Prometheus's own Accept header) with the strict parser of the Python
    client (python3-prometheus-client): `_total` samples of counter families, `# UNIT`, `# EOF`,
  - that both carry the same samples.
promtool or the parser missing is a failure (scripts/setup-deps.sh installs them).
"""
import argparse
import socket
import subprocess
import sys
import time
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families

PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, accept=None):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.headers["Content-Type"], r.read().decode()


def samples_of_text(text):
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--deadline", type=float, default=60)
    args = ap.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    demo = subprocess.Popen([args.bin, "demo", "--duration", "120s", "--metrics-listen",
                             f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        until = time.monotonic() + args.deadline
        while True:
            try:
                _, text = get(url)
                consumed = samples_of_text(text).get("socialpulse_events_consumed_total", 0)
                if consumed > 0 and "socialpulse_interactions_total{" in text:
                    break
            except OSError:
                pass
            if time.monotonic() > until:
                print("FAIL: no consumed events on /metrics before the deadline", file=sys.stderr)
                return 1
            time.sleep(0.2)
        # The checkpoint that published `text` may be replaced between the two fetches: compare
        # names, not values.
        text_type, text = get(url, "text/plain")
        om_type, om = get(url, PROMETHEUS_ACCEPT)
        failures = []
        if not text_type.startswith("text/plain; version=0.0.4"):
            failures.append(f"text Content-Type {text_type}")
        if not om_type.startswith("application/openmetrics-text; version=1.0.0"):
            failures.append(f"OpenMetrics Content-Type {om_type}")
        lint = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                              capture_output=True)
        if lint.returncode != 0:
            failures.append("promtool check metrics:\n" + lint.stdout + lint.stderr)
        try:
            families = list(text_string_to_metric_families(om))
        except Exception as e:  # the parser raises ValueError with the offending line
            failures.append(f"OpenMetrics parser: {e}")
            families = []
        om_names = {s.name for f in families for s in f.samples}
        text_names = {name.split("{")[0] for name in samples_of_text(text)}
        if families and om_names != text_names:
            failures.append(f"sample names differ: only text {sorted(text_names - om_names)[:5]}, "
                            f"only OpenMetrics {sorted(om_names - text_names)[:5]}")
        units = {f.name: f.unit for f in families if f.unit}
        if families and units.get("socialpulse_checkpoint_duration_seconds") != "seconds":
            failures.append(f"no seconds unit on the checkpoint histogram: {units}")
        for f in failures:
            print("FAIL:", f, file=sys.stderr)
        if not failures:
            print(f"ok: {len(text_names)} sample names, {len(families)} OpenMetrics families")
        return 1 if failures else 0
    finally:
        demo.terminate()
        try:
            demo.wait(timeout=20)
        except subprocess.TimeoutExpired:
            demo.kill()


if __name__ == "__main__":
    sys.exit(main())
