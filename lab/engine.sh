#!/usr/bin/env bash
# The lab's Docker engine: Debian's dockerd with NO bridge and NO iptables rules, its own
# data-root (kept across runs: the image cache) and exec-root, stopped only by the PID in
# its own pidfile.
#   lab/engine.sh start    install docker.io/debootstrap if missing, start (or reuse) an engine
#   lab/engine.sh stop     stop the engine this project started (never another one)
#   lab/engine.sh status   say which engine answers and whether it is ours
#   lab/engine.sh ours     exit 0 when the engine that answers is the one this project started
set -euo pipefail
# shellcheck source=lab/common.sh
source "$(dirname "$0")/common.sh"

PIDFILE=$QT_LAB_RUN/dockerd.pid
CONFIG=$QT_LAB_RUN/daemon.json
LOGFILE=$QT_LAB_STATE/dockerd.log

responds() { timeout 5 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

our_pid() {
  # The PID in our pidfile, only while it is still a dockerd (a reused PID is not ours).
  [[ -s $PIDFILE ]] || return 1
  local pid
  pid=$(<"$PIDFILE")
  [[ $pid =~ ^[0-9]+$ && -d /proc/$pid && "$(cat "/proc/$pid/comm" 2>/dev/null)" == dockerd ]] || return 1
  echo "$pid"
}

has_bridge() { docker network ls --format '{{.Driver}}' | grep -qx bridge; }

write_config() {
  mkdir -p "$QT_LAB_RUN" "$QT_LAB_STATE/docker"
  cat > "$CONFIG" <<JSON
{
  "bridge": "none",
  "iptables": false,
  "ip6tables": false,
  "ip-masq": false,
  "ip-forward": false,
  "hosts": ["unix://$DOCKER_SOCKET"],
  "data-root": "$QT_LAB_STATE/docker",
  "exec-root": "$QT_LAB_RUN/exec",
  "pidfile": "$PIDFILE",
  "log-level": "warn"
}
JSON
}

start() {
  [[ $EUID -eq 0 ]] || die "the lab engine needs root (dockerd, cgroups)."
  command -v dockerd >/dev/null && command -v debootstrap >/dev/null \
    || "$PROJECT_DIR/scripts/install-system-deps.sh"
  if responds; then
    if our_pid >/dev/null; then
      log "engine already running (ours, PID $(our_pid))"
      return 0
    fi
    has_bridge && die "a Docker engine with a bridge network already answers on $DOCKER_SOCKET;" \
      "the lab never uses a bridge: stop that engine or run the lab on another machine."
    log "reusing the Docker engine already running on $DOCKER_SOCKET (no bridge; not ours, never stopped by us)"
    return 0
  fi
  write_config
  local t0=$SECONDS
  # setsid: the engine must outlive the shell that started it (lab.sh up returns).
  # 9>&-: the engine must not inherit the lock's descriptor, or it holds the lock for as long
  # as it runs and every later start or stop waits 60 s and fails.
  setsid dockerd --config-file "$CONFIG" >>"$LOGFILE" 2>&1 </dev/null 9>&- &
  local i
  for i in $(seq 1 150); do
    responds && break
    kill -0 $! 2>/dev/null || die "dockerd exited at start; see $LOGFILE"
    sleep 0.2
  done
  responds || die "dockerd did not answer on $DOCKER_SOCKET within 30 s; see $LOGFILE"
  has_bridge && die "dockerd came up with a bridge network despite $CONFIG"
  log "engine started (PID $(our_pid), data-root $QT_LAB_STATE/docker) in $((SECONDS - t0)) s"
}

stop() {
  local pid
  if ! pid=$(our_pid); then
    rm -f "$PIDFILE"
    if responds; then log "the engine that answers is not ours: left running"; else log "no engine of ours is running"; fi
    return 0
  fi
  local left
  left=$(docker ps -aq 2>/dev/null || true)
  if [[ -n $left && ${1:-} != --force ]]; then
    log "containers still exist, engine left running (lab/engine.sh stop --force removes them):"
    docker ps -a --format '  {{.Names}} ({{.Status}})' >&2
    return 1
  fi
  [[ -n $left ]] && docker rm -f $left >/dev/null
  kill -TERM "$pid"
  local i
  for i in $(seq 1 100); do
    [[ -d /proc/$pid ]] || break
    sleep 0.2
  done
  if [[ -d /proc/$pid ]]; then
    log "dockerd $pid did not stop within 20 s: SIGKILL"
    kill -KILL "$pid"
  fi
  rm -f "$PIDFILE"
  # dockerd leaves its bind mount of the host's network namespace behind: ours, so unmount it.
  local m
  for m in $(awk -v root="$QT_LAB_RUN/" 'index($2, root) == 1 {print $2}' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || log "could not unmount $m"
  done
  log "engine stopped (PID $pid)"
}

status() {
  if ! responds; then
    echo "engine: not running"
    return 3
  fi
  local pid owner=foreign
  pid=$(our_pid) && owner="ours (PID $pid)"
  echo "engine: running, $owner, server $(docker version --format '{{.Server.Version}}')"
  echo "networks: $(docker network ls --format '{{.Name}}' | sort | tr '\n' ' ')"
  echo "images: $(docker images --format '{{.Repository}}:{{.Tag}}' | grep quantum-lab | tr '\n' ' ')"
  echo "containers: $(docker ps -a --format '{{.Names}}({{.State}})' | tr '\n' ' ')"
}

locked() {
  # One start or stop at a time: concurrent runs (Molecule in two shells) share one engine.
  mkdir -p "$QT_LAB_RUN"
  exec 9>"$QT_LAB_RUN/engine.lock"
  flock -w 60 9 || die "another lab/engine.sh holds $QT_LAB_RUN/engine.lock"
  "$@"
}

case ${1:-} in
  start) locked start ;;
  stop) shift; locked stop "$@" ;;
  status) status ;;
  ours) our_pid >/dev/null && responds ;;
  *) echo "usage: $0 start|stop [--force]|status|ours" >&2; exit 2 ;;
esac
