#!/usr/bin/env python3
"""`socialpulse demo --scenario crisis` drives the spike detector of the crisis brand only (#7, #8).

Runs the real binary (embedded broker, generator, pipeline) with /metrics on a free loopback port
and polls /metrics until, before the deadline:
  - socialpulse_reputation_anomaly_zscore{brand="acme"} >= 3,
    socialpulse_reputation_spikes_total{brand="acme"} >= 1 and
    socialpulse_reputation_alert_active{brand="acme"} == 1 (the scripted crisis, live: #16),
  - every metric of the SPEC 4 table has at least one sample (so dashboards and rules have data),
while at every poll the calm brands (globex, initech) have no spike: their spikes_total and
alert_active are 0 or absent. A calm brand spiking at any time fails at once, as does the demo exiting.
Usage: demo_crisis_test.py --bin build/app/socialpulse [--deadline 200]
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_dashboards  # noqa: E402  (SPEC 4 metric names, shared with the dashboard checker)

CRISIS_BRAND = "acme"
CALM_BRANDS = ("globex", "initech")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text format -> {(name, frozenset(labels)): value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if m:
            labels = frozenset(LABEL.findall(m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(samples, name, **labels):
    want = set(labels.items())
    found = [v for (n, l), v in samples.items() if n == name and want <= set(l)]
    return max(found) if found else None


def start_demo(binary, workdir):
    """Starts the demo with /metrics on port 0 and returns (process, metrics URL)."""
    proc = subprocess.Popen(
        [binary, "demo", "--scenario", "crisis", "--metrics-listen", "127.0.0.1:0"],
        cwd=workdir, stdout=subprocess.PIPE, stderr=open(os.path.join(workdir, "demo.log"), "w"),
        text=True)
    url = []

    def read_stdout():  # keep draining so the demo never blocks on a full pipe
        for line in proc.stdout:
            m = re.search(r"metrics:\s+(http://\S+/metrics)", line)
            if m and not url:
                url.append(m.group(1))

    threading.Thread(target=read_stdout, daemon=True).start()
    return proc, url


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--deadline", type=float, default=200.0, help="seconds")
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)

    expected = sorted(check_dashboards.SPEC_COUNTERS_GAUGES) + sorted(
        h + "_count" for h in check_dashboards.SPEC_HISTOGRAMS)
    started = time.monotonic()
    end = started + args.deadline
    with tempfile.TemporaryDirectory(prefix="demo-crisis-") as workdir:
        proc, url = start_demo(args.bin, workdir)
        try:
            return poll(proc, url, expected, started, end, workdir)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def poll(proc, url, expected, started, end, workdir):
    seen_z = None
    problems = ["demo has not printed its metrics URL"]
    last = None
    while True:
        elapsed = time.monotonic() - started
        if proc.poll() is not None:
            return fail(f"demo exited with {proc.returncode} after {elapsed:.0f}s", workdir)
        if url:
            try:
                with urllib.request.urlopen(url[0], timeout=5) as r:
                    samples = parse_metrics(r.read().decode())
            except OSError as e:
                samples = None
                problems = [f"scrape failed: {e}"]
            if samples is not None:
                for brand in CALM_BRANDS:
                    spikes = value(samples, "socialpulse_reputation_spikes_total", brand=brand)
                    spikes = spikes or value(samples, "socialpulse_reputation_alert_active",
                                             brand=brand)
                    if spikes:
                        z = value(samples, "socialpulse_reputation_anomaly_zscore", brand=brand)
                        return fail(f"calm brand {brand} spiked: spikes_total={spikes} z={z} "
                                    f"after {elapsed:.0f}s", workdir)
                z = value(samples, "socialpulse_reputation_anomaly_zscore", brand=CRISIS_BRAND)
                spikes = value(samples, "socialpulse_reputation_spikes_total", brand=CRISIS_BRAND)
                if z is not None and z >= 3 and seen_z is None:
                    seen_z = (z, elapsed)
                problems = []
                if seen_z is None:
                    problems.append(f"{CRISIS_BRAND} z-score {z} < 3")
                if not spikes:
                    problems.append(f"{CRISIS_BRAND} spikes_total {spikes} < 1")
                active = value(samples, "socialpulse_reputation_alert_active", brand=CRISIS_BRAND)
                if not active:
                    problems.append(f"{CRISIS_BRAND} alert_active {active} != 1")
                names = {n for (n, _) in samples}
                missing = [n for n in expected if n not in names]
                if missing:
                    problems.append(f"no sample of {', '.join(missing)}")
                if not problems:
                    print(f"OK after {elapsed:.0f}s: {CRISIS_BRAND} z={seen_z[0]:.1f} (first seen at "
                          f"{seen_z[1]:.0f}s), spikes_total={spikes:g}; no spike for "
                          f"{', '.join(CALM_BRANDS)}; all {len(expected)} SPEC 4 metrics present")
                    return 0
        if problems != last:
            print(f"[{elapsed:.0f}s] waiting: {'; '.join(problems)}", flush=True)
            last = problems
        if time.monotonic() > end:
            return fail("deadline reached: " + "; ".join(problems), workdir)
        time.sleep(1)


def fail(message, workdir):
    print("FAIL: " + message, file=sys.stderr)
    try:
        with open(os.path.join(workdir, "demo.log")) as f:
            print("--- demo log (tail)\n" + "".join(f.readlines()[-20:]), file=sys.stderr)
    except OSError:
        pass
    return 1


if __name__ == "__main__":
    sys.exit(main())
