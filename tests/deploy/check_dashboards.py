#!/usr/bin/env python3
"""Checks the Grafana dashboards in deploy/grafana/dashboards (ctest: deploy_grafana_dashboards).

Structure: uid/title/schemaVersion, unique panel ids, sane gridPos without overlaps, every
datasource reference is the dashboard's `datasource` variable or a provisioned datasource, every
`$variable` is defined. Names: every socialpulse metric is one of SPEC 4 and every recorded
series (level:metric:ops) exists in deploy/prometheus/rules. PromQL: every panel query,
annotation query and variable query is parsed by `promtool check rules` (Grafana variables
substituted); a failure names the dashboard, panel and refId. Exits 1 on any problem; a missing
promtool is a failure (scripts/setup-deps.sh installs it).
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

# SPEC 4. Histograms also expose _bucket, _count and _sum.
SPEC_COUNTERS_GAUGES = {
    "socialpulse_interactions_total", "socialpulse_reach_total", "socialpulse_opinion_weight_total",
    "socialpulse_sentiment_score_total", "socialpulse_earned_media_value_total",
    "socialpulse_web_visits_total", "socialpulse_leads_total", "socialpulse_lead_value_total",
    "socialpulse_ideas_total", "socialpulse_actor_sessions_total",
    "socialpulse_reputation_spikes_total", "socialpulse_engagement_rate",
    "socialpulse_reputation_index", "socialpulse_share_of_voice_ratio", "socialpulse_unique_actors",
    "socialpulse_innovation_rate", "socialpulse_reputation_anomaly_zscore", "socialpulse_daily_spend",
    "socialpulse_events_consumed_total", "socialpulse_events_accepted_total",
    "socialpulse_events_duplicate_total", "socialpulse_events_rejected_total",
    "socialpulse_late_events_total", "socialpulse_consumer_lag_messages",
    "socialpulse_watermark_timestamp_seconds", "socialpulse_watermark_delay_seconds",
    "socialpulse_state_bytes", "socialpulse_dlq_messages_total", "socialpulse_window_records_total",
    "socialpulse_build_info", "socialpulse_series_folded_total",
}
SPEC_HISTOGRAMS = {
    "socialpulse_care_response_seconds", "socialpulse_actor_session_duration_seconds",
    "socialpulse_checkpoint_duration_seconds", "socialpulse_event_latency_seconds",
}
SPEC_METRICS = SPEC_COUNTERS_GAUGES | {
    h + suffix for h in SPEC_HISTOGRAMS for suffix in ("_bucket", "_count", "_sum")}

BUILTIN_VARS = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s",
                "__range_ms", "__name", "__from", "__to", "__dashboard", "__org", "__user",
                "timeFilter", "__all"}
# Values used to turn a Grafana query into plain PromQL for promtool.
SUBSTITUTIONS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h", "__range_s": "3600",
                 "__range_ms": "3600000", "__interval_ms": "15000"}
VAR_RE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


class Checker:
    def __init__(self, root):
        self.root = root
        self.errors = []
        self.recorded = set()
        for path in sorted(glob.glob(os.path.join(root, "deploy/prometheus/rules/*.yml"))):
            with open(path) as f:
                for group in yaml.safe_load(f)["groups"]:
                    for rule in group["rules"]:
                        if "record" in rule:
                            self.recorded.add(rule["record"])
        self.datasource_uids = set()
        for path in glob.glob(os.path.join(root, "deploy/grafana/provisioning/datasources/*.yml")):
            with open(path) as f:
                for ds in yaml.safe_load(f).get("datasources", []):
                    self.datasource_uids.add(ds["uid"])
        self.queries = []  # (where, promql)

    def error(self, where, message):
        self.errors.append(f"{where}: {message}")

    def check_datasource(self, where, ds, variables):
        if ds is None:
            self.error(where, "no datasource")
            return
        if not isinstance(ds, dict) or ds.get("type") != "prometheus":
            self.error(where, f"datasource must be a prometheus reference object, got {ds!r}")
            return
        uid = ds.get("uid", "")
        m = re.fullmatch(r"\$\{(\w+)\}|\$(\w+)", uid)
        if m:
            name = m.group(1) or m.group(2)
            if variables.get(name, {}).get("type") != "datasource":
                self.error(where, f"datasource uid {uid} is not a datasource variable")
        elif uid not in self.datasource_uids:
            self.error(where, f"datasource uid {uid!r} is not provisioned ({sorted(self.datasource_uids)})")

    def add_query(self, where, expr, variables):
        if not expr or not expr.strip():
            self.error(where, "empty query")
            return
        for m in VAR_RE.finditer(expr):
            name = m.group(1) or m.group(2) or m.group(3)
            if name not in variables and name not in BUILTIN_VARS:
                self.error(where, f"undefined variable ${name}")
        for name in set(re.findall(r"(?<![\w:])socialpulse_\w+\b(?!:)", expr)):
            if name not in SPEC_METRICS:
                self.error(where, f"metric {name} is not in SPEC 4")
        for name in set(re.findall(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", expr)):
            if name not in self.recorded:
                self.error(where, f"recorded series {name} is not defined in deploy/prometheus/rules")
        self.queries.append((where, substitute(expr, variables)))

    def check_dashboard(self, path, seen_uids):
        name = os.path.basename(path)
        try:
            with open(path) as f:
                dash = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            self.error(name, f"not valid JSON: {e}")
            return
        for key in ("uid", "title", "panels", "schemaVersion", "templating"):
            if key not in dash:
                self.error(name, f"missing {key}")
                return
        uid = dash["uid"]
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
            self.error(name, f"uid {uid!r} must be 1-40 characters [A-Za-z0-9_-]")
        if uid in seen_uids:
            self.error(name, f"uid {uid} also used by {seen_uids[uid]}")
        seen_uids[uid] = name
        if dash.get("id") not in (None,):
            self.error(name, "dashboard id must be null/absent in provisioned JSON (Grafana assigns it)")
        if not (36 <= dash["schemaVersion"] <= 41):
            self.error(name, f"schemaVersion {dash['schemaVersion']} outside 36..41")
        variables = {v["name"]: v for v in dash["templating"].get("list", [])}
        for v in variables.values():
            where = f"{name} variable ${v['name']}"
            if v.get("type") == "query":
                self.check_datasource(where, v.get("datasource"), variables)
                q = v.get("query")
                q = q.get("query") if isinstance(q, dict) else q
                m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", q or "")
                if m:
                    self.add_query(where, m.group(1), variables)
                else:
                    self.add_query(where, q, variables)
        for ann in dash.get("annotations", {}).get("list", []):
            if ann.get("builtIn"):
                continue
            where = f"{name} annotation {ann.get('name')!r}"
            self.check_datasource(where, ann.get("datasource"), variables)
            self.add_query(where, ann.get("expr") or ann.get("target", {}).get("expr"), variables)

        panels = []
        for p in dash["panels"]:
            panels.append(p)
            panels.extend(p.get("panels", []))  # collapsed rows hold their panels
        ids = {}
        occupied = {}
        for p in panels:
            pid = p.get("id")
            where = f"{name} panel {pid} {p.get('title')!r}"
            if not isinstance(pid, int):
                self.error(where, "panel id must be an integer")
            elif pid in ids:
                self.error(where, f"duplicate panel id (also {ids[pid]!r})")
            ids[pid] = p.get("title")
            if not p.get("title"):
                self.error(where, "panel without title")
            g = p.get("gridPos")
            if not isinstance(g, dict) or not all(isinstance(g.get(k), int) for k in "hwxy"):
                self.error(where, f"gridPos must have integer h, w, x, y: {g!r}")
            elif g["w"] < 1 or g["h"] < 1 or g["x"] < 0 or g["y"] < 0 or g["x"] + g["w"] > 24:
                self.error(where, f"gridPos out of the 24-column grid: {g}")
            else:
                for x in range(g["x"], g["x"] + g["w"]):
                    for y in range(g["y"], g["y"] + g["h"]):
                        if (x, y) in occupied:
                            self.error(where, f"gridPos overlaps panel {occupied[(x, y)]}")
                            break
                        occupied[(x, y)] = pid
                    else:
                        continue
                    break
            if p.get("type") == "row":
                continue
            self.check_datasource(where, p.get("datasource"), variables)
            targets = p.get("targets") or []
            if not targets:
                self.error(where, "panel without queries")
            refids = set()
            for t in targets:
                twhere = f"{where} refId {t.get('refId')}"
                if t.get("refId") in refids:
                    self.error(twhere, "duplicate refId")
                refids.add(t.get("refId"))
                self.check_datasource(twhere, t.get("datasource"), variables)
                self.add_query(twhere, t.get("expr"), variables)

    def check_promql(self, promtool):
        """promtool parses every query once; on failure each query alone to name the culprit."""
        with tempfile.TemporaryDirectory() as tmp:
            def run(queries):
                path = os.path.join(tmp, "queries.yml")
                rules = [{"record": f"dashboard_query_{i}", "expr": q} for i, (_, q) in enumerate(queries)]
                with open(path, "w") as f:
                    yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, f)
                r = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
                return r.returncode, r.stdout + r.stderr
            rc, out = run(self.queries)
            if rc == 0:
                return
            for where, q in self.queries:
                rc, out = run([(where, q)])
                if rc != 0:
                    self.error(where, f"invalid PromQL {q!r}:\n{out.strip()}")
            if not self.errors:
                self.error("promtool", out)


# Values for dashboard variables; prometheus_e2e.sh replaces them with ".*" to match everything.
VARIABLE_VALUES = {"brand": "acme"}
DEFAULT_VARIABLE_VALUE = "example"


def substitute(expr, variables):
    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in SUBSTITUTIONS:
            return SUBSTITUTIONS[name]
        return VARIABLE_VALUES.get(name, DEFAULT_VARIABLE_VALUE)
    return VAR_RE.sub(repl, expr)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "../.."))
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    promtool = shutil.which("promtool")
    if not promtool:
        print("FAIL: promtool is not installed; run scripts/setup-deps.sh", file=sys.stderr)
        return 1
    checker = Checker(root)
    paths = sorted(glob.glob(os.path.join(root, "deploy/grafana/dashboards/*.json")))
    if not paths:
        print("FAIL: no dashboards in deploy/grafana/dashboards", file=sys.stderr)
        return 1
    seen = {}
    for path in paths:
        checker.check_dashboard(path, seen)
    checker.check_promql(promtool)
    if checker.errors:
        for e in checker.errors:
            print("FAIL:", e, file=sys.stderr)
        return 1
    print(f"OK: {len(paths)} dashboards, {len(checker.queries)} queries parsed by promtool")
    return 0


if __name__ == "__main__":
    sys.exit(main())
