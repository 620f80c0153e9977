#!/usr/bin/env bash
# The local lab: one container `qt-lab` (host network, systemd PID 1, Redis on 6390, one stub
# service per stage of the inventory's pipeline: QT_LAB_PIPELINE, default inventory/lab's), on
# the project's own Docker engine (lab/engine.sh) and image (lab/image.sh).
#   lab/lab.sh up              engine, image, container, configure, wait until the pipeline flows
#   lab/lab.sh down            remove the lab container, stop the engine if this project started it
#   lab/lab.sh status          engine, container and `qt-lab status`
#   lab/lab.sh fault CMD ...   run `qt-lab CMD ...` in the container (hang router, incident, ...)
#   lab/lab.sh exec CMD ...    run any command in the container
set -euo pipefail
# shellcheck source=lab/common.sh
source "$(dirname "$0")/common.sh"

container_state() { docker inspect --format '{{.State.Status}}' "$QT_LAB_CONTAINER" 2>/dev/null || true; }

wait_for_systemd() {
  local name=$1 state i
  for i in $(seq 1 150); do
    state=$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)
    case $state in
      running | degraded) return 0 ;;
    esac
    sleep 0.2
  done
  die "systemd in $name did not reach running within 30 s (state: ${state:-unknown})"
}

port_in_use() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

up() {
  local t0=$SECONDS
  "$LAB_DIR/engine.sh" start
  "$LAB_DIR/image.sh"
  local image_id running_image
  image_id=$(docker image inspect --format '{{.Id}}' "$QT_LAB_IMAGE")
  running_image=$(docker inspect --format '{{.Image}}' "$QT_LAB_CONTAINER" 2>/dev/null || true)
  if [[ $(container_state) == running && $running_image == "$image_id" ]]; then
    log "container $QT_LAB_CONTAINER already running on the current image: left as it is (faults included)"
    return 0
  else
    docker rm -f "$QT_LAB_CONTAINER" >/dev/null 2>&1 || true
    port_in_use "$QT_LAB_REDIS_PORT" \
      && die "port $QT_LAB_REDIS_PORT is already in use on this host: set QT_LAB_REDIS_PORT to a free one"
    # QT_LAB_TEXTFILE_DIR: a host directory seen in the container as node_exporter's textfile
    # directory, for a node-exporter on this host (lab/alerting_stack.py, bench/alert_mttr.py).
    local textfile=()
    [[ -n ${QT_LAB_TEXTFILE_DIR:-} ]] && textfile=(-v "$QT_LAB_TEXTFILE_DIR:/var/lib/prometheus/node-exporter")
    docker run -d --name "$QT_LAB_CONTAINER" --hostname "$QT_LAB_CONTAINER" --label quantum-lab=lab \
      "${LAB_RUN_FLAGS[@]}" "${textfile[@]}" "$QT_LAB_IMAGE" /lib/systemd/systemd >/dev/null
    log "container $QT_LAB_CONTAINER started"
  fi
  wait_for_systemd "$QT_LAB_CONTAINER"
  # The inventory's pipeline (and lab_setup) as the JSON qt-lab takes: the image has no PyYAML.
  "$PROJECT_DIR/.venv/bin/python" "$LAB_DIR/pipeline_json.py" "$QT_LAB_PIPELINE" \
    --redis-port "$QT_LAB_REDIS_PORT" \
    | docker exec -i "$QT_LAB_CONTAINER" qt-lab configure --pipeline -
  docker exec "$QT_LAB_CONTAINER" qt-lab wait-flow --timeout 60
  log "lab up in $((SECONDS - t0)) s: container $QT_LAB_CONTAINER, Redis 127.0.0.1:$QT_LAB_REDIS_PORT" \
    "(ansible-playbook -i inventory/lab ...; lab/lab.sh fault incident)"
}

down() {
  if "$LAB_DIR/engine.sh" ours || docker version >/dev/null 2>&1; then
    if [[ -n $(container_state) ]]; then
      docker rm -f "$QT_LAB_CONTAINER" >/dev/null
      log "container $QT_LAB_CONTAINER removed"
    fi
  fi
  "$LAB_DIR/engine.sh" stop
}

status() {
  "$LAB_DIR/engine.sh" status || return 0
  local state
  state=$(container_state)
  echo "container: $QT_LAB_CONTAINER ${state:-absent}"
  [[ $state == running ]] && docker exec "$QT_LAB_CONTAINER" qt-lab status
  return 0
}

in_container() {
  [[ $(container_state) == running ]] || die "container $QT_LAB_CONTAINER is not running: lab/lab.sh up"
  docker exec "$QT_LAB_CONTAINER" "$@"
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case $cmd in
  up) up ;;
  down) down ;;
  status) status ;;
  fault) [[ $# -gt 0 ]] || die "usage: lab/lab.sh fault SUBCOMMAND [ARGS] (see lab/README.md)"
         in_container qt-lab "$@" ;;
  exec) in_container "$@" ;;
  *) echo "usage: $0 up|down|status|fault SUBCOMMAND [ARGS]|exec COMMAND" >&2; exit 2 ;;
esac
