#!/usr/bin/env bash
# Installs the Debian packages the tests and the lab need, if missing: redis-server and
# redis-tools (tests start their own servers on loopback), docker.io and debootstrap (the lab),
# prometheus for its promtool (tests/test_alert_rules.py checks and unit-tests the alert rules),
# openjdk-17-jre-headless for ansible-rulebook (its rules engine runs in an embedded JVM found
# through `java` on PATH; tests/test_rulebook.py), python3-redis: Debian's own python3 with
# redis-py and no Ansible is a target as the lab image has it (tests/test_metrics_writer.py runs
# the metrics writer's bundle on it), prometheus-alertmanager, prometheus-node-exporter and
# prometheus-redis-exporter for the end-to-end alerting test and its benchmark
# (lab/alerting_stack.py runs its own instances on loopback high ports).
# On a host where systemd is PID 1, a temporary policy-rc.d keeps the packaged services
# (redis on 6379, docker with its default bridge, prometheus on 9090, alertmanager on 9093,
# node-exporter on 9100, redis-exporter on 9121) from starting, and they are disabled after.
set -euo pipefail
packages=(redis-server redis-tools docker.io debootstrap prometheus openjdk-17-jre-headless python3-redis
  prometheus-alertmanager prometheus-node-exporter prometheus-redis-exporter)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

policy=/usr/sbin/policy-rc.d
created_policy=false
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=true
fi
cleanup() { if $created_policy; then rm -f "$policy"; fi; }
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
if [[ "$(cat /proc/1/comm 2>/dev/null)" == systemd ]]; then
  systemctl disable --now docker.service docker.socket redis-server.service prometheus.service \
    prometheus-alertmanager.service prometheus-node-exporter.service prometheus-redis-exporter.service \
    2>/dev/null || true
fi
