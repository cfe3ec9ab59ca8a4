#!/usr/bin/env python3
"""The web console in a real browser against the real demo with the crisis (issue #18 item 4).

Runs `socialpulse demo --scenario crisis` on a free loopback port and headless Chromium (Debian's,
scripts/setup-deps.sh), driven over the DevTools protocol (python3-websocket): `--dump-dom` and
`--screenshot` never return while the page keeps its event stream open. Before the deadline:
  - the page shows a card for each of acme, globex and initech, and the acme alert in the timeline
    once /api/v1/alerts has it;
  - at one checkpoint (the page's, /api/v1/kpis's and the X-Socialpulse-Checkpoint of /metrics
    equal), every card value equals the API's to display rounding, and the reputation index,
    share of voice and z-score equal /metrics' gauges;
  - no JavaScript exception, console.error or browser error entry was logged at any time.
The screenshot (1280x800) is kept: --screenshot PATH (ctest: in the build dir; docs/console.png
for the README: `python3 tests/deploy/console_browser_test.py --bin build/app/socialpulse
--screenshot docs/console.png`).
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import websocket  # python3-websocket

BRANDS = ("acme", "globex", "initech")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{brand="([^"]*)"\}\s+(\S+)$')


class Browser:
    """Headless Chromium and one page, over the DevTools protocol."""

    def __init__(self, workdir):
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if not exe:
            raise RuntimeError("chromium is not installed (scripts/setup-deps.sh installs it)")
        profile = os.path.join(workdir, "profile")
        self.proc = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-dev-shm-usage", "--remote-debugging-port=0", "--window-size=1280,800",
             f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, "chromium.log"), "w"))
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.monotonic() + 30
        while not os.path.exists(port_file) or os.path.getsize(port_file) == 0:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = open(port_file).read().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        self.next_id = 0
        self.errors = []
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})

    def _event(self, msg):
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            self.errors.append("exception: " + json.dumps(params["exceptionDetails"])[:500])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append("console.error: " + json.dumps(params.get("args"))[:500])
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.errors.append("log: " + params["entry"].get("text", "")[:500])

    def call(self, method, params=None):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params or {}}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def evaluate(self, expression):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"evaluate: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self, path):
        import base64
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_demo(binary, workdir):
    proc = subprocess.Popen(
        [binary, "demo", "--scenario", "crisis", "--metrics-listen", "127.0.0.1:0"],
        cwd=workdir, stdout=subprocess.PIPE, stderr=open(os.path.join(workdir, "demo.log"), "w"),
        text=True)
    found = {}
    lines = []

    def read_stdout():  # keep draining so the demo never blocks on a full pipe
        for line in proc.stdout:
            lines.append(line)
            m = re.search(r"console:\s+(http://\S+/)", line)
            if m and "url" not in found:
                found["url"] = m.group(1)
                found["first_line"] = len(lines) <= 2  # the console URL comes first

    threading.Thread(target=read_stdout, daemon=True).start()
    return proc, found, lines


def http(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, dict(r.headers), r.read().decode()


PAGE_STATE = """(() => {
  const cards = {};
  for (const c of document.querySelectorAll('#brands .card')) {
    const v = {};
    for (const e of c.querySelectorAll('[data-kpi]')) v[e.dataset.kpi] = e.textContent;
    v.alerting = c.classList.contains('alerting');
    cards[c.dataset.brand] = v;
  }
  const alerts = [...document.querySelectorAll('#alerts li[data-brand]')].map(
      li => ({brand: li.dataset.brand, episode: li.dataset.episode, text: li.textContent}));
  const strip = document.getElementById('p-checkpoint');  // null while the page loads
  const cp = strip ? strip.dataset.value : '';
  return {checkpoint: cp ? Number(cp) : 0, cards, alerts,
          chart: document.querySelectorAll('#chart path').length};
})()"""


def fixed(v, digits):
    return "–" if v is None else f"{v:.{digits}f}"


def pct(v, digits):
    return "–" if v is None else f"{v * 100:.{digits}f}%"


def compare(page, api, metrics):
    """Mismatches between the page, the API and /metrics at one checkpoint."""
    out = []
    for brand in BRANDS:
        card, b = page["cards"].get(brand), api["brands"].get(brand)
        if card is None or b is None:
            out.append(f"{brand}: card {card is not None}, api {b is not None}")
            continue
        expect = {
            "reputation_index": fixed(b["reputation_index"], 1),
            "share_of_voice": pct(b["share_of_voice"], 1),
            "emv_1h": fixed(b["last_1h"]["emv"], 2),
            "leads_1h": fixed(b["last_1h"]["leads"], 0),
            "unique_actors_1h": fixed(b["unique_actors_1h"], 0),
            "zscore": fixed(b["spike"]["zscore"], 2),
            "roi_24h": multiple(b["roi_24h"]) if b["daily_spend"] else "no spend set",
        }
        for key, want in expect.items():
            # JavaScript's toFixed and Python's format may round a tie differently.
            got = card.get(key)
            if got != want and not close_text(got, want):
                out.append(f"{brand}.{key}: page {got!r}, api {want!r}")
        for metric, key in (("socialpulse_reputation_index", "reputation_index"),
                            ("socialpulse_share_of_voice_ratio", "share_of_voice")):
            m = metrics.get((metric, brand))
            if m is not None and (b[key] is None or abs(m - b[key]) > 1e-9 * max(1, abs(m))):
                out.append(f"{brand}.{key}: /metrics {m}, api {b[key]}")
            if m is None and b[key] is not None:
                out.append(f"{brand}.{key}: absent from /metrics, api {b[key]}")
        z = metrics.get(("socialpulse_reputation_anomaly_zscore", brand))
        if z is not None and abs(z - b["spike"]["zscore"]) > 1e-9 * max(1, abs(z)):
            out.append(f"{brand}.zscore: /metrics {z}, api {b['spike']['zscore']}")
    return out


def multiple(v):
    if v is None:
        return "–"
    return (f"{v:.0f}" if abs(v) >= 10 else f"{v:.2f}") + "×"


def close_text(a, b):
    try:
        fa, fb = float(a.rstrip("%×")), float(b.rstrip("%×"))
    except (AttributeError, ValueError):
        return False
    digits = len(b.rstrip("%×").split(".")[1]) if "." in b else 0
    return abs(fa - fb) <= 10 ** -digits * 1.01


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


def run(args, workdir):
    proc, found, lines = start_demo(args.bin, workdir)
    browser = None
    started = time.monotonic()
    end = started + args.deadline
    try:
        while "url" not in found:
            if proc.poll() is not None or time.monotonic() > end:
                return f"demo printed no console URL: {''.join(lines)}"
            time.sleep(0.1)
        if not found["first_line"]:
            return f"the console URL is not what the demo prints first: {''.join(lines)}"
        base = found["url"]
        while True:  # the first checkpoint, so the page has something to show
            try:
                if http(base + "api/v1/kpis")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > end:
                return "no checkpoint on /api/v1/kpis"
            time.sleep(0.2)
        browser = Browser(workdir)
        browser.call("Page.navigate", {"url": base})
        page, problems, last = None, ["page not read yet"], None
        alert_seen = None
        while True:
            if proc.poll() is not None:
                return f"demo exited with {proc.returncode}"
            if time.monotonic() > end:
                return "; ".join(problems)
            if browser.errors:
                return "browser errors: " + " | ".join(browser.errors)
            page = browser.evaluate(PAGE_STATE)
            problems = []
            missing = [b for b in BRANDS if b not in page["cards"]]
            if missing:
                problems.append(f"no card for {', '.join(missing)}")
            api_alerts = json.loads(http(base + "api/v1/alerts?brand=acme")[2])["alerts"]
            if not any(a["episode"] == "started" for a in api_alerts):
                problems.append("the acme alert has not fired yet (api)")
            elif not any(a["brand"] == "acme" and a["episode"] == "started"
                         for a in page["alerts"]):
                alert_seen = alert_seen or time.monotonic()
                if time.monotonic() - alert_seen > 10:
                    return "the acme alert is on /api/v1/alerts but not on the page after 10 s"
                problems.append("the acme alert is not on the page yet")
            if not problems:
                # One checkpoint for the page, the API and /metrics (retry across a boundary).
                _, _, body = http(base + "api/v1/kpis")
                api = json.loads(body)
                _, headers, text = http(base + "metrics")
                page = browser.evaluate(PAGE_STATE)
                metrics_cp = int(headers.get("X-Socialpulse-Checkpoint", "0"))
                if page["checkpoint"] == api["checkpoint"] == metrics_cp:
                    mismatches = compare(page, api, parse_metrics(text))
                    if mismatches:
                        return f"at checkpoint {api['checkpoint']}: " + "; ".join(mismatches)
                    if page["chart"] == 0:
                        problems.append("the chart has no line yet")
                    else:
                        if args.screenshot:
                            browser.screenshot(args.screenshot)
                        if browser.errors:
                            return "browser errors: " + " | ".join(browser.errors)
                        print(f"OK after {time.monotonic() - started:.0f}s: 3 cards equal to "
                              f"/api/v1/kpis and /metrics at checkpoint {api['checkpoint']}, acme "
                              f"alert on the page, no browser error"
                              + (f"; screenshot {args.screenshot}" if args.screenshot else ""))
                        return None
                else:
                    problems.append(f"checkpoints differ: page {page['checkpoint']}, api "
                                    f"{api['checkpoint']}, metrics {metrics_cp}")
            if problems != last:
                print(f"[{time.monotonic() - started:5.0f}s] waiting: {'; '.join(problems)}",
                      flush=True)
                last = problems
            time.sleep(0.3 if problems and problems[0].startswith("checkpoints") else 1)
    finally:
        if browser:
            browser.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--deadline", type=float, default=200.0, help="seconds")
    ap.add_argument("--screenshot", help="PNG to write (1280x800)")
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)
    with tempfile.TemporaryDirectory(prefix="console-browser-") as workdir:
        failure = run(args, workdir)
        if failure:
            print("FAIL: " + failure, file=sys.stderr)
            for log in ("demo.log", "chromium.log"):
                path = os.path.join(workdir, log)
                if os.path.exists(path):
                    print(f"--- {log} (tail)\n" + "".join(open(path).readlines()[-20:]),
                          file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
