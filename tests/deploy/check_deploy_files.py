#!/usr/bin/env python3
"""Static checks of deploy/ that need no Docker engine, systemd or running binary
(ctest: deploy_static_files). Each check states the invariant it protects.

- compose.yaml parses, has the whole stack, every bind-mounted/built file exists, socialpulse
  talks to the compose Kafka, Prometheus/Grafana point at the compose services.
- Dockerfile: multi-stage bookworm build / bookworm-slim runtime, non-root, port, health check,
  entrypoint on the example config; every COPY source exists.
- systemd unit: hardened, restarts on failure, SIGTERM with TimeoutStopSec > shutdown_timeout.
- Example config: only SPEC 7 keys, SPEC defaults for bootstrap and metrics port.
- Alerts: severity + summary/description/runbook_url, each runbook anchor is a RUNBOOK.md section.
- Alertmanager routes reputation alerts to communications (amtool, required).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

errors = []


def check(cond, message):
    if not cond:
        errors.append(message)
    return cond


def duration_s(text):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h)?\s*", str(text))
    if not m:
        raise ValueError(f"bad duration {text!r}")
    scale = {"ms": 0.001, "s": 1, None: 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]
    return float(m.group(1)) * scale


def check_example_config(root):
    path = os.path.join(root, "deploy/socialpulse.yaml")
    with open(path) as f:
        cfg = yaml.safe_load(f)
    spec_keys = {"kafka", "state", "metrics", "brands", "channels", "windows", "watermark", "dedup",
                 "kpi", "alerts", "emv", "roi", "limits", "log", "shutdown_timeout"}  # alerts.max_lag: SPEC 5 v2
    check(set(cfg) <= spec_keys, f"socialpulse.yaml: keys outside SPEC 7: {set(cfg) - spec_keys}")
    check(cfg["kafka"]["bootstrap_servers"] == "${SOCIALPULSE_BOOTSTRAP:-embedded}",
          "socialpulse.yaml: kafka.bootstrap_servers must be ${SOCIALPULSE_BOOTSTRAP:-embedded}")
    check(cfg["metrics"]["listen"] == "0.0.0.0:9464", "socialpulse.yaml: metrics.listen must be 0.0.0.0:9464")
    check(cfg["state"]["path"].startswith("${STATE_DIRECTORY"),
          "socialpulse.yaml: state.path must follow $STATE_DIRECTORY (systemd StateDirectory, image ENV)")
    return duration_s(cfg.get("shutdown_timeout", "10s"))


def check_compose(root, shutdown_timeout):
    ddir = os.path.join(root, "deploy/docker")
    with open(os.path.join(ddir, "compose.yaml")) as f:
        compose = yaml.safe_load(f)
    services = compose.get("services", {})
    for name in ("kafka", "socialpulse", "prometheus", "alertmanager", "grafana"):
        check(name in services, f"compose.yaml: missing service {name}")
    named_volumes = set((compose.get("volumes") or {}).keys())
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            ctx = os.path.normpath(os.path.join(ddir, build["context"]))
            check(os.path.isdir(ctx), f"compose.yaml: {name} build context {ctx} missing")
            check(os.path.isfile(os.path.join(ctx, build["dockerfile"])),
                  f"compose.yaml: {name} dockerfile {build['dockerfile']} missing")
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith((".", "/")):
                check(os.path.exists(os.path.normpath(os.path.join(ddir, source))),
                      f"compose.yaml: {name} mounts {source}, which does not exist")
            else:
                check(source in named_volumes, f"compose.yaml: {name} uses undeclared volume {source}")
        for dep in (svc.get("depends_on") or []):
            check(dep in services, f"compose.yaml: {name} depends on unknown service {dep}")
    kafka_env = services["kafka"]["environment"]
    check(kafka_env.get("KAFKA_PROCESS_ROLES") == "broker,controller", "compose.yaml: Kafka must run in KRaft mode")
    sp = services["socialpulse"]
    check(sp["environment"].get("SOCIALPULSE_BOOTSTRAP") == "kafka:9092", "compose.yaml: SOCIALPULSE_BOOTSTRAP must be kafka:9092")
    check("PLAINTEXT://kafka:9092" in kafka_env.get("KAFKA_ADVERTISED_LISTENERS", ""),
          "compose.yaml: Kafka must advertise kafka:9092 to the other containers")
    check(duration_s(sp.get("stop_grace_period", "10s")) > shutdown_timeout,
          "compose.yaml: socialpulse stop_grace_period must exceed shutdown_timeout")
    # Prometheus in compose reaches the compose services, not localhost.
    targets = {}
    for fname in os.listdir(os.path.join(ddir, "prometheus-targets")):
        with open(os.path.join(ddir, "prometheus-targets", fname)) as f:
            for group in yaml.safe_load(f):
                for t in group["targets"]:
                    targets[t] = fname
    check("socialpulse:9464" in targets, "prometheus-targets: socialpulse:9464 missing")
    check("alertmanager:9093" in targets, "prometheus-targets: alertmanager:9093 missing")
    for t in targets:
        check(t.split(":")[0] in services, f"prometheus-targets: {t} is not a compose service")
    with open(os.path.join(root, "deploy/grafana/provisioning/datasources/prometheus.yml")) as f:
        ds = yaml.safe_load(f)["datasources"][0]
    check(re.match(r"http://prometheus:9090/?$", ds["url"]) is not None,
          "grafana datasource must point at the compose prometheus service")
    with open(os.path.join(root, "deploy/grafana/provisioning/dashboards/socialpulse.yml")) as f:
        provider_path = yaml.safe_load(f)["providers"][0]["options"]["path"]
    check(any(v.endswith(":" + provider_path + ":ro") or v.split(":")[1] == provider_path
              for v in services["grafana"]["volumes"]),
          f"compose.yaml: grafana must mount the dashboards at the provisioned path {provider_path}")


def check_dockerfile(root):
    with open(os.path.join(root, "deploy/docker/Dockerfile")) as f:
        text = f.read()
    lines = [l.strip() for l in re.sub(r"\\\n", " ", text).splitlines() if l.strip() and not l.strip().startswith("#")]
    froms = [l for l in lines if l.startswith("FROM ")]
    check(len(froms) >= 2 and froms[0].startswith("FROM debian:bookworm AS") and froms[-1] == "FROM debian:bookworm-slim",
          f"Dockerfile: expected a debian:bookworm build stage and a debian:bookworm-slim runtime, got {froms}")
    check(any("scripts/setup-deps.sh" in l and l.startswith("RUN") for l in lines), "Dockerfile: build must use scripts/setup-deps.sh")
    runtime = lines[lines.index(froms[-1]):]
    user = [l for l in runtime if l.startswith("USER ")]
    check(user and user[-1].split()[1].split(":")[0] not in ("root", "0"), "Dockerfile: runtime must run as a non-root USER")
    check("EXPOSE 9464" in runtime, "Dockerfile: EXPOSE 9464 missing")
    check(any(l.startswith("HEALTHCHECK") and "/livez" in l for l in runtime), "Dockerfile: HEALTHCHECK on /livez missing")
    check(not any(re.search(r"\b(g\+\+|build-essential|cmake)\b", l) for l in runtime if l.startswith("RUN")),
          "Dockerfile: the runtime stage must not install a toolchain")
    entry = [l for l in runtime if l.startswith("ENTRYPOINT")]
    cmd = [l for l in runtime if l.startswith("CMD")]
    full = " ".join(re.findall(r'"([^"]*)"', (entry[-1] if entry else "") + " " + (cmd[-1] if cmd else "")))
    check(full.startswith("socialpulse run -c /etc/socialpulse/socialpulse.yaml"),
          f"Dockerfile: default command must be `socialpulse run -c /etc/socialpulse/socialpulse.yaml`, got {full!r}")
    for l in lines:
        if l.startswith("COPY ") and "--from=" not in l:
            for src in l.split()[1:-1]:
                if not src.startswith("--"):
                    check(os.path.exists(os.path.join(root, src)), f"Dockerfile: COPY source {src} missing")


def parse_unit(path):
    unit, section = {}, None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            key, _, value = line.partition("=")
            unit.setdefault((section, key), []).append(value)
    return unit


def check_systemd(root, shutdown_timeout):
    path = os.path.join(root, "deploy/systemd/socialpulse.service")
    unit = parse_unit(path)
    get = lambda key: (unit.get(("Service", key)) or [None])[-1]
    check(get("Restart") == "on-failure", "systemd: Restart=on-failure")
    check(get("KillSignal") == "SIGTERM", "systemd: KillSignal=SIGTERM")
    check(get("TimeoutStopSec") and duration_s(get("TimeoutStopSec")) > shutdown_timeout,
          f"systemd: TimeoutStopSec must exceed shutdown_timeout ({shutdown_timeout}s)")
    check(get("DynamicUser") == "yes" or (get("User") not in (None, "root")), "systemd: must not run as root")
    check(get("StateDirectory") == "socialpulse", "systemd: StateDirectory=socialpulse")
    check((get("ExecStart") or "").endswith("run -c /etc/socialpulse/socialpulse.yaml"), "systemd: ExecStart runs the config")
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes"), ("CapabilityBoundingSet", "")]:
        check(get(key) == value, f"systemd: {key}={value} (hardening)")
    analyze = shutil.which("systemd-analyze")
    if analyze:  # optional extra: not every build machine has systemd
        with tempfile.TemporaryDirectory() as tmp:
            copy = os.path.join(tmp, "socialpulse.service")
            with open(path) as f, open(copy, "w") as g:
                g.write(f.read().replace("/usr/local/bin/socialpulse", "/bin/true"))
            r = subprocess.run([analyze, "verify", copy], capture_output=True, text=True)
            check(r.returncode == 0 and "Unknown" not in r.stderr and "ignoring" not in r.stderr,
                  f"systemd-analyze verify: {r.stdout}{r.stderr}")


def check_alerts_and_runbook(root):
    with open(os.path.join(root, "deploy/RUNBOOK.md")) as f:
        anchors = {re.sub(r"[^a-z0-9 -]", "", m.group(1).strip().lower()).replace(" ", "-")
                   for m in re.finditer(r"^## (.+)$", f.read(), re.M)}
    with open(os.path.join(root, "deploy/prometheus/rules/socialpulse-alerts.yml")) as f:
        groups = yaml.safe_load(f)["groups"]
    names = set()
    for g in groups:
        for rule in g["rules"]:
            name = rule["alert"]
            names.add(name)
            check(rule.get("labels", {}).get("severity") in ("critical", "warning", "info"), f"{name}: severity label")
            ann = rule.get("annotations", {})
            for key in ("summary", "description", "runbook_url"):
                check(ann.get(key), f"{name}: annotation {key} missing")
            url = ann.get("runbook_url", "")
            check(url.split("#")[0].endswith("deploy/RUNBOOK.md") and url.split("#")[-1] in anchors,
                  f"{name}: runbook_url {url} is not a section of deploy/RUNBOOK.md")
    required = {"ReputationSpike", "ReputationIndexDrop", "ConsumerLagHigh", "WatermarkStalled",
                "DLQRateHigh", "CheckpointFailing", "SocialpulseDown", "SocialpulseCatchingUp"}
    check(required <= names, f"alerts missing: {required - names}")


def check_alertmanager_routes(root):
    amtool = shutil.which("amtool")
    if not check(amtool, "amtool is not installed; run scripts/setup-deps.sh"):
        return
    cfg = os.path.join(root, "deploy/alertmanager/alertmanager.yml")
    for labels, receiver in [(["alertname=ReputationSpike", "team=communications", "severity=critical"], "communications"),
                             (["alertname=CheckpointFailing", "team=platform", "severity=critical"], "platform")]:
        r = subprocess.run([amtool, "config", "routes", "test", f"--config.file={cfg}", f"--verify.receivers={receiver}"] + labels,
                           capture_output=True, text=True)
        check(r.returncode == 0, f"alertmanager: {labels} should go to {receiver}: {r.stdout}{r.stderr}")
    # Issue #16: reputation alerts are inhibited while an instance replays history.
    with open(cfg) as f:
        am = yaml.safe_load(f)
    check(any('alertname="SocialpulseCatchingUp"' in r.get("source_matchers", []) and
              'team="communications"' in r.get("target_matchers", [])
              for r in am.get("inhibit_rules", [])),
          "alertmanager: SocialpulseCatchingUp must inhibit team=communications alerts")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "../.."))
    root = os.path.abspath(ap.parse_args().root)
    shutdown_timeout = check_example_config(root)
    for fn in (check_compose, check_systemd):
        fn(root, shutdown_timeout)
    check_dockerfile(root)
    check_alerts_and_runbook(root)
    check_alertmanager_routes(root)
    for e in errors:
        print("FAIL:", e, file=sys.stderr)
    if not errors:
        print("OK: compose, Dockerfile, systemd unit, example config, runbook links, alert routes")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
