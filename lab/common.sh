#!/usr/bin/env bash
# Shared settings of the lab scripts (sourced, not run). Every path the lab writes outside the
# repository is below QT_LAB_STATE (engine data, images) or QT_LAB_RUN (pidfile, socket state),
# so `lab.sh down` knows exactly what is its own.
LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT_DIR=$(cd "$LAB_DIR/.." && pwd)
QT_LAB_STATE=${QT_LAB_STATE:-/var/lib/quantum-lab}
QT_LAB_RUN=${QT_LAB_RUN:-/run/quantum-lab}
QT_LAB_CACHE=${QT_LAB_CACHE:-$PROJECT_DIR/.cache/lab}
QT_LAB_IMAGE=${QT_LAB_IMAGE:-quantum-lab:latest}
QT_LAB_CONTAINER=${QT_LAB_CONTAINER:-qt-lab}
QT_LAB_REDIS_PORT=${QT_LAB_REDIS_PORT:-6390}
# The inventory file whose `pipeline` (and `lab_setup`) the lab runs (lab/pipeline_json.py).
QT_LAB_PIPELINE=${QT_LAB_PIPELINE:-$PROJECT_DIR/inventory/lab/group_vars/all/pipeline.yml}
# The engine listens on the default socket so the docker CLI, Molecule and the
# community.docker connection need no extra setting.
DOCKER_SOCKET=/var/run/docker.sock
export DOCKER_HOST=unix://$DOCKER_SOCKET
# Debian's dockerd is 20.10: the legacy builder only (the CLI on PATH may be 28.x).
export DOCKER_BUILDKIT=0

# The systemd-in-a-container flags verified on these machines (see lab/README.md).
LAB_RUN_FLAGS=(
  --network host
  --cap-add SYS_ADMIN
  --security-opt seccomp=unconfined
  --cgroupns host
  --tmpfs /run --tmpfs /run/lock
  -v /sys/fs/cgroup:/sys/fs/cgroup:rw
  -e container=docker
  --stop-signal SIGRTMIN+3
)

log() { printf '%s lab: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

debian_mirror() {
  # The machine's own Debian mirror (deb822 sources first, then the one-line format): the one
  # registry these machines reach, named by apt's sources, never by this code. Fails when
  # apt's sources name none.
  local uri
  uri=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -E '/debian/?$' | head -n1 || true)
  if [[ -z $uri ]]; then
    uri=$(grep -hE '^deb\s' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' | grep -E '/debian/?$' | head -n1 || true)
  fi
  [[ -n $uri ]] || return 1
  echo "$uri"
}
